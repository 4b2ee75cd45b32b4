# make demo: set up (once) and run the main job; make test: set up (once) and run the tests.
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: demo test test-slow setup clean

$(VENV)/.ready: pyproject.toml scripts/setup.sh
	sh scripts/setup.sh
	touch $@

setup: $(VENV)/.ready

demo: $(VENV)/.ready
	HF_HUB_OFFLINE=1 $(BIN)/loralpha compare --task tweets --rules lora-alpha,2rank --lr 2e-5 --rank 8 --steps 150 --out $(DEMO_OUT)

test: $(VENV)/.ready
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: $(VENV)/.ready
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) $(DEMO_OUT)

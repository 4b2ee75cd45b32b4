"""Sweeps: a YAML spec expands into trials, a SQLite store records them, executors run them.

    from loralpha.sweep import load, run_sweep, Store
    counts = run_sweep(load("examples/teacher-student-sweep.yaml"), "studies/ts/study.db", workers=2)
    rows = Store("studies/ts/study.db").records(status="done")

The CLI is `loralpha sweep SPEC [--store S.db] [--workers N] [--engine local|ray]`. A spec with a `bracket:`
section (one log axis grown per group until its optimum is bracketed) runs in rounds through
`loralpha.studies.bracket.run`, which the CLI calls for it.
"""

from __future__ import annotations

from .engine import run_sweep, run_trial
from .spec import Spec, Trial, expand, load, parse, trial_id
from .store import STATUSES, Store

__all__ = ["STATUSES", "Spec", "Store", "Trial", "expand", "load", "parse", "run_sweep", "run_trial", "trial_id"]

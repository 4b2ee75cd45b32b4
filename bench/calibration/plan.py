"""The calibration benchmark's tables and where their records live (bench/calibration/run.py runs them,
bench/calibration/analysis.py reads them): the decisive tables it calibrates, their seeds and probe budgets."""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import RESULTS
from bench.decisive.plan import QUICK, SETTINGS, Arm, config

OUT = RESULTS / "calibration"
TABLES = {"tweets@1000": "all", "sft-gemma": "all", "tweets@1000 (qv)": "qv"}  # table -> targets of the run
HELD_OUT = "tweets@1000 (qv)"
SEEDS = [0, 1, 2]
BUDGET_RUNS = 3  # probe budget = this × the table's steps
QUICK_BUDGET = 400  # --quick: the 12-step MLP's three runs are too few steps for 20 map and 5 check probes


def decisive_table(name: str) -> str:
    return name.split(" ")[0]


def where(name: str, quick: bool) -> Path:
    base = RESULTS / "quick" / "calibration" if quick else OUT
    return base / name.replace(" ", "").replace("(", "-").replace(")", "")


def setting(name: str, quick: bool):
    return (QUICK if quick else SETTINGS)[decisive_table(name)]


def probe_fields(name: str, quick: bool) -> dict:
    """The TrainConfig fields of the table's runs that the calibrator does not set (its task, budget and data)."""
    s = setting(name, quick)
    c = config(decisive_table(name), s, Arm("lora-alpha", TABLES.get(name, "all")), 1e-4, 0)
    return {"steps": c.steps, "batch_size": c.batch_size, "targets": c.targets, "task_options": c.task_options}


def records(name: str, quick: bool) -> dict[str, dict]:
    d = where(name, quick)
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json")) if p.name != "calibration.json"}

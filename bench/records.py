"""A finished trial of a sweep store as the record committed beside the benchmark that ran it (the decisive tables,
the calibrator's seeds, the frontier): config, status, the held-out metrics and `test:` metrics at the end, the
held-out curve, the train-loss curve, the Signal-Drift per-factor motion, wall time split into load, train and
evaluation, and the machine. One JSON file per trial, named by its id; a rerun reads them and runs only what is
missing, on any machine."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from bench.common import machine

CURVE_POINTS = 100  # train-loss points kept per record
FINISHED = ("done", "diverged")  # what gets a record (a failed trial runs again)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _thin(rows: list[dict], n: int) -> list[dict]:
    if len(rows) <= n:
        return rows
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n - 1)] + [rows[-1]]


def record_of(trial: dict, device: str = "cpu") -> dict:
    """A finished trial of the store as its committed record: what the tables need, no weights."""
    run = Path(trial.get("run_dir") or "")
    rows = _jsonl(run / "metrics.jsonl")
    curve = [{k: v for k, v in r.items() if k not in ("loss", "lr")} for r in rows  # the held-out evaluations
             if set(r) - {"step", "loss", "lr"}]
    losses = [{"step": r["step"], "loss": r["loss"]} for r in rows if "loss" in r]
    motion = []
    for r in _jsonl(run / "signal_drift.jsonl"):
        mean, weighted = r.get("mean", {}), r.get("weighted", {})
        motion.append({"step": r["step"], "a_motion": mean.get("a_motion"), "b_norm": mean.get("b_norm"),
                       "drift_ratio": weighted.get("drift_ratio"), "signal": mean.get("abs_signal"),
                       "update_norm": mean.get("update_norm")})
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    facts = machine()
    if (run / "config.json").is_file():  # where it ran, as the run recorded it (runs before that are CPU runs)
        runtime = json.loads((run / "config.json").read_text()).get("runtime", {})
        device = runtime.get("device", device)
        if "threads" in runtime:  # the trial's own threads, not this process's
            facts["torch_threads"] = runtime["threads"]
    return {"id": trial["id"], "config": trial["config"], "status": trial["status"], "error": trial.get("error"),
            "final_loss": trial.get("final_loss"), "eval": trial.get("eval") or {},
            "diverged_at": summary.get("diverged_at"),
            "wall_time_s": trial.get("wall_time_s"), "load_time_s": trial.get("load_time_s"),
            "train_time_s": trial.get("train_time_s"), "eval_time_s": trial.get("eval_time_s"),
            "curve": curve, "train_loss": _thin(losses, CURVE_POINTS), "motion": motion,
            "device": device, "finished_at": trial.get("finished_at"), "machine": facts}


def export(store_path: Path, out: Path, ids: Collection[str] | None = None) -> int:
    """Write the record of every finished trial of the store (of `ids`, when given) that has none in `out` yet,
    each written whole or not at all; returns how many."""
    from loralpha.sweep import Store

    if not Path(store_path).is_file():
        return 0
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with Store(store_path) as store:
        for trial in store.records():
            path = out / f"{trial['id']}.json"
            if (ids is None or trial["id"] in ids) and trial["status"] in FINISHED and not path.is_file():
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(record_of(trial), indent=1, default=float) + "\n")
                tmp.replace(path)
                n += 1
    return n

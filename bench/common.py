"""Shared by the bench scripts: machine facts, result files, sweeps into a resumable store."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
WORK = Path(__file__).parent / "work"  # sweep stores and run directories (gitignored)
ROOT = Path(__file__).parent.parent


def machine() -> dict[str, object]:
    """loralpha's machine facts (with the load average), and torch's threads."""
    import torch

    from loralpha.runs import machine as facts

    return {**facts(), "torch_threads": torch.get_num_threads()}


def save(name: str, payload: dict[str, object], quick: bool) -> Path:
    """Write results/NAME.json (or results/quick/NAME.json for a smoke run)."""
    folder = RESULTS / "quick" if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=float) + "\n")
    return path


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A bench script's command line: its docstring's first line, and `--quick` (the smoke run)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small, fast smoke run")
    return p


def quick_arg(doc: str) -> bool:
    """Whether a script with no other option was asked for its smoke run (`--quick`)."""
    return bench_parser(doc).parse_args().quick


def task_args(doc: str) -> tuple[bool, list[str]]:
    """`--quick` and `--tasks` of a per-task script: (quick, the tasks to run; teacher-student alone when quick)."""
    p = bench_parser(doc)
    p.add_argument("--tasks", default="teacher-student,tweets,bbc-news")
    args = p.parse_args()
    return args.quick, ["teacher-student"] if args.quick else args.tasks.split(",")


def by_task(name: str, tasks: list[str], run_task: Any, quick: bool) -> dict[str, Any]:
    """{task: run_task(task, quick)} for `tasks`, on top of the other tasks already in results/NAME.json
    (a rerun of some tasks keeps the rest)."""
    old = RESULTS / f"{name}.json"
    out = json.loads(old.read_text()).get("tasks", {}) if not quick and old.is_file() else {}
    for task in tasks:
        out[task] = run_task(task, quick)
    return out


def median(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and v == v and abs(v) != float("inf")]
    return statistics.median(finite) if finite else None


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample std of the finite values (std 0 for one value), and how many there were."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None, 0
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else 0.0), len(finite)


def work_dir(name: str, quick: bool) -> Path:
    return WORK / ("quick" if quick else "full") / name


def sweep(name: str, configs: list[Any], quick: bool, workers: int = 2) -> list[dict[str, Any]]:
    """Run `configs` (TrainConfigs) as one study in WORK/…/NAME/study.db with the local engine;
    finished trials of earlier runs are skipped. Returns the records in the order of `configs`."""
    from loralpha.sweep import Store, Trial, run_sweep, trial_id

    trials, seen = [], set()
    for c in configs:
        tid = trial_id(c)
        if tid not in seen:
            seen.add(tid)
            trials.append(Trial(tid, c))
    store = work_dir(name, quick) / "study.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    run_sweep(trials, store, workers=workers, progress=False)
    with Store(store) as s:
        by_id = {r["id"]: r for r in s.records()}
    return [by_id[trial_id(c)] for c in configs]


def metric(record: dict[str, Any], name: str) -> float | None:
    """A record's `final_loss` or eval metric; None unless the trial is done."""
    from loralpha.studies.records import metric_value

    return metric_value(record, name) if record.get("status") == "done" else None


def losses(record: dict[str, Any]) -> list[float]:
    """The per-step train losses of a trial (from its run directory's metrics.jsonl)."""
    path = Path(record.get("run_dir") or "") / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "loss" in row and row.get("step", 0) >= 1:
            out.append(float(row["loss"]))
    return out


def calibrated(quick: bool, task: str = "teacher-student", wait: bool = True, **kwargs: Any) -> dict[str, Any] | None:
    """`loralpha.studies.calibrate_c.calibrate(task, **kwargs)` as a dict, cached in the work dir (shared by scripts).
    While another live process computes the same calibration: wait for it, or (wait=False) return None."""
    import hashlib

    from loralpha.studies.calibrate_c import calibrate

    key = hashlib.sha256(json.dumps({"task": task, **kwargs}, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = work_dir("calibrate", quick) / f"{task}-{key}.json"
    lock = path.with_suffix(".lock")  # another process computing the same calibration: wait for it
    while not path.is_file() and lock.is_file() and _alive(lock.read_text().strip()):
        if not wait:
            return None
        time.sleep(5)
    if path.is_file():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    try:
        result = calibrate(task=task, **kwargs).to_dict()
        path.write_text(json.dumps(result, indent=2, default=float))
    finally:
        lock.unlink(missing_ok=True)
    return result


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return True


# BENCHMARKS.md's sections: where a result file is, its stamp, the command that writes it

def rel(folder: Path, name: str) -> str:
    try:
        return str((folder / f"{name}.json").resolve().relative_to(ROOT))
    except ValueError:
        return str(folder / f"{name}.json")


def stamp(data: dict, folder: Path, name: str) -> str:
    m = data.get("machine", {})
    load_avg = m.get("load_average")
    extra = f"; load average at the end {', '.join(f'{v:g}' for v in load_avg)} (1/5/15 min)" if load_avg else ""
    return f"Results: `{rel(folder, name)}` ({m.get('date', '?')}{extra})."


def command(script: str, folder: Path, R: dict, extra: str = "") -> list[str]:
    """The command block of bench.SCRIPT (`folder.module`, e.g. `suite.quality`, whose result file is MODULE.json);
    it names the result file only when that file exists."""
    name = script.rpartition(".")[2]
    where = f"# → {rel(folder, name)}" if name in R else "# (no result file yet)"
    return ["```", f"python -m bench.{script}   {where}{extra}", "```", ""]


def missing(script: str, name: str | None = None) -> list[str]:
    """The line that says result file NAME.json (default: bench.SCRIPT's module name) is not there yet."""
    name = name or script.rpartition(".")[2]
    return [f"*Not measured yet: no {name}.json in bench/results (run `python -m bench.{script}`).*", ""]


# formatting of result values for tables (None and non-finite values show as —)


def pm(d: dict | None, spec=".4g"):
    if not d or d.get("mean") is None:
        return "—"
    return f"{format(d['mean'], spec)} ± {format(d['std'], spec)}"

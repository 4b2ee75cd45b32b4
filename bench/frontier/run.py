"""The tuning frontier (BENCHMARKS.md §10): each task's spec (bench/frontier/specs/TASK.yaml: every rule's η
bracketed at seed 0 on validation, seeds 1–3 at the chosen η), the zero-cost recipes at seeds 1–3, and the
calibrations of bench/frontier/plan.py, one trial at a time, each trial's record committed as it lands.

    python -m bench.frontier.run --tasks sft-gemma            # run what is missing, in the plan's order
    python -m bench.frontier.run --tasks teacher-student --threads 1   # beside another run on a 2-core machine
    python -m bench.frontier.run --status                     # how complete each task is, from the records
    python -m bench.frontier.run --quick                      # a smoke run: a tiny teacher-student (specs/quick.yaml)

Records: bench/results/frontier/<task>/<trial id>.json (bench.records: config, status, the
validation metrics and `test:` metrics at the end, the validation curve, the train-loss curve, times, machine).
A rerun on any machine first puts the committed records into its store, then runs only what is missing; two
processes may share a task's store (each takes a trial no other is running).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import time
from typing import Any

import torch

from bench import records
from bench.frontier.analysis import write as analysis_write
from bench.frontier.plan import (
    CALIBRATION_RUNS,
    ORDER,
    QUICK,
    calibrated,
    calibration_path,
    committed,
    folder,
    planned,
    spec,
    store_path,
)
from loralpha import TrainConfig
from loralpha.errors import UsageError
from loralpha.studies.calibrate import calibrate
from loralpha.sweep import Store, Trial, run_sweep

FINISHED = ("done", "diverged", "failed")


def seed_store(task: str) -> int:
    """Put the committed records the store lacks into it (a fresh machine starts from the repository)."""
    path = store_path(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with Store(path) as store:
        have = {r["id"]: r["status"] for r in store.records()}
        for tid, rec in committed(task).items():
            if have.get(tid) in FINISHED:
                continue
            if tid not in have:
                store.add([Trial(tid, TrainConfig(**rec["config"]))])
            store.finish(tid, {"status": rec["status"], "final_loss": rec.get("final_loss"), "eval": rec.get("eval"),
                               "reason": rec.get("error"), "wall_time_s": rec.get("wall_time_s"),
                               "load_time_s": rec.get("load_time_s"), "train_time_s": rec.get("train_time_s"),
                               "eval_time_s": rec.get("eval_time_s")})
            n += 1
    return n


def export(task: str) -> int:
    """Write the record of every finished trial of the store that has none yet; returns how many."""
    return records.export(store_path(task), folder(task))


def calibrate_at(task: str, runs: float, threads: int | None) -> None:
    """`loralpha calibrate` on the task at a probe budget of `runs` target runs (probes at seed 0, scored by their
    own train loss: no probe reads validation or test), resuming from its probes.jsonl; a budget the calibrator
    refuses is kept as such, with its reason."""
    path = calibration_path(task, runs)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.parent / "probes.jsonl"
    seen = {_key(p): p for p in map(json.loads, log.read_text().splitlines() if log.is_file() else []) if p}
    fields = dict(spec(task).fixed)
    steps, rank = fields.pop("steps"), fields.pop("rank")
    fields.pop("eval_every", None)
    if threads:
        torch.set_num_threads(threads)

    def landed(p: dict[str, Any]) -> None:
        with log.open("a") as f:
            f.write(json.dumps(p) + "\n")

    began = time.perf_counter()
    try:
        found = calibrate(spec(task).task, steps=steps, rank=rank, budget_steps=round(runs * steps),
                          on_probe=landed, known=lambda key: seen.get(_key(key)), **fields).to_dict()
    except UsageError as e:
        found = {"refused": str(e)}
    path.write_text(json.dumps({"runs": runs, "steps": steps, **found}, indent=1, default=float) + "\n")
    print(f"{task}: calibrated at {runs} target runs in {time.perf_counter() - began:.0f} s"
          + (f" (refused: {found['refused']})" if "refused" in found else ""), flush=True)


def calibrate_if_free(task: str, runs: float, threads: int | None) -> bool:
    """Run the calibration at `runs` target runs unless another process sharing the task is running it (a lock
    beside the task's store); say whether this process ran it."""
    with store_path(task).with_name(f"{task}-calibrate-{runs}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if calibrated(task, runs) is None:  # it may have landed while this process waited for a trial
            calibrate_at(task, runs, threads)
        return True


def _key(p: dict[str, Any]) -> tuple:
    return (p["stage"], f"{p['x']:.6g}", f"{p['y']:.6g}", p["steps"], p["seed"])


def run(task: str, threads: int | None, deadline_min: float | None, batch: int = 1) -> None:
    """Run the task's missing trials `batch` at a time (one: each record is exported as it lands)."""
    seed_store(task)
    stop_at = None if deadline_min is None else time.monotonic() + 60 * deadline_min
    while stop_at is None or time.monotonic() < stop_at:
        with Store(store_path(task)) as store:
            store.reset_stale()  # a trial whose process on this host died (a killed session) runs again
            records = {r["id"]: r for r in store.records()}
        trials = planned(task, records)
        todo = [t for t in trials if records.get(t.id, {}).get("status") not in (*FINISHED, "running")]
        if not todo:
            if any(calibrate_if_free(task, k, threads) for k in CALIBRATION_RUNS if calibrated(task, k) is None):
                continue
            left = sum(records.get(t.id, {}).get("status") == "running" for t in trials)
            print(f"{task}: nothing left to start ({left} running elsewhere)", flush=True)
            return
        began = time.perf_counter()
        run_sweep(todo[:batch], store_path(task), workers=1, threads=threads, progress=False)
        export(task)
        first = todo[0].config
        print(f"{task}: {first.rule} lr={first.lr:g} seed={first.seed}{f' and {batch - 1} more' * (batch > 1)} "
              f"in {time.perf_counter() - began:.0f} s; {max(0, len(todo) - batch)} more planned now", flush=True)


def status(tasks: list[str]) -> None:
    for task in tasks:
        records = committed(task)
        trials = planned(task, records)
        done = sum(t.id in records for t in trials)
        print(f"{task}: {done} of {len(trials)} planned trials have records (the plan grows as sweeps land)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(ORDER), help=f"comma-separated (default: {','.join(ORDER)})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of each trial (default: torch's)")
    parser.add_argument("--deadline", type=float, default=None, metavar="MIN", help="start no trial after MIN minutes")
    parser.add_argument("--status", action="store_true", help="only say how complete each task is")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a tiny teacher-student")
    args = parser.parse_args()
    if args.quick:
        run(QUICK, args.threads, None, batch=1000)
        print(f"wrote {analysis_write((QUICK,), quick=True)}")
        return
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.status:
        return status(tasks)
    for task in tasks:
        run(task, args.threads, args.deadline)


if __name__ == "__main__":
    main()

"""The decisive benchmark: every rule at a budget where the tuned baselines have plateaued, each rule's η
bracketed, 3 seeds with intervals, and every finished trial kept in the repo as it lands.

    python -m bench.decisive.run                          # run what is missing: sft-gemma, tweets, bbc-news, ...
    python -m bench.decisive.run --tasks tweets           # one task
    python -m bench.decisive.run --status                 # how complete each table is, from the stored records
    python -m bench.decisive.run --render                 # results/decisive.json and each table's figure from the
                                                      # records (then tables.py)
    python -m bench.decisive.run --quick                  # a tiny teacher-student: a smoke run (records in quick/)

On a GPU machine (bench/device/gpu_check.py --prepare carries the embedded model and corpora there), many trials share
the one GPU and no trial starts after --deadline minutes, so the records are back before the machine's limit:

    PYTHONPATH=src:gpu-carry/site python3 -m bench.decisive.run \
        --tasks tweets@1000,bbc-news,clip-digits,teacher-student --workers 8 --deadline 6
    cp -r bench/results/decisive $OUT/

Records: bench/results/decisive/<task>/<trial id>.json, one per finished trial (config, status, metrics, the
held-out curve, the train-loss curve, the Signal-Drift per-factor motion, wall time split into load, train
and eval, machine). A rerun reads them and runs only what is missing, on any machine; `bench/render/benchmarks.py`
renders BENCHMARKS.md's decisive tables from them alone.

The protocol (the settings, arms, lattice and plan) is in bench/decisive/plan.py; what the records say (the
tables and verdicts) in bench/decisive/analysis.py.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from bench.common import WORK, machine
from bench.decisive.analysis import table, write_summary
from bench.decisive.figures import draw
from bench.decisive.plan import CURVE_POINTS, ORDER, folder, load, plan, settings
from loralpha import TrainConfig

# ------------------------------------------------------------------ records


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


def export(store_path: Path, task: str, quick: bool, ids: set[str]) -> int:
    """Write the record of every finished trial of `ids` in the store that has none yet; returns how many."""
    from loralpha.sweep import Store

    if not store_path.is_file():
        return 0
    out = folder(task, quick)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with Store(store_path) as store:
        for trial in store.records():
            path = out / f"{trial['id']}.json"
            if trial["id"] in ids and trial["status"] in ("done", "diverged") and not path.is_file():
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(record_of(trial), indent=1, default=float) + "\n")
                tmp.replace(path)
                n += 1
    return n


def store_path(task: str, quick: bool) -> Path:
    return WORK / ("quick" if quick else "full") / "decisive" / task / "study.db"


def run(tasks: list[str], quick: bool, workers: int, deadline_min: float | None = None) -> None:
    """Run the missing trials of `tasks`, in that order, `workers` at a time. Each worker slot takes the next
    trial the protocol wants given every record so far (so a grid grows, and seeds start, as soon as the trial
    they wait for lands), runs it through the local sweep engine on cores // workers threads, and writes its
    record. After `deadline_min` minutes no trial starts; those running finish."""
    from loralpha.sweep import Store, Trial, run_sweep, trial_id
    from loralpha.sweep.engine import local_threads

    lock = threading.Lock()
    running: set[str] = set()
    failed: set[str] = set()
    tries: dict[str, int] = {}
    stop_at = None if deadline_min is None else time.monotonic() + 60 * deadline_min

    def late() -> bool:
        return stop_at is not None and time.monotonic() > stop_at

    def take() -> tuple[str, TrainConfig] | None:
        with lock:
            if late():
                return None
            for task in tasks:
                records = load(task, quick)
                for c in plan(task, settings(quick)[task], records)[0]:
                    tid = trial_id(c)
                    if tid not in records and tid not in running and tid not in failed:
                        running.add(tid)
                        return task, c
            return None

    def slot() -> None:
        while True:
            picked = take()
            if picked is None:
                if late():
                    return
                with lock:
                    if not running:
                        return
                time.sleep(10)  # another slot's trial may open the next points of a grid
                continue
            task, c = picked
            tid = trial_id(c)
            print(f"{time.strftime('%H:%M')} {task} {c.rule} lr={c.lr:g} seed={c.seed} targets="
                  f"{'default' if c.targets is None else 'all'}: start {tid}", flush=True)
            try:
                run_sweep([Trial(tid, c)], store_path(task, quick), workers=1, progress=False,
                          threads=local_threads(workers))
            except Exception as e:  # the store busy, say: hand the trial back and try it again, 3 times at most
                tries[tid] = tries.get(tid, 0) + 1
                print(f"{task} {tid}: {e} (try {tries[tid]} of 3)", flush=True)
                with lock:
                    running.discard(tid)
                    if tries[tid] >= 3:
                        failed.add(tid)
                time.sleep(5)
                continue
            finally:
                export(store_path(task, quick), task, quick, {tid})
            with lock:
                running.discard(tid)
                if tid not in load(task, quick):
                    failed.add(tid)
                    with Store(store_path(task, quick)) as st:
                        error = next((r["error"] for r in st.records() if r["id"] == tid), None)
                    print(f"{task} {tid}: no record ({error})", flush=True)
                else:
                    print(f"{time.strftime('%H:%M')} {task}: done {tid}", flush=True)

    threads = [threading.Thread(target=slot, name=f"slot-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def status(tasks: list[str], quick: bool) -> None:
    for task in tasks:
        s = settings(quick)[task]
        records = load(task, quick)
        wanted, state = plan(task, s, records)
        from loralpha.sweep import trial_id

        have = sum(trial_id(c) in records for c in wanted)
        open_arms = [a.name for a, st in state.items() if not st["bracketed"]]
        print(f"{task}: {have} of {len(wanted)} wanted trials stored"
              + (f"; unbracketed: {', '.join(open_arms)}" if open_arms else "; every optimum bracketed"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tiny teacher-student: a smoke run")
    p.add_argument("--tasks", default=None, help=f"comma-separated (default: {','.join(ORDER)})")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--deadline", type=float, default=None, metavar="MIN",
                   help="start no trial after MIN minutes (those running finish): for a machine lent for a while")
    p.add_argument("--status", action="store_true", help="only say how complete each table is")
    p.add_argument("--render", action="store_true", help="only write results/decisive.json from the records")
    args = p.parse_args()
    tasks = ["teacher-student"] if args.quick else (args.tasks.split(",") if args.tasks else ORDER)
    unknown = [t for t in tasks if t not in settings(args.quick)]
    if unknown:
        p.error(f"unknown task {unknown[0]!r}; choose from {', '.join(settings(args.quick))}")
    if args.status:
        status(tasks, args.quick)
        return
    began = time.time()
    if not args.render:
        run(tasks, args.quick, args.workers, args.deadline)
        status(tasks, args.quick)
        print(f"took {(time.time() - began) / 60:.1f} min")
    tables = {t: table(t, args.quick) for t in settings(args.quick) if load(t, args.quick)}  # from the records
    for name, summary in tables.items():
        if path := draw(name, args.quick, summary):
            print(f"wrote {path}")
    print(f"wrote {write_summary(list(tables), args.quick, tables)}")


if __name__ == "__main__":
    main()

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

Records: bench/results/decisive/<task>/<trial id>.json, one per finished trial (`bench.records`: config, status,
metrics, the held-out curve, the train-loss curve, the Signal-Drift per-factor motion, wall time split into load,
train and eval, machine). A rerun reads them and runs only what is missing, on any machine; `bench/render/benchmarks.py`
renders BENCHMARKS.md's decisive tables from them alone.

The protocol (the settings, arms, lattice and plan) is in bench/decisive/plan.py; what the records say (the
tables and verdicts) in bench/decisive/analysis.py.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

from bench import records
from bench.common import WORK
from bench.decisive.analysis import table, write_summary
from bench.decisive.figures import draw
from bench.decisive.plan import ORDER, folder, load, plan, settings
from loralpha import TrainConfig


def export(store_path: Path, task: str, quick: bool, ids: set[str]) -> int:
    """Write the record of every finished trial of `ids` in the store that has none yet; returns how many."""
    return records.export(store_path, folder(task, quick), ids)


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

"""The decisive benchmark: every rule at a budget where the tuned baselines have plateaued, each rule's η
bracketed, 3 seeds with intervals, and every finished trial kept in the repo as it lands.

    python bench/decisive.py                          # run what is missing: sft-gemma, tweets, bbc-news, ...
    python bench/decisive.py --tasks tweets           # one task
    python bench/decisive.py --status                 # how complete each table is, from the stored records
    python bench/decisive.py --quick                  # a tiny teacher-student: a smoke run (records in quick/)

Records: bench/results/decisive/<task>/<trial id>.json, one per finished trial (config, status, metrics, the
held-out curve, the train-loss curve, the Signal-Drift per-factor motion, wall time split into load, train
and eval, machine). A rerun reads them and runs only what is missing, on any machine; `bench/tables.py`
renders BENCHMARKS.md's decisive tables from them alone.

The protocol, per task (all at rank 8, targets: every linear layer of the blocks unless an arm says qv):
- arms: each rule of RULES (tuned), and `lora-alpha` untuned (c = 256 at the task's full-FT η);
  on tweets also PEFT's default query/value targets for lora-alpha (tuned, untuned) and 2rank
  (`full-model` trains every weight whatever the targets, so its row serves both).
- η: a lattice half a decade apart through the full-FT η (2e-5 × 10^(k/2)); each arm starts at three points
  around a guess and grows by one point beyond its best until the best has a worse point on both sides (a
  diverged point counts as worse), at most MAX_POINTS points.
- seeds: 0 on the grid; 1 and 2 at each arm's best η, as soon as it is bracketed, and for the untuned arm.
- the budget is each task's STEPS; the tables test it (the best-tuned baseline's held-out loss must improve
  by less than 2% over the last quarter of its run) and say so where it fails.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, WORK, machine  # noqa: E402

from loralpha import TrainConfig  # noqa: E402
from loralpha.tasks.base import facts  # noqa: E402

DECISIVE = RESULTS / "decisive"
RULES = ["lora-alpha", "rank", "2rank", "rslora", "loraplus", "full-model"]
SEEDS = [0, 1, 2]
RANK = 8
MAX_POINTS = 8  # per arm: a rule still unbracketed after this many points is reported as such
CURVE_POINTS = 100  # train-loss points kept per record
PLATEAU = 0.02  # the budget holds when the best baseline's held-out loss improves < 2% over the last quarter

BERT_LINEAR = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
DECODER_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MLP_LINEAR = None  # teacher-student: its default targets are already every layer


@dataclass(frozen=True)
class Arm:
    """One row of a table: a rule on a set of targets, tuned over η or at its default η (untuned)."""

    rule: str
    targets: str = "all"  # "all" (every linear layer of the blocks) or "qv" (the task's default targets)
    tuned: bool = True
    start: int = 0  # tuned: lattice index of the middle of the first three points

    @property
    def name(self) -> str:
        where = "" if self.targets == "all" else f" ({self.targets})"
        return f"{self.rule}{'' if self.tuned else ' untuned'}{where}"


@dataclass
class Setting:
    steps: int
    batch_size: int | None
    targets: list[str] | None  # every linear layer of the blocks
    starts: dict[str, int]  # rule -> lattice index of its first guess
    task_options: dict[str, Any] = field(default_factory=dict)
    evals: int = 6  # held-out evaluations after step 0
    tracks: int = 25  # Signal-Drift records per LoRA run
    qv: dict[str, int] = field(default_factory=dict)  # rule -> first guess, on the task's default targets
    select: str = "eval_loss"  # what picks the best η (lower is better)
    report: str = "eval_loss"  # the headline metric of the table

    def arms(self) -> list[Arm]:
        out = [Arm(rule, "all", True, self.starts[rule]) for rule in RULES if rule in self.starts]
        out.append(Arm("lora-alpha", "all", False))
        out += [Arm(rule, "qv", True, k) for rule, k in self.qv.items()]
        if "lora-alpha" in self.qv:
            out.append(Arm("lora-alpha", "qv", False))
        return out


SETTINGS: dict[str, Setting] = {
    "sft-gemma": Setting(steps=150, batch_size=4, targets=DECODER_LINEAR,
                         starts={"lora-alpha": 0, "rank": 3, "2rank": 2, "rslora": 1, "loraplus": 1,
                                 "full-model": 0}),
    "tweets": Setting(steps=500, batch_size=16, targets=BERT_LINEAR, task_options={"n_eval": 500},
                      starts={"lora-alpha": 1, "rank": 4, "2rank": 3, "rslora": 2, "loraplus": 2, "full-model": 0},
                      qv={"lora-alpha": 2, "2rank": 4}, evals=10, report="accuracy"),
    "bbc-news": Setting(steps=300, batch_size=16, targets=BERT_LINEAR, task_options={"n_eval": 300,
                                                                                      "max_length": 128},
                        starts={"lora-alpha": 1, "rank": 4, "2rank": 3, "rslora": 2, "loraplus": 2, "full-model": 0},
                        report="accuracy"),
    "teacher-student": Setting(steps=3000, batch_size=None, targets=MLP_LINEAR,
                               starts={"lora-alpha": 1, "rank": 4, "2rank": 3, "rslora": 2, "loraplus": 2,
                                       "full-model": 0}, evals=10, select="rel_mse", report="rel_mse"),
}
QUICK = {"teacher-student": Setting(steps=12, batch_size=32, targets=None,
                                    task_options={"width": 16, "depth": 2, "n_eval": 32},
                                    starts={"lora-alpha": 1, "2rank": 3, "full-model": 0}, evals=2, tracks=3,
                                    select="rel_mse", report="rel_mse")}
ORDER = ["sft-gemma", "tweets", "bbc-news", "teacher-student"]


def lattice(k: int, task: str) -> float:
    """The k-th η of the task's lattice: its full-FT η × 10^(k/2), to 3 significant digits."""
    return float(f"{facts(task).full_ft_lr * 10 ** (k / 2):.3g}")


def settings(quick: bool) -> dict[str, Setting]:
    return QUICK if quick else SETTINGS


def folder(task: str, quick: bool) -> Path:
    return (RESULTS / "quick" / "decisive" if quick else DECISIVE) / task


def config(task: str, s: Setting, arm: Arm, lr: float, seed: int) -> TrainConfig:
    full = arm.rule.startswith("full")
    return TrainConfig(task=task, rule=arm.rule, rank=RANK, lr=lr, steps=s.steps, batch_size=s.batch_size,
                       seed=seed, eval_every=max(1, s.steps // s.evals), task_options=dict(s.task_options),
                       targets=list(s.targets) if arm.targets == "all" and s.targets else None,
                       track_every=None if full else max(1, s.steps // s.tracks))


# ------------------------------------------------------------------ records


def load(task: str, quick: bool) -> dict[str, dict]:
    """The stored records of `task`: trial id -> record."""
    out = {}
    for path in sorted(folder(task, quick).glob("*.json")):
        rec = json.loads(path.read_text())
        out[rec["id"]] = rec
    return out


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
    return {"id": trial["id"], "config": trial["config"], "status": trial["status"], "error": trial.get("error"),
            "final_loss": trial.get("final_loss"), "eval": trial.get("eval") or {},
            "diverged_at": summary.get("diverged_at"),
            "wall_time_s": trial.get("wall_time_s"), "load_time_s": trial.get("load_time_s"),
            "train_time_s": trial.get("train_time_s"), "eval_time_s": trial.get("eval_time_s"),
            "curve": curve, "train_loss": _thin(losses, CURVE_POINTS), "motion": motion,
            "device": device, "finished_at": trial.get("finished_at"), "machine": machine()}


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


# ------------------------------------------------------------------ the protocol


def cost(rec: dict | None, s: Setting) -> float:
    """What picks the best η: the select metric (inf for a diverged or missing trial)."""
    if not rec or rec["status"] != "done":
        return math.inf
    v = rec["eval"].get(s.select)
    return v if v is not None and math.isfinite(v) else math.inf


def plan(task: str, s: Setting, records: dict[str, dict]) -> tuple[list[TrainConfig], dict[Arm, dict]]:
    """The trials the protocol wants next given the records, and each arm's state so far."""
    from loralpha.sweep import trial_id

    want: list[TrainConfig] = []
    state: dict[Arm, dict] = {}
    for arm in s.arms():
        if not arm.tuned:
            c = [config(task, s, arm, facts(task).full_ft_lr, seed) for seed in SEEDS]
            want += c
            state[arm] = {"lr": facts(task).full_ft_lr, "bracketed": True, "grid": {}}
            continue
        ks = range(arm.start - 1, arm.start + 2)
        grid = {k: records.get(trial_id(config(task, s, arm, lattice(k, task), 0))) for k in ks}
        while True:  # grow the grid by one point beyond the best while the best sits at an end
            if any(r is None for r in grid.values()):
                break
            costs = {k: cost(r, s) for k, r in grid.items()}
            if all(math.isinf(c) for c in costs.values()):
                k = min(grid) - 1  # everything diverged: look lower
            else:
                best = min(costs, key=lambda k: (costs[k], k))
                if min(grid) < best < max(grid):
                    break
                k = best - 1 if best == min(grid) else best + 1
            if len(grid) >= MAX_POINTS:
                break
            grid[k] = records.get(trial_id(config(task, s, arm, lattice(k, task), 0)))
        want += [config(task, s, arm, lattice(k, task), 0) for k in sorted(grid)]
        costs = {k: cost(r, s) for k, r in grid.items()}
        done = all(r is not None for r in grid.values())
        finite = [k for k in grid if math.isfinite(costs[k])]
        best = min(finite, key=lambda k: (costs[k], k)) if finite else None
        bracketed = done and best is not None and min(grid) < best < max(grid)
        state[arm] = {"best_k": best, "lr": lattice(best, task) if best is not None else None,
                      "bracketed": bracketed, "grid": {lattice(k, task): grid[k] for k in sorted(grid)}}
        if bracketed:
            want += [config(task, s, arm, lattice(best, task), seed) for seed in SEEDS[1:]]
    seen, unique = set(), []
    for c in want:
        tid = trial_id(c)
        if tid not in seen:
            seen.add(tid)
            unique.append(c)
    return unique, state


def store_path(task: str, quick: bool) -> Path:
    return WORK / ("quick" if quick else "full") / "decisive" / task / "study.db"


def run(tasks: list[str], quick: bool, workers: int) -> None:
    """Run the missing trials of `tasks`, in that order, `workers` at a time. Each worker slot takes the next
    trial the protocol wants given every record so far (so a grid grows, and seeds start, as soon as the trial
    they wait for lands), runs it through the local sweep engine on cores // workers threads, and writes its
    record."""
    from loralpha.sweep import Store, Trial, run_sweep, trial_id
    from loralpha.sweep.engine import local_threads

    lock = threading.Lock()
    running: set[str] = set()
    failed: set[str] = set()

    def take() -> tuple[str, TrainConfig] | None:
        with lock:
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
    p.add_argument("--status", action="store_true", help="only say how complete each table is")
    args = p.parse_args()
    tasks = ["teacher-student"] if args.quick else (args.tasks.split(",") if args.tasks else ORDER)
    unknown = [t for t in tasks if t not in settings(args.quick)]
    if unknown:
        p.error(f"unknown task {unknown[0]!r}; choose from {', '.join(settings(args.quick))}")
    if args.status:
        status(tasks, args.quick)
        return
    began = time.time()
    run(tasks, args.quick, args.workers)
    status(tasks, args.quick)
    print(f"took {(time.time() - began) / 60:.1f} min")


if __name__ == "__main__":
    main()

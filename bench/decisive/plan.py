"""What the decisive benchmark runs: its settings per task, its arms, the η lattice, and the plan of trials
grown from the records so far (bench/decisive/run.py runs it; bench/decisive/analysis.py reads the records).

The protocol, per task (all at rank 8, targets: every linear layer of the blocks unless an arm says qv; on
clip-digits, of both towers: the text tower's linear layers and the CNN's convolutions and last layer):
- arms: each rule of RULES (tuned), and `lora-alpha` untuned (c = 256 at the task's full-FT η);
  on tweets also PEFT's default query/value targets for lora-alpha (tuned, untuned) and 2rank
  (`full-model` trains every weight whatever the targets, so its row serves both).
- η: a lattice half a decade apart through the full-FT η (2e-5 × 10^(k/2)); each arm starts at three points
  around a guess and grows by one point beyond its best until the best has a worse point on both sides (a
  diverged point counts as worse), at most MAX_POINTS points.
- seeds: 0 on the grid; 1 and 2 at each arm's best η, as soon as it is bracketed, and for the untuned arm.
- the budget is each task's STEPS; the tables test it (the best-tuned baseline's held-out loss must improve
  by less than 2% over the last quarter of its run) and say so where it fails. A task's `longer` budgets run the
  best-tuned baseline (seed 0, at its best η) again at those step counts, so the table shows where the curve does
  flatten: first the best of the seed-0 grids, as soon as every baseline's is bracketed and before any seed 1 or 2
  runs (so a budget that fails is known early: tweets spent its whole grid at 500 steps before it was), then the
  best over the three seeds, should it be another.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.common import RESULTS
from loralpha import TrainConfig
from loralpha.studies.bracket import next_point
from loralpha.tasks.base import facts

DECISIVE = RESULTS / "decisive"
SUBJECT = "lora-alpha"  # the rule on trial; every other rule is a baseline it is measured against
RULES = [SUBJECT, "rank", "2rank", "rslora", "loraplus", "full-model"]
SEEDS = [0, 1, 2]
RANK = 8
MAX_POINTS = 8  # per arm: a rule still unbracketed after this many points is reported as such
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
    longer: tuple[int, ...] = ()  # budgets at which the best-tuned baseline runs again (seed 0, its best η)

    def arms(self) -> list[Arm]:
        out = [Arm(rule, "all", True, self.starts[rule]) for rule in RULES if rule in self.starts]
        out.append(Arm(SUBJECT, "all", False))
        out += [Arm(rule, "qv", True, k) for rule, k in self.qv.items()]
        if SUBJECT in self.qv:
            out.append(Arm(SUBJECT, "qv", False))
        return out


SETTINGS: dict[str, Setting] = {
    "sft-gemma": Setting(steps=150, batch_size=4, targets=DECODER_LINEAR,
                         starts={"lora-alpha": 0, "rank": 3, "2rank": 2, "rslora": 1, "loraplus": 1,
                                 "full-model": 0}),
    "tweets": Setting(steps=500, batch_size=16, targets=BERT_LINEAR, task_options={"n_eval": 500},
                      starts={"lora-alpha": 1, "rank": 4, "2rank": 3, "rslora": 2, "loraplus": 2, "full-model": 0},
                      qv={"lora-alpha": 2, "2rank": 4}, evals=10, report="accuracy", longer=(1000, 2000)),
    "bbc-news": Setting(steps=300, batch_size=16, targets=BERT_LINEAR, task_options={"n_eval": 300,
                                                                                      "max_length": 128},
                        starts={"lora-alpha": 1, "rank": 4, "2rank": 3, "rslora": 2, "loraplus": 2, "full-model": 0},
                        report="accuracy", longer=(600,)),
    "clip-digits": Setting(steps=150, batch_size=64, targets=BERT_LINEAR + ["conv1", "conv2", "fc"],
                           starts={"lora-alpha": 1, "rank": 4, "2rank": 3, "rslora": 2, "loraplus": 2, "full-model": 0},
                           evals=10, report="zero_shot_accuracy", longer=(300,)),
    "teacher-student": Setting(steps=3000, batch_size=None, targets=MLP_LINEAR,
                               starts={"lora-alpha": 1, "rank": 4, "2rank": 3, "rslora": 2, "loraplus": 2,
                                       "full-model": 0}, evals=10, select="rel_mse", report="rel_mse",
                               longer=(6000,)),
}
# tweets at 500 steps failed its budget test (full-model still improved 2.9% over the last quarter) and passed it at
# 1000 (1.9%, seed 0; at 2000 it fails again, 2.1%, 4.4% lower still): the same protocol at 1000 steps, the smallest
# budget that passed, each arm's first guess at its best η of the 500-step table
SETTINGS["tweets@1000"] = replace(SETTINGS["tweets"], steps=1000, longer=(2000,),
                                  starts={"lora-alpha": 1, "rank": 4, "2rank": 3, "rslora": 3, "loraplus": 2,
                                          "full-model": 1}, qv={"lora-alpha": 2, "2rank": 4})
QUICK = {"teacher-student": Setting(steps=12, batch_size=32, targets=None,
                                    task_options={"width": 16, "depth": 2, "n_eval": 32},
                                    starts={"lora-alpha": 1, "2rank": 3, "full-model": 0}, evals=2, tracks=3,
                                    select="rel_mse", report="rel_mse")}
ORDER = ["sft-gemma", "tweets", "tweets@1000", "bbc-news", "clip-digits", "teacher-student"]
# rl-arith is not here yet: its first comparison (bench/examples/rl_arith.py, 3 rules × 2 seeds at 100 GRPO steps; the
# s / step of each run is in docs/results/rl-arith/) comes first, and Gemma's weights cannot travel to a GPU
# machine without a registry, so its grid would be CPU hours on top of sft-gemma's.


def task_of(table: str) -> str:
    """The task a table runs: its name up to any "@" (`tweets@1000`: tweets at another budget)."""
    return table.partition("@")[0]


def task_facts(table: str):
    return facts(task_of(table))


def lattice(k: int, task: str) -> float:
    """The k-th η of the task's lattice: its full-FT η × 10^(k/2), to 3 significant digits."""
    return float(f"{task_facts(task).full_ft_lr * 10 ** (k / 2):.3g}")


def settings(quick: bool) -> dict[str, Setting]:
    return QUICK if quick else SETTINGS


def folder(task: str, quick: bool) -> Path:
    return (RESULTS / "quick" / "decisive" if quick else DECISIVE) / task_of(task)  # a task's tables share it


def config(task: str, s: Setting, arm: Arm, lr: float, seed: int, steps: int | None = None) -> TrainConfig:
    """The trial of `arm` at η = lr and `seed`, at the task's budget (or at `steps`, a longer one)."""
    from loralpha.scaling import trains_full_weights

    full = trains_full_weights(arm.rule)
    steps = steps or s.steps
    return TrainConfig(task=task_of(task), rule=arm.rule, rank=RANK, lr=lr, steps=steps, batch_size=s.batch_size,
                       seed=seed, eval_every=max(1, steps // s.evals), task_options=dict(s.task_options),
                       targets=list(s.targets) if arm.targets == "all" and s.targets else None,
                       track_every=None if full else max(1, steps // s.tracks))


def load(task: str, quick: bool, only: set[str] | None = None) -> dict[str, dict]:
    """The stored records of `task` (those of `only`, if given): trial id -> record."""
    out = {}
    for path in sorted(folder(task, quick).glob("*.json")):
        if only is not None and path.stem not in only:
            continue
        rec = json.loads(path.read_text())
        out[rec["id"]] = rec
    return out


def cost(rec: dict | None, s: Setting) -> float:
    """What picks the best η: the select metric (inf for a diverged or missing trial)."""
    if not rec or rec["status"] != "done":
        return math.inf
    v = rec["eval"].get(s.select)
    return v if v is not None and math.isfinite(v) else math.inf


def best_baseline(task: str, s: Setting, records: dict[str, dict], state: dict[Arm, dict],
                  seeds: list[int] = SEEDS) -> tuple[Arm, float] | None:
    """The tuned baseline (every linear layer) with the lowest mean held-out `select` over `seeds` at its best η,
    once every such baseline is bracketed and has those seeds; None before."""
    from loralpha.sweep import trial_id

    means = {}
    for arm, st in state.items():
        if not arm.tuned or arm.rule == SUBJECT or arm.targets != "all":
            continue
        if not st["bracketed"]:
            return None
        runs = [records.get(trial_id(config(task, s, arm, st["lr"], seed))) for seed in seeds]
        if any(r is None for r in runs):
            return None
        means[arm] = sum(cost(r, s) for r in runs) / len(runs)
    if not means:
        return None
    arm = min(means, key=lambda a: means[a])
    return arm, state[arm]["lr"]


def budget_baseline(task: str, s: Setting, records: dict[str, dict],
                    state: dict[Arm, dict]) -> tuple[Arm, float] | None:
    """The baseline whose runs at the longer budgets test the table's budget: the best of the seed-0 grids as soon
    as every baseline's is bracketed, then, once the three seeds are in, their best (should it be another)."""
    return best_baseline(task, s, records, state) or best_baseline(task, s, records, state, SEEDS[:1])


def plan(task: str, s: Setting, records: dict[str, dict]) -> tuple[list[TrainConfig], dict[Arm, dict]]:
    """The trials the protocol wants next given the records, and each arm's state so far."""
    from loralpha.sweep import trial_id

    want: list[TrainConfig] = []
    state: dict[Arm, dict] = {}
    for arm in s.arms():
        if not arm.tuned:
            c = [config(task, s, arm, task_facts(task).full_ft_lr, seed) for seed in SEEDS]
            want += c
            state[arm] = {"lr": task_facts(task).full_ft_lr, "bracketed": True, "grid": {}}
            continue
        ks = range(arm.start - 1, arm.start + 2)
        grid = {k: records.get(trial_id(config(task, s, arm, lattice(k, task), 0))) for k in ks}
        # grow the grid by one point beyond the best while the best sits at an end (the library's rule)
        while (k := next_point({k: None if r is None else cost(r, s) for k, r in grid.items()}, MAX_POINTS)) \
                is not None:
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
    best = budget_baseline(task, s, records, state)  # does the budget plateau? that baseline at longer budgets
    if best is not None:
        want += [config(task, s, best[0], best[1], 0, steps=n) for n in s.longer]
    if "2rank" in s.starts:  # the convergence claim's pair: 2rank beside LoRA-α at the full-FT η, where it is made
        want.append(config(task, s, Arm("2rank", "all"), task_facts(task).full_ft_lr, 0))
    seen, unique = set(), []
    for c in want:
        tid = trial_id(c)
        if tid not in seen:
            seen.add(tid)
            unique.append(c)
    # what runs first: the seed-0 runs at the table's budget (they grow the grids), then the longer budgets (a
    # failed budget test is known before the seeds are spent on that budget), then seeds 1 and 2
    unique.sort(key=lambda c: 0 if c.seed == 0 and c.steps == s.steps else 1 if c.steps != s.steps else 2)
    return unique, state

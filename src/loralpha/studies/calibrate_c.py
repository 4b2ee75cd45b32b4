"""Calibrate c of LoRA-α (α = c·√r) for a task with short probes at one small rank.

The paper's c = 256 was calibrated on LLM supervised fine-tuning; another task may want another
c. `calibrate` finds it cheaply by successive halving over a log grid of c (default 1, 2, 4,
…, 4096), training under rule `lora-alpha` at rank R0 with the task's full-fine-tuning
learning rate (lr None, the rule's default):

    round k:  every surviving c trains s·2^k optimizer steps from scratch (each seed);
              its score is the train loss (`final_loss`, mean over seeds; diverged = worst);
              the best ⌊n/2⌋ survive (at least one).

The rounds run until one c remains or the next round would overspend `budget_steps` (total
optimizer steps over all probes and seeds, never exceeded); s is the largest step count with
which the whole schedule fits the budget (at least `MIN_PROBE_STEPS`). The winner is the best
c of the last round. It is then refined with the parabola in log c through it and its nearest
probed neighbours on either side (the latest round that has both, at that round's step count;
see `loralpha.laws.locate`), when it is interior and the parabola opens upward. A winner at
the grid's edge is flagged: the best c may lie beyond it.

A probe is short, so the c it picks is the best for a short run at R0; the √r law then carries
it to other ranks (α = c·√r), which `loralpha fit` can check on a real sweep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from .. import scaling
from ..checks import positive, positive_int
from ..errors import UsageError
from ..loop import TrainConfig, train
from .laws import locate
from .records import effective_lr

DEFAULT_COEFS = tuple(2.0 ** k for k in range(13))  # 1 … 4096
MIN_PROBE_STEPS = 10  # a probe's loss is the mean of its last 10 steps (train.FINAL_WINDOW)
DEFAULT_BUDGET = 2000
SET_BY_CALIBRATE = ("task", "rule", "rank", "coef", "steps", "seed", "eval_every")


def schedule(n: int) -> list[int]:
    """Candidates per round of successive halving from n: n, ⌊n/2⌋, … while more than one."""
    sizes = []
    while n > 1:
        sizes.append(n)
        n //= 2
    return sizes or [1]


def first_steps(n_coefs: int, n_seeds: int, budget_steps: int) -> int:
    """s: the steps of round 0 such that the whole schedule, Σ n_k·s·2^k·seeds, fits the budget."""
    units = sum(size * 2 ** k for k, size in enumerate(schedule(n_coefs))) * n_seeds
    s = max(budget_steps // units, MIN_PROBE_STEPS)
    if n_coefs * s * n_seeds > budget_steps:
        raise UsageError(f"a budget of {budget_steps} steps is too small: the first round alone needs "
                         f"{n_coefs} coefs × {MIN_PROBE_STEPS} steps × {n_seeds} seed(s) = "
                         f"{n_coefs * MIN_PROBE_STEPS * n_seeds}; raise budget_steps= or use fewer coefs= or seeds=")
    return s


@dataclass
class Calibration:
    """The chosen c, every probe, and what it cost."""

    task: str
    rank: int  # R0
    coef: float  # the chosen c (refined, or the winning grid point)
    grid_coef: float  # the winning grid point
    refined: bool
    refined_from: dict[str, Any] | None  # round, steps and the three c of the parabola
    edge: bool  # the winner is the grid's smallest or largest c
    bound: str | None  # "upper" (best c ≤ coef) at the low edge, "lower" (≥) at the high edge
    lr: float  # η of every probe
    seeds: list[int]
    coefs: list[float]  # the grid
    rounds: list[dict[str, Any]]  # round, steps, probes [{coef, loss, status, losses, steps_taken}], kept
    budget_steps: int
    cost_steps: int  # optimizer steps actually taken (a diverged probe stops early)
    planned_steps: int  # steps the rounds that ran were allotted (≤ budget_steps)
    wall_time_s: float
    stopped: str  # "one left" or "budget"
    config: dict[str, Any]  # the base TrainConfig of the probes

    def alphas(self, ranks: Sequence[int]) -> list[dict[str, float]]:
        """α = c·√r (and γ = α/r) at each rank, next to the paper's 256·√r."""
        rows = []
        for r in ranks:
            r = scaling.check_rank(r)
            a = scaling.lora_alpha("lora-alpha", r, self.coef)
            rows.append({"rank": r, "alpha": a, "gamma": a / r, "paper": scaling.lora_alpha("lora-alpha", r)})
        return rows

    def to_dict(self, ranks: Sequence[int] = ()) -> dict[str, Any]:
        out = asdict(self)
        out["alphas"] = self.alphas(ranks)
        return out


def check_fields(extra: dict[str, Any], set_by: tuple[str, ...] = SET_BY_CALIBRATE, of: type = TrainConfig,
                 who: str = "calibrate") -> None:
    """Refuse, in one line, a field of `of` that the calibration `who` sets itself (`set_by`) or one that does not
    exist."""
    names = {f.name for f in fields(of)}
    for key in extra:
        if key in set_by:
            raise UsageError(f"{who} sets {key} itself; it cannot be given")
        if key not in names:
            raise UsageError(f"unknown {of.__name__} field {key!r}; fields: {', '.join(sorted(names))}")


def calibrate(task: str = "teacher-student", rank: int = 4, budget_steps: int = DEFAULT_BUDGET,
              coefs: Sequence[float] | None = None, seeds: Sequence[int] = (0,),
              on_round: Callable[[dict[str, Any]], None] | None = None,
              on_probe: Callable[[dict[str, Any]], None] | None = None, **config_fields: Any) -> Calibration:
    """Pick c of lora-alpha for `task` by successive halving of probes at rank `rank` (see above).

    `config_fields` are further `TrainConfig` fields of every probe (batch_size, task_options,
    lr, schedule, …); task, rule, rank, coef, steps, seed and eval_every are set here. `on_round`
    is called with each finished round and `on_probe` with each finished probe. Raises `UsageError`
    for bad input, a budget too small for one round, or a first round in which every probe diverged.
    """
    start = time.perf_counter()
    check_fields(config_fields)
    grid = sorted({positive(c, "coef c") for c in (DEFAULT_COEFS if coefs is None else coefs)})
    if len(grid) < 2:
        raise UsageError(f"give 2 or more distinct coefs to choose from, got {len(grid)}")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) < len(seeds):
        raise UsageError(f"seeds must be distinct integers, at least one, got {seeds!r}")
    positive_int(budget_steps, "budget (optimizer steps, budget_steps=)")
    base = TrainConfig(task=task, rule="lora-alpha", rank=rank, coef=grid[0], steps=MIN_PROBE_STEPS, seed=seeds[0],
                       **config_fields).check()
    s0 = first_steps(len(grid), len(seeds), budget_steps)
    lr = base.lr if base.lr is not None else effective_lr(asdict(base))

    rounds: list[dict[str, Any]] = []
    candidates = list(grid)
    cost = planned = 0
    stopped = "one left"
    for k, _ in enumerate(schedule(len(grid))):
        steps = s0 * 2 ** k
        if planned + len(candidates) * steps * len(seeds) > budget_steps:
            stopped = "budget"
            break
        probes = []
        for c in candidates:
            losses, statuses, taken = [], [], 0
            for seed in seeds:
                config = TrainConfig(**{**asdict(base), "coef": c, "steps": steps, "seed": seed, "eval_every": steps})
                result = train(config, evaluate=False)  # scored by train loss: no held-out pass
                if result.status == "interrupted":
                    raise KeyboardInterrupt
                taken += result.steps
                statuses.append(result.status)
                losses.append(result.final_loss if result.status == "done" else None)
            diverged = any(v is None for v in losses)
            probes.append({"coef": c, "loss": None if diverged else sum(losses) / len(losses),
                           "status": "diverged" if diverged else "done", "losses": losses, "steps_taken": taken})
            cost += taken
            if on_probe:
                on_probe({"round": k + 1, "steps": steps, **probes[-1]})
        planned += len(candidates) * steps * len(seeds)
        if all(p["loss"] is None for p in probes):
            raise UsageError(f"every probe diverged at {steps} steps (c from {grid[0]:g} to {grid[-1]:g}, "
                             f"η = {lr:g}); try smaller coefs or a lower lr")
        scores = [math.inf if p["loss"] is None else p["loss"] for p in probes]
        order = sorted(range(len(probes)), key=lambda i: (scores[i], i))
        kept = sorted(candidates[i] for i in order[:max(1, len(candidates) // 2)])
        winner = candidates[order[0]]
        record = {"round": k + 1, "steps": steps, "probes": probes, "kept": kept, "best": winner}
        rounds.append(record)
        if on_round:
            on_round(record)
        candidates = kept
        if len(candidates) == 1:
            break
    if not rounds:  # cannot happen: first_steps guarantees round 1 fits
        raise UsageError(f"a budget of {budget_steps} steps does not fit one round")

    winner = rounds[-1]["best"]
    coef, refined, refined_from = winner, False, None
    for rnd in reversed(rounds):  # the latest round with a probed c on both sides of the winner
        scored = {p["coef"]: (math.inf if p["loss"] is None else p["loss"]) for p in rnd["probes"]}
        lower = [c for c in scored if c < winner]
        higher = [c for c in scored if c > winner]
        if winner in scored and lower and higher:
            three = [max(lower), winner, min(higher)]
            found = locate(three, [scored[c] for c in three])
            if found is not None and found.index == 1 and found.refined:
                coef, refined = found.x_star, True
                refined_from = {"round": rnd["round"], "steps": rnd["steps"], "coefs": three}
            break
    edge = winner in (grid[0], grid[-1])
    bound = ("upper" if winner == grid[0] else "lower") if edge else None
    return Calibration(task=task, rank=base.rank, coef=coef, grid_coef=winner, refined=refined,
                       refined_from=refined_from, edge=edge, bound=bound, lr=lr, seeds=seeds, coefs=grid,
                       rounds=rounds, budget_steps=budget_steps, cost_steps=cost, planned_steps=planned,
                       wall_time_s=time.perf_counter() - start, stopped=stopped, config=asdict(base))

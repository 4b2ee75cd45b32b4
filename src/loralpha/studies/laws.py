"""Scaling laws from a sweep: the optimal α (or η) at each rank, and a power law through them.

A sweep's trial records (dicts with `config` = `dataclasses.asdict(TrainConfig)`, `status`,
`final_loss`, `eval`, ...; see `load_records`) give, at each rank r, a curve metric(x) on a
grid of x, where x is α — the effective `lora_alpha` written to PEFT,
`scaling.lora_alpha(rule, r, coef, alpha)` — or η, the effective learning rate.

`optimum` reads each curve the same way:

* Records with status `done` count with their metric; `diverged` ones count as +∞ (the worst
  value), so they bound the stable range; `failed`, `pending` and `running` ones are ignored.
  A cell (r, x) scores the mean of its seeds, +∞ if any seed diverged. Metrics where higher is
  better (accuracy, macro_f1) are negated first, so "best" is always the minimum.
* x̂ is the grid point with the best score. When x̂ is interior and both its neighbours are
  finite, the parabola y = a·u² + b·u + c through the three points in u = log x refines it:
  log x* = −b / (2a), used when a > 0 (the parabola opens upward); otherwise x* = x̂.
* x̂ at the edge of the grid is flagged `edge`: the optimum is there or beyond, so x* is a bound
  — an upper bound (x* ≤ x̂) at the grid's low end, a lower bound (x* ≥ x̂) at its high end.

`power_law` fits  log x* = log c + p·log r  by least squares over the ranks with an interior
optimum, with bootstrap 95% intervals for c and p, and compares fixed exponents p = 0 (constant
α), p = ½ (α ∝ √r, the paper's α = 256·√r), p = 1 (α ∝ r) and a free p by their
leave-one-rank-out error in log x*. `fit` does all of it and returns what `loralpha fit` prints
and writes to fit.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import scaling
from ..checks import positive_int
from ..errors import UsageError
from .records import config_value, effective_alpha, is_higher_better, load_records, metric_value  # noqa: F401

XS = ("alpha", "lr")
FIXED_EXPONENTS = (0.0, 0.5, 1.0)  # constant α, α ∝ √r, α ∝ r
MODEL_NOTES = {0.0: "constant", 0.5: "∝ √r", 1.0: "∝ r", None: "fitted p"}
COUNTED = ("done", "diverged")  # statuses that count; any other status is ignored


# ---------------------------------------------------------------- one curve


class Located(NamedTuple):
    index: int  # the best grid point
    x_star: float  # the refined optimum (or the grid point)
    refined: bool  # True: the parabola through the best point and its neighbours moved it
    edge: bool  # the best grid point is the grid's first or last
    bound: str | None  # "upper" (x* ≤ grid point) at the low edge, "lower" (x* ≥) at the high edge


def parabola_vertex(u: Sequence[float], y: Sequence[float]) -> float | None:
    """The vertex −b/(2a) of y = a·u² + b·u + c through three points; None unless a > 0."""
    (u0, u1, u2), (y0, y1, y2) = u, y
    d1, d2 = (y1 - y0) / (u1 - u0), (y2 - y1) / (u2 - u1)
    a = (d2 - d1) / (u2 - u0)
    if not (math.isfinite(a) and a > 0):
        return None
    b = d1 - a * (u0 + u1)
    return -b / (2 * a)


def locate(xs: Sequence[float], costs: Sequence[float]) -> Located | None:
    """The optimum of a curve: `xs` ascending and positive, `costs` lower-is-better (+∞ allowed).

    None when every cost is +∞. See the module docstring for the refinement and the edges.
    """
    costs = [float(c) for c in costs]
    if not costs or all(not math.isfinite(c) for c in costs):
        return None
    i = min(range(len(costs)), key=lambda k: costs[k])  # the first of equals
    last = len(costs) - 1
    if i == 0 or i == last:
        bound = None if last == 0 else ("upper" if i == 0 else "lower")
        return Located(i, float(xs[i]), False, True, bound)
    u = [math.log(xs[k]) for k in (i - 1, i, i + 1)]
    y = costs[i - 1:i + 2]
    if all(math.isfinite(v) for v in y):
        vertex = parabola_vertex(u, y)
        if vertex is not None:
            vertex = min(max(vertex, u[0]), u[2])
            return Located(i, math.exp(vertex), True, False, None)
    return Located(i, float(xs[i]), False, False, None)


@dataclass
class Optimum:
    """The optimum of x at one rank (one `group` value)."""

    group: Any  # the rank
    x_star: float | None  # None: every grid point diverged
    grid_best: float | None  # the best grid point
    best: float | None  # the mean metric there, in the metric's own sign
    refined: bool
    edge: bool  # at the grid's edge: x_star is a bound, not an estimate
    bound: str | None  # "upper": optimum ≤ x_star; "lower": optimum ≥ x_star
    seeds: int  # distinct seeds among the rank's counted records
    grid: list[dict[str, Any]]  # per grid point: x, mean (None if any seed diverged), n, diverged
    other: float | None = None  # η for x = alpha, α for x = lr (one value per rank)
    cells: list[tuple[float, np.ndarray]] = field(default_factory=list, repr=False, compare=False)  # (x, costs)

    @property
    def interior(self) -> bool:
        return self.x_star is not None and not self.edge

    def describe(self) -> str:
        if self.x_star is None:
            return "all diverged"
        if self.edge and self.bound:
            return f"{'≤' if self.bound == 'upper' else '≥'} {self.x_star:.4g}"
        if self.edge:
            return f"{self.x_star:.4g} (one grid point)"
        return f"{self.x_star:.4g}" if self.refined else f"{self.x_star:.4g} (grid)"

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.group, "x_star": self.x_star, "grid_best": self.grid_best, "best_metric": self.best,
                "refined": self.refined, "edge": self.edge, "bound": self.bound, "seeds": self.seeds,
                "other": self.other, "grid": self.grid}


Cells = dict[Any, dict[float, list[tuple[Any, float]]]]  # {group: {x: [(seed, cost), ...]}}


def _collect(records: Sequence[dict[str, Any]], x: str, group: str, metric: str, higher: bool,
             at: float | None) -> tuple[Cells, dict[Any, float | None], dict[str, int]]:
    """Cells {group: {x: [(seed, cost), ...]}}, the other variable per group, and counts."""
    if x not in XS:
        raise UsageError(f"x must be alpha or lr, got {x!r}")
    other_name = "lr" if x == "alpha" else "alpha"
    counts = {"records": len(records), "done": 0, "diverged": 0, "ignored": 0, "missing_metric": 0, "no_alpha": 0,
              "other_filtered": 0}
    tasks: set[str] = set()
    rows = []
    for record in records:
        status = record.get("status")
        if status not in COUNTED:
            counts["ignored"] += 1
            continue
        config = record["config"]
        if effective_alpha(config) is None:  # rule full: no α, not a LoRA trial
            counts["no_alpha"] += 1
            continue
        if status == "done":
            value = metric_value(record, metric)
            if value is None:
                counts["missing_metric"] += 1
                continue
            cost = -value if higher else value
            if not math.isfinite(cost):
                cost = math.inf
        else:
            cost = math.inf
        xv, gv = float(config_value(config, x)), config_value(config, group)
        ov = float(config_value(config, other_name))
        if not (math.isfinite(xv) and xv > 0):
            raise UsageError(f"{x} must be positive to be fitted on a log scale, got {xv}")
        if at is not None and not math.isclose(ov, at, rel_tol=1e-6):
            counts["other_filtered"] += 1
            continue
        counts[status] += 1
        tasks.add(config.get("task", "teacher-student"))
        rows.append((gv, xv, ov, config.get("seed"), cost))
    if len(tasks) > 1:
        raise UsageError(f"records come from several tasks ({', '.join(sorted(tasks))}); fit one task at a time")
    if not rows:
        what = f" with {other_name} = {at:g}" if at is not None else ""
        if counts["missing_metric"]:
            raise UsageError(f"no finished trial{what} reports metric {metric!r}")
        raise UsageError(f"no finished trials (done or diverged){what} among {len(records)} records")
    cells: Cells = {}
    others: dict[Any, set[float]] = {}
    for gv, xv, ov, seed, cost in rows:
        cells.setdefault(gv, {}).setdefault(xv, []).append((seed, cost))
        others.setdefault(gv, set()).add(ov)
    for gv, values in others.items():
        distinct = sorted({float(f"{v:.9g}") for v in values})
        if len(distinct) > 1:
            shown = ", ".join(f"{v:g}" for v in distinct[:6])
            raise UsageError(f"{group} {gv} has trials at {len(distinct)} values of {other_name} ({shown}); "
                             f"pick one with at= to fit {x} at that {other_name}")
    return cells, {g: next(iter(v)) for g, v in others.items()}, counts


def _optimum(gv: Any, grid: dict[float, list[tuple[Any, float]]], higher: bool, other: float | None) -> Optimum:
    xs = sorted(grid)
    cells = [(xv, np.array([c for _, c in grid[xv]], dtype=float)) for xv in xs]
    means = [float(costs.mean()) for _, costs in cells]
    sign = -1.0 if higher else 1.0
    table = [{"x": xv, "mean": sign * m if math.isfinite(m) else None, "n": len(costs),
              "diverged": int(np.sum(~np.isfinite(costs)))} for (xv, costs), m in zip(cells, means)]
    seeds = len({s for xv in xs for s, _ in grid[xv]})
    found = locate(xs, means)
    if found is None:
        return Optimum(gv, None, None, None, False, False, None, seeds, table, other, cells)
    return Optimum(gv, found.x_star, xs[found.index], sign * means[found.index], found.refined, found.edge,
                   found.bound, seeds, table, other, cells)


def _sort_key(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def optimum(records: Sequence[dict[str, Any]], x: str = "alpha", group: str = "rank", metric: str = "final_loss",
            higher_is_better: bool | None = None, at: float | None = None) -> list[Optimum]:
    """x* per `group` value (per rank), ascending; see the module docstring for how.

    `metric` is `final_loss` (the record's train loss) or a key of its `eval`; whether higher is
    better is `higher_is_better` if given, else known from the name. `at` keeps only records whose
    other variable (η for x = alpha, α for x = lr) equals it; without it, each rank must have one.
    """
    higher = is_higher_better(metric, higher_is_better)
    cells, others, _ = _collect(records, x, group, metric, higher, at)
    return [_optimum(gv, cells[gv], higher, others[gv]) for gv in sorted(cells, key=_sort_key)]


# ---------------------------------------------------------------- the power law


def _least_squares(lr: np.ndarray, lx: np.ndarray, p: float | None = None) -> tuple[float, float]:
    """(log c, p) of log x = log c + p·log r; with `p` given, only log c (the mean residual)."""
    if p is not None:
        return float(np.mean(lx - p * lr)), float(p)
    slope, intercept = np.polyfit(lr, lx, 1)
    return float(intercept), float(slope)


def _loo_rmse(lr: np.ndarray, lx: np.ndarray, p: float | None) -> float | None:
    """Leave-one-rank-out RMSE in log x: fit on the other ranks, predict the held-out one."""
    need = 3 if p is None else 2
    if len(lr) < need:
        return None
    errors = []
    for j in range(len(lr)):
        keep = np.arange(len(lr)) != j
        if p is None and len(set(lr[keep].tolist())) < 2:
            return None
        logc, slope = _least_squares(lr[keep], lx[keep], p)
        errors.append(lx[j] - (logc + slope * lr[j]))
    return float(np.sqrt(np.mean(np.square(errors))))


@dataclass
class PowerLaw:
    """x* = c·r^p over the ranks with an interior optimum, with bootstrap intervals."""

    c: float
    p: float
    c_ci: tuple[float, float] | None  # 95% bootstrap interval (None: could not resample)
    p_ci: tuple[float, float] | None
    ranks: list[float]
    x_star: list[float]
    rmse: float  # in-sample RMSE of log x*
    bootstrap: dict[str, Any]  # method (seeds | ranks), resamples, valid, seed, level, note
    models: list[dict[str, Any]]  # name, p, c (fitted to all ranks), loo_rmse, rmse
    best_model: str | None  # the model with the lowest held-out RMSE

    def to_dict(self) -> dict[str, Any]:
        return {"c": self.c, "p": self.p, "c_ci": self.c_ci, "p_ci": self.p_ci, "ranks": self.ranks,
                "x_star": self.x_star, "rmse_log": self.rmse, "bootstrap": self.bootstrap, "models": self.models,
                "best_model": self.best_model}


def _resampled_x_star(opt: Optimum, rng: np.random.Generator, n: int) -> np.ndarray:
    """n bootstrap draws of x* at one rank: each cell's seeds resampled with replacement."""
    xs = [xv for xv, _ in opt.cells]
    means = np.stack([costs[rng.integers(0, len(costs), size=(n, len(costs)))].mean(axis=1)
                      for _, costs in opt.cells], axis=1)  # (n, grid)
    out = np.empty(n)
    for b in range(n):
        found = locate(xs, means[b])
        out[b] = math.nan if found is None else found.x_star
    return out


def _around_best(o: Optimum) -> list[tuple[float, np.ndarray]]:
    """The cells of the best grid point and its neighbours: those that decide x*."""
    i = next(k for k, (xv, _) in enumerate(o.cells) if xv == o.grid_best)
    return o.cells[max(i - 1, 0):i + 2]


def power_law(optima: Sequence[Optimum], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> PowerLaw:
    """Fit log x* = log c + p·log r to the interior optima; bootstrap intervals; model comparison.

    Intervals: percentile bootstrap. With 2 or more seeds in the cells around every optimum, each
    resample redraws the seeds of every (rank, x) cell independently, recomputes x* per rank and
    refits; otherwise it redraws the ranks instead (needs ≥ 3 ranks). Models p = 0, ½, 1 (only c
    fitted: log c is the mean of log x* − p·log r) and free p are compared by leave-one-rank-out
    RMSE of log x* (free p needs ≥ 3 ranks).
    """
    used = [o for o in optima if o.interior]
    if len(used) < 2:
        edges = [o for o in optima if o.edge]
        hint = ""
        if edges:
            hint = "; " + ", ".join(f"rank {o.group} is at the grid's {'low' if o.bound == 'upper' else 'high'} edge"
                                    for o in edges[:4]) + " — extend the grid there"
        raise UsageError(f"a power law needs interior optima at 2 or more ranks, found {len(used)}{hint}")
    for o in used:
        if not isinstance(o.group, (int, float)) or o.group <= 0:
            raise UsageError(f"the power law needs positive numeric groups (ranks), got {o.group!r}")
    lr = np.log([float(o.group) for o in used])
    lx = np.log([o.x_star for o in used])
    if len(set(lr.tolist())) < 2:
        raise UsageError("a power law needs 2 or more distinct ranks")
    logc, p = _least_squares(lr, lx)
    rmse = float(np.sqrt(np.mean(np.square(lx - logc - p * lr))))

    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2 * 100
    multi = all(len(costs) >= 2 for o in used for _, costs in _around_best(o))
    draws: list[tuple[float, float]] = []
    note = None
    if multi:
        method = "seeds"
        stars = np.stack([_resampled_x_star(o, rng, resamples) for o in used], axis=1)  # (B, ranks)
        for row in stars:
            if np.all(np.isfinite(row)):
                draws.append(_least_squares(lr, np.log(row)))
    else:
        method = "ranks"
        if len(used) < 3:
            note = "one seed per cell and only 2 ranks: no interval (resampling needs 3+ ranks or 2+ seeds)"
        else:
            for _ in range(resamples):
                pick = rng.integers(0, len(used), size=len(used))
                if len(set(lr[pick].tolist())) >= 2:
                    draws.append(_least_squares(lr[pick], lx[pick]))
    c_ci = p_ci = None
    if draws:
        logcs, ps = np.array(draws).T
        c_ci = tuple(float(v) for v in np.exp(np.percentile(logcs, [tail, 100 - tail])))
        p_ci = tuple(float(v) for v in np.percentile(ps, [tail, 100 - tail]))
    bootstrap = {"method": method, "resamples": resamples, "valid": len(draws), "seed": seed, "level": level,
                 "note": note}

    models = []
    for fixed in (*FIXED_EXPONENTS, None):
        if fixed is None:
            mc, mp = logc, p
        else:
            mc, mp = _least_squares(lr, lx, fixed)
        models.append({"name": "free" if fixed is None else f"p={fixed:g}", "note": MODEL_NOTES[fixed],
                       "p": mp, "c": math.exp(mc), "loo_rmse": _loo_rmse(lr, lx, fixed),
                       "rmse": float(np.sqrt(np.mean(np.square(lx - mc - mp * lr))))})
    scored = [m for m in models if m["loo_rmse"] is not None]
    best = min(scored, key=lambda m: m["loo_rmse"])["name"] if scored else None
    return PowerLaw(math.exp(logc), p, c_ci, p_ci, [float(o.group) for o in used], [o.x_star for o in used], rmse,
                    bootstrap, models, best)


# ---------------------------------------------------------------- all of it


@dataclass
class Study:
    """What `loralpha fit` reports: the optima per rank, the power law (or why there is none)."""

    x: str
    group: str
    metric: str
    higher_is_better: bool
    at: float | None
    counts: dict[str, int]
    optima: list[Optimum]
    law: PowerLaw | None
    reason: str | None  # why there is no power law
    source: str | None = None

    def references(self, o: Optimum) -> dict[str, float] | None:
        """The paper's α = 256·√r and the usual α = r, α = 2r at a rank (x = alpha by rank only)."""
        if self.x != "alpha" or self.group != "rank":
            return None
        r = float(o.group)
        return {"paper": scaling.PAPER_COEF * math.sqrt(r), "alpha_r": r, "alpha_2r": 2 * r}

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for o in self.optima:
            row = o.to_dict()
            refs = self.references(o)
            if refs is not None:
                row.update(refs)
                row["ratio_to_paper"] = o.x_star / refs["paper"] if o.x_star is not None else None
            rows.append(row)
        return {"source": self.source, "x": self.x, "group": self.group, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "at": self.at, "counts": self.counts, "optima": rows,
                "fit": self.law.to_dict() if self.law else None, "reason": self.reason}


AXIS_OF = {"alpha": "alpha", "coef": "alpha", "lr": "lr"}  # a config field that varies -> the axis it moves


def swept_axis(records: Sequence[dict[str, Any]], group: str = "rank") -> str:
    """The axis a study varies besides `group` and the seed: "alpha" (α or c) or "lr". Several varying fields,
    or none, are a UsageError that names them and the argument that picks one."""
    counted = [r["config"] for r in records if isinstance(r, dict) and r.get("status") in COUNTED
               and isinstance(r.get("config"), dict)
               and not scaling.trains_full_weights(r["config"].get("rule", "lora-alpha"))]  # no α: never fitted
    if not counted:
        return "alpha"  # nothing to infer from; fitting says what is missing
    keys = sorted({k for c in counted for k in c} - {group, "seed", "task"})  # several tasks: fitting refuses
    varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in counted}) > 1]
    axes = {AXIS_OF.get(k) for k in varying}
    if len(axes) == 1 and None not in axes:
        return axes.pop()
    if not varying:
        raise UsageError(f"the trials vary only in {group} and seed; a law needs a swept alpha, coef or lr")
    raise UsageError(f"the trials vary in {', '.join(varying)} besides {group} and seed; pick the axis to fit with "
                     "x='alpha' or x='lr' (and, where another field varies, keep one value of it with at=)")


def fit(records: Sequence[dict[str, Any]], x: str | None = None, group: str = "rank", metric: str = "final_loss",
        higher_is_better: bool | None = None, at: float | None = None, resamples: int = 1000, seed: int = 0,
        source: str | None = None) -> Study:
    """`optimum` per rank, then `power_law` through the interior ones (if there are 2 or more). `x` is the
    axis (alpha or lr); None: the one the records vary besides `group` and seed (`swept_axis`)."""
    positive_int(resamples, "resamples")
    if x is None:
        x = swept_axis(records, group)
    higher = is_higher_better(metric, higher_is_better)
    cells, others, counts = _collect(records, x, group, metric, higher, at)
    optima = [_optimum(gv, cells[gv], higher, others[gv]) for gv in sorted(cells, key=_sort_key)]
    law, reason = None, None
    try:
        law = power_law(optima, resamples=resamples, seed=seed)
    except UsageError as e:
        reason = str(e)
    return Study(x, group, metric, higher, at, counts, optima, law, reason, source)

"""Calibrate a LoRA run from short probes: the point (η_A, γ·η_B) of the Adam plane for a model + task + budget.

Under Adam with B = 0 at init, α and B's learning rate are one knob (`scaling.adam_plane`): choosing LoRA's α and
η is choosing a point (x, y) = (η_A, γ·η_B), and every rule (LoRA-α, plain LoRA, LoRA+) reaches every point. A probe
at (x, y) trains rule lora-alpha at η = x with c = y·√r / x for a few steps, on the target run's schedule compressed
to the probe's length. Its score is its mean train loss over the last third of its steps: every probe sees the same
batches in the same order, so scores are paired, and a batch the model has not trained on yet is held-out data (on
data seen at most once, as in every task's default here, the running train loss is a held-out loss; nothing of the
task's held-out split is looked at).

Short probes favour large steps, so one short horizon is not enough. The method corrects for it with two horizons:

1. map (T_s steps): a lattice of points half a decade apart, `xs` × `ys`, by default x within a decade of 10× the
   task's full-fine-tuning η (the usual rule that LoRA's η is about ten times full fine-tuning's: 2e-4 on a task
   fine-tuned fully at 2e-5) and y within 0.75 decades of the paper's point (256/√r × the full-fine-tuning η).
   A quadratic in (log x, log y) fitted to the best point and its lattice neighbours gives the short-horizon
   optimum p_s, kept within one lattice step of the best point (a parabola per axis when the fit is not convex;
   the best point itself when neither is), and how the two axes trade off (the fit's cross term).
2. check (T_l = 3·T_s steps): a plus of 5 points around p_s, half a decade out along each axis. Each arm gives its
   axis's slope and curvature, the map gives the cross term the plus cannot see, and p_l is the minimum of that
   quadratic, kept within the plus (an arm that does not curve upward gives its best point).
3. carry to the target (T steps): per axis, log p moves along the line through (log T_s, log p_s) and (log T_l,
   log p_l): log p(T) = log p_l + s·log(T / T_l), with the slope s clamped to [−1, 0] (a longer run never asks for a
   larger step, and at most for one that shrinks as 1/T) and the move to at most one decade. An axis whose optimum
   is a probed point rather than a fitted one moved by a multiple of half a decade that says little: it is not
   carried.

T_s is the largest step count with which the two stages fit the probe budget (`budget_steps`: optimizer steps over
every probe and seed, never exceeded), and T_l at most T (then nothing is carried). How sure it is: per axis, the
width (in decades) over which the check's parabola stays within `FLAT` of its minimum, how far the horizon moved
the optimum from T_s to T_l and how far it is carried to T, and whether the map's best point lies on the lattice's
edge (the optimum may lie beyond it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .. import devices, scaling
from ..checks import positive, positive_int
from ..config import train_command
from ..errors import UsageError
from ..loop import TrainConfig, train
from ..tasks.base import facts
from .calibrate_c import MIN_PROBE_STEPS, check_fields
from .laws import parabola_vertex
from .probe_log import Clock, progress_line

HALF_DECADE = math.sqrt(10.0)
LORA_TIMES_FULL = 10.0  # the map's centre in x: LoRA's η ≈ 10 × the full-fine-tuning η
X_OFFSETS = (-2, -1, 0, 1, 2)  # the map's x: that centre × √10^k
Y_OFFSETS = (-1.5, -0.5, 0.5, 1.5)  # the map's y: the paper's point × √10^k
CHECK_RATIO = 3  # T_l / T_s
CHECK_PROBES = 5  # the plus: its centre and one point each side along each axis
SCORE_SHARE = 3  # a probe's score: its mean train loss over the last 1/SCORE_SHARE of its steps
FLAT = 0.01  # the certainty width: where the check's parabola stays within 1% of its minimum
MAX_CARRY_DECADES = 1.0
SET_BY_CALIBRATE = ("task", "rule", "rank", "coef", "lr", "steps", "seed", "eval_every", "alpha", "loraplus_ratio")
CURVE_POINTS = 40  # train-loss points kept per probe
FITTED = ("parabola", "quadratic (the map's coupling)")  # how p_l was found when it is a fitted point


def default_lattice(task: str, rank: int) -> tuple[list[float], list[float]]:
    """The map's x (η_A) and y (γ·η_B) by default: x around 10 × the full-FT η, y around the paper's point."""
    full = facts(task).full_ft_lr
    y0 = scaling.gamma("lora-alpha", rank) * full
    return ([float(f"{LORA_TIMES_FULL * full * HALF_DECADE ** k:.3g}") for k in X_OFFSETS],
            [float(f"{y0 * HALF_DECADE ** k:.3g}") for k in Y_OFFSETS])


def horizons(n_map: int, n_seeds: int, budget_steps: int, steps: int) -> tuple[int, int]:
    """(T_s, T_l): the largest T_s with which the map (n_map probes) and the check fit the budget, T_l = 3·T_s ≤ T."""
    units = (n_map + CHECK_PROBES * CHECK_RATIO) * n_seeds
    short = min(budget_steps // units, max(MIN_PROBE_STEPS, steps // CHECK_RATIO))
    if short < MIN_PROBE_STEPS:
        raise UsageError(f"a probe budget of {budget_steps} steps is too small: the map and the check need "
                         f"{units} × {MIN_PROBE_STEPS} = {units * MIN_PROBE_STEPS} steps at least ({n_map} map points, "
                         f"{CHECK_PROBES} check points at {CHECK_RATIO}× the length, {n_seeds} seed(s)); raise "
                         "budget_steps= or give fewer lattice points or seeds")
    short = min(short, steps)
    return short, min(CHECK_RATIO * short, steps)


def coef_of(x: float, y: float, rank: int) -> float:
    """c of lora-alpha that puts a run at η = x on the point (x, y): γ = c/√r = y/x."""
    return y / x * math.sqrt(rank)


def settings(x: float, y: float, rank: int) -> dict[str, dict[str, float]]:
    """The point (x, y) as each rule writes it: LoRA-α (c, η), plain LoRA (lora_alpha, η), LoRA+ (α = 16, η, ratio)."""
    gamma = y / x
    return {"lora-alpha": {"coef": coef_of(x, y, rank), "alpha": gamma * rank, "lr": x},
            "lora": {"alpha": gamma * rank, "lr": x},
            "loraplus": {"alpha": scaling.DEFAULT_ALPHA, "lr": x,
                         "loraplus_ratio": gamma * rank / scaling.DEFAULT_ALPHA}}


@dataclass
class PlaneCalibration:
    """The chosen point, every probe, how sure, and what it cost."""

    task: str
    rank: int
    steps: int  # T: the target run's optimizer steps
    eta_A: float  # the chosen point
    gamma_eta_B: float
    settings: dict[str, dict[str, float]]  # the point as LoRA-α, plain LoRA and LoRA+ write it
    command: str  # the `loralpha train` command of the chosen point
    horizons: dict[str, int]  # short (T_s), long (T_l), target (T)
    xs: list[float]  # the map's lattice
    ys: list[float]
    probes: list[dict[str, Any]]  # stage, x, y, coef, steps, seed, status, score, curve
    short: dict[str, Any]  # p_s: x, y, how ("quadratic", "parabolas", "best point"), best lattice point, edge
    long: dict[str, Any]  # p_l: x, y, how per axis
    carried: dict[str, Any]  # per axis: slope (clamped), decades moved T_s→T_l and T_l→T
    certainty: dict[str, Any]  # per axis: flat width (decades), horizon moves; edge; a one-line summary
    seeds: list[int]
    budget_steps: int
    cost_steps: int  # optimizer steps actually taken (a diverged probe stops early)
    wall_time_s: float
    config: dict[str, Any]  # the target run's TrainConfig (the command's)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lattice(values: Sequence[float] | None, default: list[float], what: str) -> list[float]:
    grid = sorted({positive(v, what) for v in (default if values is None else values)})
    if len(grid) < 3:
        raise UsageError(f"give 3 or more distinct values of {what} to map, got {len(grid)}")
    return grid


def _score(losses: list[float]) -> float:
    tail = losses[-max(1, len(losses) // SCORE_SHARE):]
    return sum(tail) / len(tail)


def _thin(values: list[float], n: int) -> list[list[float]]:
    if len(values) <= n:
        return [[i + 1, v] for i, v in enumerate(values)]
    picks = sorted({round(i * (len(values) - 1) / (n - 1)) for i in range(n)})
    return [[i + 1, values[i]] for i in picks]


def quadratic_fit(points: list[tuple[float, float, float]]) -> tuple[float, ...] | None:
    """(a, b, c, d, e, f) of z = a + b·u + c·v + d·u² + e·v² + f·u·v fitted (least squares) to (u, v, z) points; None
    with fewer than 6 points or fewer than 3 distinct values along an axis (a curvature it cannot see)."""
    if len(points) < 6 or min(len({p[0] for p in points}), len({p[1] for p in points})) < 3:
        return None
    u, v, z = (np.array(col, dtype=float) for col in zip(*points))
    design = np.column_stack([np.ones_like(u), u, v, u * u, v * v, u * v])
    coefs, *_ = np.linalg.lstsq(design, z, rcond=None)
    return tuple(float(k) for k in coefs)


def vertex(b: float, c: float, d: float, e: float, f: float) -> tuple[float, float] | None:
    """The minimum of b·u + c·v + d·u² + e·v² + f·u·v; None unless convex (its Hessian positive definite)."""
    if not all(math.isfinite(k) for k in (b, c, d, e, f)) or not (d > 0 and 4 * d * e - f * f > 0):
        return None
    det = 4 * d * e - f * f
    return (f * c - 2 * e * b) / det, (f * b - 2 * d * c) / det


def _axis_parabola(us: list[float], zs: list[float]) -> float | None:
    """The vertex of the parabola through three (u, z) with u ascending, or None (not convex or a diverged point)."""
    if len(us) != 3 or not all(math.isfinite(z) for z in zs):
        return None
    return parabola_vertex(us, zs)


def short_optimum(xs: list[float], ys: list[float], scores: dict[tuple[int, int], float]) -> dict[str, Any]:
    """p_s from the map's scores (lattice index (i, j) -> score, +∞ diverged); see the module docstring."""
    finite = {k: s for k, s in scores.items() if math.isfinite(s)}
    if not finite:
        raise UsageError(f"every map probe diverged (η_A from {xs[0]:g} to {xs[-1]:g}, γ·η_B from {ys[0]:g} to "
                         f"{ys[-1]:g}); give smaller xs= and ys=")
    bi, bj = min(finite, key=lambda k: (finite[k], k))
    lu, lv = [math.log10(x) for x in xs], [math.log10(y) for y in ys]
    near = [(lu[i], lv[j], s) for (i, j), s in finite.items() if abs(i - bi) <= 1 and abs(j - bj) <= 1]
    lo_u, hi_u = lu[max(bi - 1, 0)], lu[min(bi + 1, len(xs) - 1)]
    lo_v, hi_v = lv[max(bj - 1, 0)], lv[min(bj + 1, len(ys) - 1)]
    fit, how = quadratic_fit(near), "quadratic"
    found = None if fit is None else vertex(*fit[1:])
    coupling = 0.0
    if found is not None:
        u, v = found
        _, _, _, d, e, f = fit
        coupling = f / (2 * math.sqrt(d * e))  # the map's correlation of the two axes, which the check cannot see
    else:
        how = "parabolas"
        u = v = None
        if 0 < bi < len(xs) - 1:
            u = _axis_parabola(lu[bi - 1:bi + 2], [scores.get((i, bj), math.inf) for i in (bi - 1, bi, bi + 1)])
        if 0 < bj < len(ys) - 1:
            v = _axis_parabola(lv[bj - 1:bj + 2], [scores.get((bi, j), math.inf) for j in (bj - 1, bj, bj + 1)])
        if u is None and v is None:
            how = "best point"
        u = lu[bi] if u is None else u
        v = lv[bj] if v is None else v
    u, v = min(max(u, lo_u), hi_u), min(max(v, lo_v), hi_v)
    edge = [axis for axis, k, n in (("x", bi, len(xs)), ("y", bj, len(ys))) if k in (0, n - 1)]
    return {"x": 10 ** u, "y": 10 ** v, "how": how, "best": [xs[bi], ys[bj]], "best_score": finite[(bi, bj)],
            "edge": edge, "coupling": coupling}


def long_optimum(centre: tuple[float, float], scores: dict[str, list[float]], coupling: float = 0.0) -> dict[str, Any]:
    """p_l from the check: per axis, the three scores at centre / √10, centre, centre × √10 (+∞ diverged).

    Each arm gives its axis's slope and curvature; the plus cannot see how the axes trade off, so the cross term is
    the map's (`coupling`: its correlation f/(2√(d·e))), and p_l is the joint minimum of that quadratic, kept within
    the plus. An arm that does not curve upward gives its best point instead (and the coupling is dropped)."""
    out: dict[str, Any] = {}
    arms = {}
    for axis, c in zip(("x", "y"), centre):
        us = [math.log10(c) - 0.5, math.log10(c), math.log10(c) + 0.5]
        zs = scores[axis]
        arms[axis] = _arm(us, zs)
        out[f"{axis}_flat_decades"] = _flat_width(us, zs)
    if arms["x"] is not None and arms["y"] is not None:
        (bx, dx), (by, dy) = arms["x"], arms["y"]
        f = 2 * coupling * math.sqrt(dx * dy)
        u, v = vertex(bx, by, dx, dy, f) or vertex(bx, by, dx, dy, 0.0)
        for axis, c, w in (("x", centre[0], u), ("y", centre[1], v)):
            out[axis] = c * 10 ** min(max(w, -0.5), 0.5)
            out[f"{axis}_how"] = FITTED[1] if coupling else FITTED[0]
        return out
    for axis, c in zip(("x", "y"), centre):
        zs = scores[axis]
        if arms[axis] is not None:
            b, d = arms[axis]
            out[axis], out[f"{axis}_how"] = c * 10 ** min(max(-b / (2 * d), -0.5), 0.5), "parabola"
        else:
            k = min(range(3), key=lambda i: (zs[i], abs(i - 1)))
            out[axis] = c * 10 ** (0.5 * (k - 1))
            out[f"{axis}_how"] = "best of three" if math.isfinite(zs[k]) else "centre (all diverged)"
    return out


def _arm(us: list[float], zs: list[float]) -> tuple[float, float] | None:
    """(slope, curvature) at the centre of the parabola through an arm's three points; None unless it curves up."""
    if not all(math.isfinite(z) for z in zs):
        return None
    h = us[1] - us[0]
    d = (zs[0] - 2 * zs[1] + zs[2]) / (2 * h * h)
    return ((zs[2] - zs[0]) / (2 * h), d) if d > 0 else None


def _flat_width(us: list[float], zs: list[float]) -> float | None:
    """Decades over which the parabola through an arm's three points stays within FLAT of its minimum (None: it does
    not curve up, or its minimum is not above 0)."""
    arm = _arm(us, zs)
    if arm is None:
        return None
    slope, curvature = arm
    bottom = zs[1] - slope * slope / (4 * curvature)
    return 2 * math.sqrt(FLAT * bottom / curvature) if bottom > 0 else None


def carry(short: float, long: float, t_short: int, t_long: int, target: int, measured: bool = True) -> dict[str, Any]:
    """Carry one axis from T_l to the target along the line through (log T_s, log p_s), (log T_l, log p_l).
    `measured` False (an optimum that is a probed point, not a fitted one: its move is only known to half a decade)
    carries nothing."""
    moved = math.log10(long / short)
    slope = moved / math.log10(t_long / t_short) if t_long > t_short and measured else 0.0
    slope = min(max(slope, -1.0), 0.0)
    shift = slope * math.log10(target / t_long) if target > t_long else 0.0
    shift = max(shift, -MAX_CARRY_DECADES)
    return {"value": long * 10 ** shift, "slope": slope, "moved_decades": moved, "carried_decades": shift,
            "measured": measured}


def calibrate(task: str = "teacher-student", steps: int = 200, rank: int = 8, budget_steps: int | None = None,
              xs: Sequence[float] | None = None, ys: Sequence[float] | None = None, seeds: Sequence[int] = (0,),
              on_probe: Callable[[dict[str, Any]], None] | None = None,
              known: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
              progress: bool = False, on_progress: Callable[[dict[str, Any]], None] | None = None,
              **config_fields: Any) -> PlaneCalibration:
    """Pick the point (η_A, γ·η_B) of a `steps`-step run of `task` at rank `rank` from short probes (see above).

    `budget_steps`: optimizer steps over all probes (default: 3 × steps, three target runs' worth). `xs`, `ys`: the
    map's lattice (default: `default_lattice`). `config_fields` are further `TrainConfig` fields of the target run
    and of every probe (batch_size, targets, task_options, schedule, warmup, …). `on_probe` is called with each
    finished probe; `known` may return a probe's result from an earlier, interrupted calibration (given the probe's
    key: stage, x, y, steps, seed), so that a calibration resumes without training it again. `on_progress` is called
    after every probe, trained or known, with where the calibration stands (`Clock.state`); `progress` prints that
    as a line per probe (`progress_line`). Raises `UsageError`
    for bad input, a budget too small for the probes, or a map on which every probe diverged.
    """
    start = time.perf_counter()
    check_fields(config_fields, SET_BY_CALIBRATE)
    steps = positive_int(steps, "steps of the target run")
    rank = scaling.check_rank(rank)
    base = TrainConfig(task=task, rule="lora-alpha", rank=rank, steps=steps, **config_fields).check()
    devices.autocast_dtype(devices.resolve(base.device), base.dtype)  # a device this machine lacks, before all
    dx, dy = default_lattice(task, rank)
    xs, ys = _lattice(xs, dx, "η_A (xs=)"), _lattice(ys, dy, "γ·η_B (ys=)")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) < len(seeds):
        raise UsageError(f"seeds must be distinct integers, at least one, got {seeds!r}")
    budget = positive_int(3 * steps if budget_steps is None else budget_steps, "probe budget (budget_steps=)")
    t_short, t_long = horizons(len(xs) * len(ys), len(seeds), budget, steps)
    probes: list[dict[str, Any]] = []
    clock = Clock(len(seeds) * (len(xs) * len(ys) + CHECK_PROBES),
                  len(seeds) * (len(xs) * len(ys) * t_short + CHECK_PROBES * t_long))

    def probe(stage: str, x: float, y: float, n: int) -> float:
        values = []
        for seed in seeds:
            key = {"stage": stage, "x": x, "y": y, "steps": n, "seed": seed}
            found = known(key) if known else None
            trained, began = found is None, time.perf_counter()
            if found is None:
                config = TrainConfig(**{**asdict(base), "coef": coef_of(x, y, rank), "lr": x, "steps": n,
                                        "seed": seed, "eval_every": n})
                result = train(config, evaluate=False)
                if result.status == "interrupted":
                    raise KeyboardInterrupt
                done = result.status == "done"
                found = {**key, "coef": config.coef, "status": result.status, "steps_taken": result.steps,
                         "score": _score(result.losses) if done else None, "curve": _thin(result.losses, CURVE_POINTS),
                         "wall_time_s": result.wall_time_s}
                if on_probe:
                    on_probe(found)
            probes.append(found)
            state = clock.tick(found, time.perf_counter() - began if trained else None)
            if on_progress:
                on_progress(state)
            if progress:
                print(progress_line(state), flush=True)
            values.append(math.inf if found["score"] is None else found["score"])
        return sum(values) / len(values)

    scores = {(i, j): probe("map", x, y, t_short) for i, x in enumerate(xs) for j, y in enumerate(ys)}
    short = short_optimum(xs, ys, scores)
    cx, cy = short["x"], short["y"]
    centre = probe("check", cx, cy, t_long)
    check = {"x": [probe("check", cx / HALF_DECADE, cy, t_long), centre, probe("check", cx * HALF_DECADE, cy, t_long)],
             "y": [probe("check", cx, cy / HALF_DECADE, t_long), centre, probe("check", cx, cy * HALF_DECADE, t_long)]}
    long = long_optimum((cx, cy), check, short["coupling"])
    fitted = {axis: short["how"] != "best point" and long[f"{axis}_how"] in FITTED for axis in ("x", "y")}
    moves = {axis: carry(short[axis], long[axis], t_short, t_long, steps, fitted[axis]) for axis in ("x", "y")}
    x = float(f"{moves['x']['value']:.3g}")  # a point one can type: η to 3 digits, c to 4
    y = float(f"{coef_of(x, moves['y']['value'], rank):.4g}") * x / math.sqrt(rank)
    certainty = {axis: {"flat_decades": long[f"{axis}_flat_decades"],
                        "moved_decades": moves[axis]["moved_decades"],
                        "carried_decades": moves[axis]["carried_decades"], "measured": fitted[axis]}
                 for axis in ("x", "y")}
    certainty["edge"] = short["edge"]
    certainty["summary"] = summary_line(certainty)
    target = {**asdict(base), "coef": coef_of(x, y, rank), "lr": x}
    return PlaneCalibration(
        task=task, rank=rank, steps=steps, eta_A=x, gamma_eta_B=y, settings=settings(x, y, rank),
        command=train_command(target), horizons={"short": t_short, "long": t_long, "target": steps}, xs=xs, ys=ys,
        probes=probes, short=short, long=long, carried={axis: {k: v for k, v in m.items() if k != "value"}
                                                        for axis, m in moves.items()},
        certainty=certainty, seeds=seeds, budget_steps=budget, cost_steps=sum(p["steps_taken"] for p in probes),
        wall_time_s=time.perf_counter() - start, config=target)


def summary_line(certainty: dict[str, Any]) -> str:
    """How sure, in one line: per axis the flat width and the horizon's moves; the map's edge if any."""
    parts = []
    for axis, name in (("x", "η_A"), ("y", "γ·η_B")):
        c = certainty[axis]
        width = "not convex at the check" if c["flat_decades"] is None else f"flat over {c['flat_decades']:.2f} decades"
        carried = (f"carried {c['carried_decades']:+.2f} more" if c["measured"] else
                   "not carried (a probed point, not a fitted one)")
        parts.append(f"{name}: {width}; horizon moved it {c['moved_decades']:+.2f} decades, {carried}")
    if certainty["edge"]:
        parts.append(f"the map's best point is on its edge along {' and '.join(certainty['edge'])}: the optimum may "
                     "lie beyond it")
    return "; ".join(parts)


def plot(cal: dict[str, Any], path: Any, marks: Sequence[dict[str, Any]] = (), title: str | None = None) -> None:
    """The calibration on the Adam plane (left: the map's probes coloured by score, the check's plus, p_s → p_l →
    the chosen point; `marks`: other points to show, each {"label", "x", "y"}) and its probe curves (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, curves) = plt.subplots(1, 2, figsize=(11, 5.6), dpi=110)
    found = [p for p in cal["probes"] if p["stage"] == "map" and p["score"] is not None]
    lost = [p for p in cal["probes"] if p["stage"] == "map" and p["score"] is None]
    if found:
        dots = ax.scatter([p["x"] for p in found], [p["y"] for p in found], c=[p["score"] for p in found], s=70,
                          cmap="viridis_r", edgecolors="none", zorder=2)
        fig.colorbar(dots, ax=ax, label=f"map score: train loss ({cal['horizons']['short']} steps)")
    if lost:
        ax.scatter([p["x"] for p in lost], [p["y"] for p in lost], marker="x", color="0.4", label="diverged")
    check = [p for p in cal["probes"] if p["stage"] == "check"]
    ax.scatter([p["x"] for p in check], [p["y"] for p in check], marker="+", s=90, color="k", zorder=3,
               label=f"check ({cal['horizons']['long']} steps)")
    path_pts = [(cal["short"]["x"], cal["short"]["y"]), (cal["long"]["x"], cal["long"]["y"]),
                (cal["eta_A"], cal["gamma_eta_B"])]
    ax.plot(*zip(*path_pts), "-", color="C3", zorder=3)
    labels = [f"p_s ({cal['horizons']['short']} steps)", f"p_l ({cal['horizons']['long']})",
              f"chosen ({cal['horizons']['target']})"]
    if math.isclose(path_pts[1][0], path_pts[2][0], rel_tol=0.01) and math.isclose(path_pts[1][1], path_pts[2][1],
                                                                                  rel_tol=0.01):
        path_pts, labels = path_pts[:2], [labels[0], f"p_l = chosen ({cal['horizons']['long']} → "
                                                     f"{cal['horizons']['target']})"]
    for (x, y), label in zip(path_pts, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7, color="C3")
    ax.plot([cal["eta_A"]], [cal["gamma_eta_B"]], "*", ms=15, color="C3", zorder=4, label="chosen point")
    for i, m in enumerate(marks):
        ax.plot([m["x"]], [m["y"]], "D", ms=6, color=f"C{(i + 4) % 10}", mfc="none",
                label=m["label"], zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("η_A: learning rate of A")
    ax.set_ylabel("γ·η_B: learning rate of B × γ = α/r")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    ax.set_title(title or f"{cal['task']}: calibration on the Adam plane", fontsize=9)
    for p in cal["probes"]:
        if not p["curve"]:
            continue
        steps, losses = zip(*p["curve"])
        mapped = p["stage"] == "map"
        curves.plot(steps, losses, color="0.7" if mapped else "C0", lw=0.7 if mapped else 1.2, alpha=0.8)
    curves.plot([], [], color="0.7", label="map probes")
    curves.plot([], [], color="C0", label="check probes")
    curves.set_xlabel("step")
    curves.set_ylabel("train loss")
    curves.set_title("probe curves", fontsize=10)
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

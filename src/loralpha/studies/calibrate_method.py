"""The plane calibrator's method, for any probe trainer: where the probes go, how they are scored, what is chosen and
how sure it is (`search`). Nothing here trains or needs torch: `search` calls `probe(x, y, steps, seed)`, which trains
rule lora-alpha at η = x with c = y·√r / x for `steps` steps on the target run's schedule compressed to that length
(`loralpha.studies.calibrate` gives one for a named task and one for any `nn.Module`).

A probe's score is its mean train loss over the last third of its steps (at least 2): every probe of a seed sees the
same batches in the same order, so scores are paired, and a batch the model has not trained on yet is held-out data
(nothing of a task's held-out split is read). Short probes favour large steps, so the method looks at two horizons and
carries the optimum to the target's T. Its plan fits a probe budget of optimizer steps (`budget_steps`, by default one
target run: T steps), planned before the first probe and never exceeded, and costs at most:

1. map (T_s steps): a lattice, by default 3 × 3 (η_A a decade apart around 10 × the full-fine-tuning η, γ·η_B
   0.75 decades apart around the paper's point, 256/√r × that η). A quadratic in (log x, log y) through the best
   point and its neighbours gives the short-horizon optimum p_s within one lattice step of the best and the axes'
   coupling (its cross term); where it is not convex, or a neighbour diverged (a cliff, which no quadratic models),
   a parabola per axis through the best point's row and column gives it instead (the best point itself where
   neither curves up). Widening: when the best point lies on the lattice's edge, the lattice grows by one
   step beyond it, its neighbourhood is probed (at most `WIDEN_PROBES` points, reserved in the plan), and the best
   is looked at again.
2. check (T_l steps, at least 3·T_s: every step the map left to the budget): a plus of 5 points around p_s, half a
   decade out along each axis. Each arm gives its axis's slope and curvature, the map the cross term, and p_l is the
   minimum of that quadratic within the plus (an arm that does not bracket, or does not curve upward, gives
   its best point). Walking: an
   arm still downhill at its end (its end scores best) is walked on, half a decade at a time, while the walk's
   reserve (`WALK_PROBES` probes at T_l, kept in the plan) lasts, as a user extends an η sweep until the best is
   bracketed; that axis's p_l is then the parabola's vertex through its best point and the two beside it (or the
   best point, while still downhill).
3. carry to T: per axis, log p moves along the line through (log T_s, log p_s) and (log T_l, log p_l), the slope
   clamped to [−1, 0] and the move to one decade; an axis whose optimum is a probed point, or was never bracketed, is
   not carried.

T_s is the largest step count (at least `PROBE_FLOOR`) with which the map, the widening reserve and a check at 3·T_s
with its walking reserve fit the budget; a budget too small for it drops the widening reserve, then the walking
reserve, then the check (the map's optimum is then the answer, said to be uncarried); a budget too small for the map
alone is refused. How sure: per axis, whether a worse point lies on both sides of the optimum (bracketed: by the
check's arm, or by the map when there is no check), the width over which the check's parabola stays within `FLAT`
of its minimum, and how far the horizon moved it. With neither axis bracketed the answer is `unknown`: the best
probed point is then no calibrated point, and said so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..checks import positive, positive_int
from ..errors import UsageError
from .calibrate_words import summary_line
from .laws import parabola_vertex
from .probe_log import Clock, progress_line

HALF_DECADE = math.sqrt(10.0)
LORA_TIMES_FULL = 10.0  # the map's centre in x: LoRA's η ≈ 10 × the full-fine-tuning η
X_OFFSETS = (-2, 0, 2)  # the default map's x: that centre × √10^k (a decade apart)
Y_OFFSETS = (-1.5, 0, 1.5)  # the default map's y: the paper's point × √10^k (0.75 decades apart)
PROBE_FLOOR = 4  # the shortest probe: its score reads at least its last 2 steps, after B has moved off zero
WIDEN_PROBES = 5  # the reserve for widening: the new points of a corner's neighbourhood
WALK_PROBES = 2  # the check's reserve for walking an arm still downhill at its end (probes at T_l)
CHECK_RATIO = 3  # T_l ≥ CHECK_RATIO · T_s
CHECK_PROBES = 5  # the plus: its centre and one point each side along each axis
SCORE_SHARE = 3  # a probe's score: its mean train loss over the last 1/SCORE_SHARE of its steps (at least 2)
FLAT = 0.01  # the certainty width: where the check's parabola stays within 1% of its minimum
MAX_CARRY_DECADES = 1.0
CURVE_POINTS = 40  # train-loss points kept per probe
FITTED = ("parabola", "quadratic (the map's coupling)")  # how p_l was found when it is a fitted point

Probe = Callable[[float, float, int, int], dict[str, Any]]  # (x, y, steps, seed) -> status, steps_taken, losses, …


def default_lattice(full_ft_lr: float, rank: int) -> tuple[list[float], list[float]]:
    """The map's x (η_A) and y (γ·η_B) by default, from the full-fine-tuning η: x around 10 × it, y around the
    paper's point (256/√r × it)."""
    y0 = 256.0 / math.sqrt(rank) * full_ft_lr
    return ([float(f"{LORA_TIMES_FULL * full_ft_lr * HALF_DECADE ** k:.3g}") for k in X_OFFSETS],
            [float(f"{y0 * HALF_DECADE ** k:.3g}") for k in Y_OFFSETS])


def lattice(values: Sequence[float] | None, default: list[float], what: str) -> list[float]:
    grid = sorted({positive(v, what) for v in (default if values is None else values)})
    if len(grid) < 3:
        raise UsageError(f"give 3 or more distinct values of {what} to map, got {len(grid)}")
    return grid


def check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) < len(seeds):
        raise UsageError(f"seeds must be distinct integers, at least one, got {seeds!r}")
    return seeds


def least_budget(n_map: int, n_seeds: int) -> int:
    """The smallest probe budget that runs: the map alone at `PROBE_FLOOR` steps a probe."""
    return n_map * n_seeds * PROBE_FLOOR


def horizons(n_map: int, n_seeds: int, budget_steps: int, steps: int) -> tuple[int, int | None, int, int]:
    """(T_s, T_l, widening reserve, walking reserve): the plan of a budget (see the module docstring). T_l is the
    check's least length (it gets every step the map leaves), None when the budget has no room for a check."""
    for reserve, walk in ((WIDEN_PROBES, WALK_PROBES), (0, WALK_PROBES), (0, 0)):
        units = (n_map + reserve + (CHECK_PROBES + walk) * CHECK_RATIO) * n_seeds
        short = min(budget_steps // units, max(PROBE_FLOOR, steps // CHECK_RATIO))
        if short >= PROBE_FLOOR:
            return short, min(CHECK_RATIO * short, steps), reserve, walk
    short = min(budget_steps // (n_map * n_seeds), steps)
    if short < PROBE_FLOOR:
        raise UsageError(f"a probe budget of {budget_steps} steps is too small: the map alone needs {n_map} points × "
                         f"{PROBE_FLOOR} steps × {n_seeds} seed(s) = {least_budget(n_map, n_seeds)} steps; raise "
                         "budget_steps= or give fewer lattice points or seeds")
    return short, None, 0, 0


def score(losses: list[float]) -> float:
    tail = losses[-max(2, len(losses) // SCORE_SHARE):]
    return sum(tail) / len(tail)


def thin(values: list[float], n: int) -> list[list[float]]:
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
    """The vertex of the parabola through three (u, z) with u ascending, or None (not convex, diverged or missing)."""
    if len(us) != 3 or not all(math.isfinite(z) for z in zs):
        return None
    return parabola_vertex(us, zs)


def short_optimum(xs: list[float], ys: list[float], scores: dict[tuple[int, int], float]) -> dict[str, Any]:
    """p_s from the map's scores (lattice index (i, j) -> score, +∞ diverged; a point not probed is absent)."""
    finite = {k: s for k, s in scores.items() if math.isfinite(s)}
    if not finite:
        raise UsageError(f"every map probe diverged (η_A from {xs[0]:g} to {xs[-1]:g}, γ·η_B from {ys[0]:g} to "
                         f"{ys[-1]:g}); give smaller xs= and ys=")
    bi, bj = min(finite, key=lambda k: (finite[k], k))
    lu, lv = [math.log10(x) for x in xs], [math.log10(y) for y in ys]
    near = [(lu[i], lv[j], s) for (i, j), s in finite.items() if abs(i - bi) <= 1 and abs(j - bj) <= 1]
    lo_u, hi_u = lu[max(bi - 1, 0)], lu[min(bi + 1, len(xs) - 1)]
    lo_v, hi_v = lv[max(bj - 1, 0)], lv[min(bj + 1, len(ys) - 1)]
    # a neighbour that diverged is a cliff beside the best point, which no quadratic models: per-axis parabolas then
    cliff = any(not math.isfinite(s) for (i, j), s in scores.items() if abs(i - bi) <= 1 and abs(j - bj) <= 1)
    fit, how = (None if cliff else quadratic_fit(near)), "quadratic"
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
            "best_index": [bi, bj], "edge": edge, "coupling": coupling}


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


def long_optimum(centre: tuple[float, float], scores: dict[str, dict[int, float]],
                 coupling: float = 0.0) -> dict[str, Any]:
    """p_l from the check: per axis, its arm's scores at centre × √10^k (k = −1, 0, 1, and any k it walked on; +∞
    diverged).

    An arm is bracketing when its best point has a worse one on both sides. Each arm's three points around its best
    (its first or last three while still downhill at an end) give its axis's slope and curvature. With the plus
    alone (no walk), both arms bracketing, the plus cannot see how the axes trade off, so the cross term is the
    map's (`coupling`: its correlation f/(2√(d·e))), and p_l is the joint minimum of that quadratic, kept within the
    plus. Otherwise, per
    axis: a bracketing arm that curves upward gives its parabola's vertex, within half a decade of its best point;
    any other arm gives its best point (and the coupling is dropped)."""
    out: dict[str, Any] = {}
    arms, bests = {}, {}
    for axis, c in zip(("x", "y"), centre):
        arm = scores[axis]
        ks = sorted(arm)
        finite = [k for k in ks if math.isfinite(arm[k])]
        best = min(finite, key=lambda k: (arm[k], abs(k))) if finite else 0
        i = min(max(ks.index(best), 1), len(ks) - 2)  # the middle of the three points around the best
        us = [math.log10(c) + 0.5 * k for k in ks[i - 1:i + 2]]
        zs = [arm[k] for k in ks[i - 1:i + 2]]
        arms[axis], bests[axis] = _arm(us, zs), best
        out[f"{axis}_flat_decades"] = _flat_width(us, zs)
        out[f"{axis}_bracketed"] = bool(finite) and ks[0] < best < ks[-1] and arm[best] < min(
            arm[ks[ks.index(best) - 1]], arm[ks[ks.index(best) + 1]])
    plus = all(sorted(scores[axis]) == [-1, 0, 1] and out[f"{axis}_bracketed"] for axis in ("x", "y"))
    if plus and arms["x"] is not None and arms["y"] is not None:
        (bx, dx), (by, dy) = arms["x"], arms["y"]
        f = 2 * coupling * math.sqrt(dx * dy)
        u, v = vertex(bx, by, dx, dy, f) or vertex(bx, by, dx, dy, 0.0)
        for axis, c, w in (("x", centre[0], u), ("y", centre[1], v)):
            out[axis] = c * 10 ** min(max(w, -0.5), 0.5)
            out[f"{axis}_how"] = FITTED[1] if coupling else FITTED[0]
        return out
    for axis, c in zip(("x", "y"), centre):
        at = c * 10 ** (0.5 * bests[axis])
        if arms[axis] is not None and out[f"{axis}_bracketed"]:
            b, d = arms[axis]
            out[axis], out[f"{axis}_how"] = at * 10 ** min(max(-b / (2 * d), -0.5), 0.5), "parabola"
        else:
            out[axis] = at
            out[f"{axis}_how"] = "best probed" if math.isfinite(scores[axis][bests[axis]]) else "centre (all diverged)"
    return out


def carry(short: float, long: float, t_short: int, t_long: int, target: int, measured: bool = True) -> dict[str, Any]:
    """Carry one axis from T_l to the target along the line through (log T_s, log p_s), (log T_l, log p_l).
    `measured` False (an optimum that is a probed point, or one never bracketed) carries nothing."""
    moved = math.log10(long / short)
    slope = moved / math.log10(t_long / t_short) if t_long > t_short and measured else 0.0
    slope = min(max(slope, -1.0), 0.0)
    shift = slope * math.log10(target / t_long) if target > t_long else 0.0
    shift = max(shift, -MAX_CARRY_DECADES)
    return {"value": long * 10 ** shift, "slope": slope, "moved_decades": moved, "carried_decades": shift,
            "measured": measured}


def _step_beyond(grid: list[float], low: bool) -> float:
    """The next lattice value past an end of `grid`, at the spacing of its two end values."""
    return float(f"{grid[0] ** 2 / grid[1] if low else grid[-1] ** 2 / grid[-2]:.3g}")


def _widened(xs: list[float], ys: list[float], best: list[int], edge: list[str]) -> tuple[list[float], list[float],
                                                                                          list[tuple[float, float]]]:
    """The lattice grown one step beyond the best point along each edge axis, and the points of the best's
    neighbourhood that the new lattice adds (at most 5: a corner)."""
    bx, by = xs[best[0]], ys[best[1]]
    nx = xs + ([_step_beyond(xs, best[0] == 0)] if "x" in edge else [])
    ny = ys + ([_step_beyond(ys, best[1] == 0)] if "y" in edge else [])
    nx, ny = sorted(set(nx)), sorted(set(ny))
    i, j = nx.index(bx), ny.index(by)
    new = [(nx[a], ny[b]) for a in range(max(i - 1, 0), min(i + 2, len(nx)))
           for b in range(max(j - 1, 0), min(j + 2, len(ny))) if nx[a] not in xs or ny[b] not in ys]
    return nx, ny, new


def search(probe: Probe, *, steps: int, budget_steps: int, xs: list[float], ys: list[float], seeds: list[int],
           on_probe: Callable[[dict[str, Any]], None] | None = None,
           known: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
           progress: bool = False, on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the method with `probe` (see the module docstring); the inputs are checked. Returns the chosen point (x,
    y), the horizons, every probe, p_s, p_l, the carry, the certainty and the cost."""
    steps = positive_int(steps, "steps of the target run")
    t_short, t_least, reserve, walk = horizons(len(xs) * len(ys), len(seeds), budget_steps, steps)
    n_seeds = len(seeds)
    probes: list[dict[str, Any]] = []
    n_map = len(xs) * len(ys)
    per_check = (CHECK_PROBES + walk) * n_seeds  # the check's probes and its walking reserve, at T_l
    t_planned = min(steps, (budget_steps - n_seeds * n_map * t_short) // per_check) if t_least else 0
    clock = Clock(n_seeds * (n_map + (CHECK_PROBES if t_least else 0)),
                  n_seeds * (n_map * t_short + CHECK_PROBES * t_planned))  # the plan without widening

    def run(stage: str, x: float, y: float, n: int) -> float:
        values = []
        for seed in seeds:
            key = {"stage": stage, "x": x, "y": y, "steps": n, "seed": seed}
            found = known(key) if known else None
            trained, began = found is None, time.perf_counter()
            if found is None:
                result = probe(x, y, n, seed)
                if result["status"] == "interrupted":
                    raise KeyboardInterrupt
                done = result["status"] == "done"
                found = {**key, "coef": result["coef"], "status": result["status"],
                         "steps_taken": result["steps_taken"], "score": score(result["losses"]) if done else None,
                         "curve": thin(result["losses"], CURVE_POINTS), "wall_time_s": result["wall_time_s"]}
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

    by_point = {(x, y): run("map", x, y, t_short) for x in xs for y in ys}
    short = short_optimum(xs, ys, _indexed(xs, ys, by_point))
    widened = 0
    if short["edge"] and reserve:
        xs, ys, new = _widened(list(xs), list(ys), short["best_index"], short["edge"])
        clock.probes += n_seeds * len(new)
        clock.steps += n_seeds * len(new) * t_short
        for x, y in new:
            by_point[(x, y)] = run("map", x, y, t_short)
        widened = len(new)
        short = short_optimum(xs, ys, _indexed(xs, ys, by_point))
    spent = n_seeds * len(by_point) * t_short
    t_long = min(steps, (budget_steps - spent) // per_check) if t_least else None
    long: dict[str, Any] = {}
    walked = 0
    if t_long:
        clock.steps += n_seeds * CHECK_PROBES * (t_long - t_planned)  # what widening took from the check
        cx, cy = short["x"], short["y"]

        def at(axis: str, k: int) -> float:  # a check probe, √10^k from the centre along one axis
            if k not in (-1, 0, 1):  # a walk's probe, beyond the plan without one
                clock.probes += n_seeds
                clock.steps += n_seeds * t_long
            point = (cx * HALF_DECADE ** k, cy) if axis == "x" else (cx, cy * HALF_DECADE ** k)
            return run("check", *point, t_long)

        check, walked = plus_and_walk(at, walk)
        long = long_optimum((cx, cy), check, short["coupling"])
        bracketed = {axis: long[f"{axis}_bracketed"] for axis in ("x", "y")}
        fitted = {axis: short["how"] != "best point" and long[f"{axis}_how"] in FITTED for axis in ("x", "y")}
    else:
        long = {"x": short["x"], "y": short["y"], "x_how": "no check", "y_how": "no check", "x_flat_decades": None,
                "y_flat_decades": None}
        bracketed = {axis: axis not in short["edge"] for axis in ("x", "y")}
        fitted = {"x": False, "y": False}
    moves = {axis: carry(short[axis], long[axis], t_short, t_long or t_short, steps,
                         fitted[axis] and bracketed[axis]) for axis in ("x", "y")}
    certainty: dict[str, Any] = {
        axis: {"flat_decades": long[f"{axis}_flat_decades"], "moved_decades": moves[axis]["moved_decades"],
               "carried_decades": moves[axis]["carried_decades"], "measured": moves[axis]["measured"],
               "bracketed": bracketed[axis]} for axis in ("x", "y")}
    certainty.update(edge=short["edge"], widened=widened, walked=walked, checked=bool(t_long),
                     unknown=not (bracketed["x"] or bracketed["y"]))
    certainty["summary"] = summary_line(certainty)
    short["lattice"] = {"xs": xs, "ys": ys}  # as widened
    return {"x": moves["x"]["value"], "y": moves["y"]["value"], "unknown": certainty["unknown"],
            "horizons": {"short": t_short, "long": t_long, "target": steps}, "probes": probes, "short": short,
            "long": long,
            "carried": {axis: {k: v for k, v in m.items() if k != "value"} for axis, m in moves.items()},
            "certainty": certainty, "cost_steps": sum(p["steps_taken"] for p in probes)}


def plus_and_walk(at: Callable[[str, int], float], walk: int) -> tuple[dict[str, dict[int, float]], int]:
    """The check: the plus (its centre once, then each axis's arm at k = −1 and +1, `at(axis, k)` scoring the probe
    √10^k from the centre), then, one step per axis in turn, an arm still downhill at its end walked on while the
    walk's reserve of `walk` probes lasts. Returns each arm's scores by k, and how many probes the walk took."""
    centre = at("x", 0)
    check = {axis: {-1: at(axis, -1), 0: centre, 1: at(axis, 1)} for axis in ("x", "y")}
    walked = 0
    while walked < walk:
        ahead = [(axis, k) for axis in ("x", "y") if (k := downhill_end(check[axis])) is not None]
        if not ahead:
            break
        for axis, k in ahead[:walk - walked]:
            check[axis][k] = at(axis, k)
            walked += 1
    return check, walked


def downhill_end(arm: dict[int, float]) -> int | None:
    """The next k to walk an arm on (its scores at centre × √10^k): one step beyond its best point when that point
    is its end and scored (a finite score); None when its best is inside the arm, or nothing on it scored."""
    ks = sorted(arm)
    finite = [k for k in ks if math.isfinite(arm[k])]
    if not finite:
        return None
    best = min(finite, key=lambda k: (arm[k], abs(k)))
    return best + 1 if best == ks[-1] else best - 1 if best == ks[0] else None


def _indexed(xs: list[float], ys: list[float], by_point: dict[tuple[float, float], float]) -> dict[tuple[int, int],
                                                                                                   float]:
    return {(xs.index(x), ys.index(y)): s for (x, y), s in by_point.items()}

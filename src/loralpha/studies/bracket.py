"""A bracketed sweep (a spec with `bracket:`, see `loralpha.sweep.bracket`): planned round by round from its store,
run on the sweep engines, and summarized with the protocol's statistics.

    from loralpha.sweep import load
    from loralpha.studies import bracket
    bracket.run(load("examples/teacher-student-bracket.yaml"), "studies/ts-bracket/study.db", workers=2)

Per group (a combination of the grid's fields) the axis runs on a lattice start × 10^(k·step): first the points
k = −1, 0, 1, at the choosing seeds; while every point of the group has finished and its best (lowest cost; the
lower point on a tie) sits at an end, one point more beyond it (everything failed: one lower), up to max_points.
A failed, diverged or metric-less point costs +inf: it is worse than any other. A group is bracketed when its best
point has a point on both sides; its seeds_at_best then run at the best point. Each round plans from the finished
trials in the store alone, so the plan only grows, a killed sweep resumes where it stopped, and rerunning a finished
sweep trains nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import scaling, tasks
from ..errors import UsageError
from ..sweep.bracket import label
from ..sweep.engine import ray_session, run_sweep
from ..sweep.spec import Spec, Trial, make_trial
from ..sweep.store import FINISHED, Store
from .protocol import eval_curve, forgiveness, interval, plateau, verdict
from .records import is_higher_better, metric_value


@dataclass
class Point:
    k: int
    x: float  # the axis value
    ids: dict[int, str]  # choosing seed -> trial id
    cost: float | None  # mean over the choosing seeds, lower is better; +inf: one failed; None: not all finished


@dataclass
class Group:
    label: str
    values: dict[str, Any]  # the group's grid fields
    start: float
    points: list[Point] = field(default_factory=list)  # in axis order
    best: Point | None = None  # the finished point of lowest finite cost so far
    bracketed: bool = False
    settled: bool = False  # every point finished, and bracketed or at max_points: the grid grows no more
    at_best: dict[int, str] = field(default_factory=dict)  # every seed run at the best point -> trial id

    @property
    def state(self) -> str:
        if self.bracketed:
            return "bracketed"
        return f"unbracketed (max {len(self.points)} points)" if self.settled else "growing"


def lattice(start: float, k: int, step: float) -> float:
    """The k-th point of a group's axis: start × 10^(k·step), to 3 significant digits."""
    return float(f"{start * 10 ** (k * step):.3g}")


def direction(spec: Spec, metric: str) -> bool:
    """Whether a higher `metric` is better: the spec's choose.higher_is_better for the choosing metric, else
    known from the metric's name (a UsageError naming the key to set when unknown)."""
    b = spec.bracket
    try:
        return is_higher_better(metric, b.higher_is_better if metric == b.choose else None)
    except UsageError:
        raise UsageError(f"cannot tell whether a higher {metric} is better; set bracket.choose: "
                         f"{{metric: {metric}, higher_is_better: true or false}}") from None


def groups_of(spec: Spec) -> list[tuple[str, dict[str, Any], float]]:
    """(label, grid fields, start) of each group, in the grid's order."""
    b = spec.bracket
    out = []
    for point in itertools.product(*spec.grid.values()):
        values = dict(zip(spec.grid, point))
        name = label(values)
        start = b.start.get(name) if isinstance(b.start, dict) else None if b.start == "default" else b.start
        if start is None:  # the rule's own default η on this task
            rule = spec.config_cls(task=spec.task, **{**spec.fixed, **values}).rule
            start = scaling.default_lr(rule, tasks.facts(spec.task).full_ft_lr)
        out.append((name, values, float(start)))
    return out


def next_point(costs: dict[int, float | None], max_points: int) -> int | None:
    """The lattice index a bracketing grid grows to next, given its points' costs (None: not finished; +inf:
    failed or diverged, i.e. worse): one beyond the best point while the best sits at an end of the grid (below
    the lowest point when every point failed); None while a point is unfinished, once the best has a worse point
    on both sides, or at `max_points`. Ties go to the lower point."""
    if any(c is None for c in costs.values()):
        return None
    if all(math.isinf(c) for c in costs.values()):
        k = min(costs) - 1  # everything failed: look lower
    else:
        best = min(costs, key=lambda k: (costs[k], k))
        if min(costs) < best < max(costs):
            return None
        k = best - 1 if best == min(costs) else best + 1
    return None if len(costs) >= max_points else k


def plan(spec: Spec, records: dict[str, dict[str, Any]]) -> tuple[list[Trial], list[Group]]:
    """The trials a bracketed spec wants given the records so far (trial id -> store record), and each group's
    state. The trials of the choosing seeds come first, then those at the best points."""
    b = spec.bracket
    if b is None:
        raise UsageError("the spec brackets no axis (no bracket: section)")
    higher = direction(spec, b.choose)
    where = f"spec {spec.source}" if spec.source else "spec"

    def trial(values: dict[str, Any], x: float, seed: int) -> Trial:
        t = make_trial(spec, {**values, b.axis: x, "seed": seed}, f"{where}: group {label(values)}, {b.axis}={x:g}")
        return Trial(t.id, t.config, b.choose)

    def point(values: dict[str, Any], start: float, k: int) -> tuple[Point, list[Trial]]:
        x = lattice(start, k, b.step_decades)
        made = [trial(values, x, seed) for seed in b.choose_seeds]
        costs = []
        for t in made:
            rec = records.get(t.id)
            if rec is None or rec["status"] not in FINISHED:
                return Point(k, x, {s: t.id for s, t in zip(b.choose_seeds, made)}, None), made
            v = metric_value(rec, b.choose) if rec["status"] == "done" else None
            costs.append(math.inf if v is None or not math.isfinite(v) else -v if higher else v)
        return Point(k, x, {s: t.id for s, t in zip(b.choose_seeds, made)}, sum(costs) / len(costs)), made

    first, rest, groups = [], [], []
    for name, values, start in groups_of(spec):
        lo = -((b.first_points - 1) // 2)
        grid = {k: point(values, start, k) for k in range(lo, lo + b.first_points)}
        while (k := next_point({k: p.cost for k, (p, _) in grid.items()}, b.max_points)) is not None:
            grid[k] = point(values, start, k)
        group = Group(name, values, start, [grid[k][0] for k in sorted(grid)])
        for k in sorted(grid):
            first += grid[k][1]
        known = [p for p in group.points if p.cost is not None and math.isfinite(p.cost)]
        group.best = min(known, key=lambda p: (p.cost, p.k)) if known else None
        done = all(p.cost is not None for p in group.points)
        ks = [p.k for p in group.points]
        group.bracketed = done and group.best is not None and min(ks) < group.best.k < max(ks)
        group.settled = group.bracketed or (done and len(ks) >= b.max_points)
        if group.best is not None:
            group.at_best = dict(group.best.ids)
        if group.bracketed:
            for seed in b.seeds_at_best:
                t = trial(values, group.best.x, seed)
                rest.append(t)
                group.at_best[seed] = t.id
        groups.append(group)
    seen, unique = set(), []
    for t in first + rest:
        if t.id not in seen:
            seen.add(t.id)
            unique.append(t)
    return unique, groups


def run(spec: Spec, store_path: str | Path, say=None, **engine: Any) -> dict[str, Any]:
    """Run a bracketed spec into the store at `store_path`, round by round (plan from the store, run the
    unfinished trials of the plan with `run_sweep(…, **engine)`, plan again) until the plan holds no
    unfinished trial, or only trials another sweep on the store is running. {counts (status -> trials of the
    plan), ids, groups, rounds}. `say(line)` hears of each round."""
    if spec.bracket is None:
        raise UsageError("the spec brackets no axis (no bracket: section); run it with run_sweep")
    direction(spec, spec.bracket.choose)  # an unknown direction is refused before anything runs
    for r in spec.bracket.report:
        direction(spec, r)
    store_path = Path(store_path).resolve()
    with contextlib.ExitStack() as stack:
        if engine.get("engine") == "ray":  # one Ray for every round, not one per round
            stack.enter_context(ray_session(engine.get("workers"), engine.get("address")))
        return _rounds(spec, store_path, say, engine)


def _rounds(spec: Spec, store_path: Path, say, engine: dict[str, Any]) -> dict[str, Any]:
    with Store(store_path) as store:
        store.set_meta("study", spec.name)
        store.set_meta("metric", spec.metric)
        store.set_meta("spec", spec.data())
    rounds = 0
    while True:
        with Store(store_path) as store:
            records = {r["id"]: r for r in store.records()}
        trials, groups = plan(spec, records)
        todo = [t for t in trials if records.get(t.id, {}).get("status") not in FINISHED]
        if not todo:
            break
        rounds += 1
        if say:
            growing = sum(not g.settled for g in groups)
            say(f"round {rounds}: {len(todo)} trials ({growing} of {len(groups)} groups still growing)")
        run_sweep(todo, store_path, **engine)
        with Store(store_path) as store:
            statuses = store.statuses()
        if not any(statuses.get(t.id) in FINISHED for t in todo):  # all running in another sweep: it will go on
            break
    with Store(store_path) as store:
        ids = [t.id for t in trials]
        return {"counts": store.counts(ids), "ids": ids, "groups": groups, "rounds": rounds}


def summarize(spec: Spec, records: dict[str, dict[str, Any]], runs_dir: str | Path | None = None) -> dict[str, Any]:
    """What a bracketed sweep's records say, per group: the bracketed optimum (its axis value, the choosing
    metric there, bracketed or not, every point tried), the forgiving width of the choosing metric, the budget test
    on the best point's run (first choosing seed), and each report metric at the best point over the reporting
    seeds with its 95% interval; then each group against the best group (lowest choosing cost), paired by seed,
    with the verdict words where the spec declares a margin δ. `runs_dir`: where the run directories are now
    (default: where the store recorded them)."""
    b = spec.bracket
    _, groups = plan(spec, records)
    higher = {m: direction(spec, m) for m in (b.choose, *b.report)}

    def value(tid: str | None, metric: str) -> float | None:
        rec = records.get(tid) if tid else None
        if not rec or rec["status"] != "done":
            return None
        v = metric_value(rec, metric)
        return v if v is not None and math.isfinite(v) else None

    def run_dir(tid: str) -> Path | None:
        here = Path(runs_dir) / tid if runs_dir is not None else None
        if here is not None and here.is_dir():
            return here
        recorded = (records.get(tid) or {}).get("run_dir")
        return Path(recorded) if recorded else None

    rows = []
    for g in groups:
        seeds = [s for s in (b.report_seeds or b.seeds) if s in g.at_best]
        report = {m: {s: value(g.at_best.get(s), m) for s in seeds} for m in b.report}
        first = g.best.ids[b.choose_seeds[0]] if g.best else None
        where = run_dir(first) if first else None
        rows.append({
            "group": g.label, "values": g.values, "start": g.start, "state": g.state, "bracketed": g.bracketed,
            "best": g.best.x if g.best else None,
            "best_cost": g.best.cost if g.best else None,
            "chosen": interval(value(g.best.ids[s], b.choose) for s in b.choose_seeds) if g.best else None,
            "points": [{"x": p.x, "value": (None if p.cost is None or math.isinf(p.cost)
                                            else -p.cost if higher[b.choose] else p.cost),
                        "status": "pending" if p.cost is None else "failed" if math.isinf(p.cost) else "done"}
                       for p in g.points],
            "forgiveness": forgiveness({p.x: p.cost for p in g.points}),
            "plateau": plateau(eval_curve(where, b.choose), higher_is_better=higher[b.choose]) if where else None,
            "seeds": report, "report": {m: interval(v.values()) for m, v in report.items()}})
    ranked = [r for r in rows if r["best_cost"] is not None]
    best = min(ranked, key=lambda r: r["best_cost"]) if ranked else None
    pairs = []
    for r in rows:
        if best is None or r is best:
            continue
        for m in b.report:
            v = verdict(r["seeds"][m], best["seeds"][m], m, higher[m], b.margin.get(m))
            if m not in b.margin:
                v["verdict"] = None
            pairs.append({"group": r["group"], "against": best["group"], **v})
    return {"axis": b.axis, "choose": b.choose, "choose_seeds": list(b.choose_seeds), "report_metrics": list(b.report),
            "report_seeds": list(b.report_seeds or b.seeds), "higher_is_better": higher, "margin": dict(b.margin),
            "groups": rows, "best_group": best["group"] if best else None, "paired": pairs,
            "settled": all(g.settled for g in groups)}

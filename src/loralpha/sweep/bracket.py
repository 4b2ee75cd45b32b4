"""The `bracket:` section of a sweep spec: one log axis (normally `lr`) grown per group until each group's best
point has a worse point on both sides, then seeds added at the best point.

    bracket:
      axis: lr              # a float field of the config, in neither fixed nor grid
      start: default        # a number; default (lr only: each group's rule default η, scaling.default_lr of the
                            # task's full-FT η); or per group {label: number}, the others at default
      step_decades: 0.5     # the lattice: start × 10^(k·step), k = …, −1, 0, 1, …, to 3 significant digits
      first_points: 3       # the first points of each group, around the start (k = −1, 0, 1)
      max_points: 8         # a group still unbracketed at this many points is reported as such
      choose: eval_loss     # or {metric: eval_loss, seeds: [0], higher_is_better: false}: what picks the best point
      seeds_at_best: [1, 2] # run at each group's best point once it is bracketed
      report: rel_mse       # or [a, b], or {metrics: [a, b], seeds: [1, 2]}: what the report gives at the best point
      margin: 0.01          # δ of the "ties" verdict: a number (every report metric) or {metric: δ}

A group is one combination of the grid's fields (a bracketed spec gives its seeds here, not in the grid); its
label is "field=value, …" ("all" for a spec with no grid). The choosing seeds (default: fixed.seed, else 0) run at
every lattice point; the report's seeds default to every seed run at the best point.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

KEYS = ("axis", "start", "step_decades", "first_points", "max_points", "choose", "seeds_at_best", "report", "margin")
CHOOSE_KEYS = ("metric", "seeds", "higher_is_better")
REPORT_KEYS = ("metrics", "seeds")
DEFAULT_CHOOSE = "eval_loss"  # every task's held-out loss (lower is better)
MAX_POINTS = 100


@dataclass(frozen=True)
class Bracket:
    axis: str = "lr"
    start: float | str | dict[str, float] = "default"
    step_decades: float = 0.5
    first_points: int = 3
    max_points: int = 8
    choose: str = DEFAULT_CHOOSE
    choose_seeds: tuple[int, ...] = (0,)
    higher_is_better: bool | None = None  # of `choose`; None: known from its name
    seeds_at_best: tuple[int, ...] = ()
    report: tuple[str, ...] = (DEFAULT_CHOOSE,)
    report_seeds: tuple[int, ...] | None = None  # None: every seed run at the best point
    margin: dict[str, float] = field(default_factory=dict)  # report metric -> δ

    @property
    def seeds(self) -> tuple[int, ...]:
        """Every seed run at a group's best point."""
        return self.choose_seeds + self.seeds_at_best

    def data(self) -> dict[str, Any]:
        """The section as `parse_bracket` reads it (what the store's meta keeps)."""
        choose: dict[str, Any] = {"metric": self.choose, "seeds": list(self.choose_seeds)}
        if self.higher_is_better is not None:
            choose["higher_is_better"] = self.higher_is_better
        report: dict[str, Any] = {"metrics": list(self.report)}
        if self.report_seeds is not None:
            report["seeds"] = list(self.report_seeds)
        return {"axis": self.axis, "start": self.start, "step_decades": self.step_decades,
                "first_points": self.first_points, "max_points": self.max_points, "choose": choose,
                "seeds_at_best": list(self.seeds_at_best), "report": report, "margin": dict(self.margin)}


def label(values: dict[str, Any]) -> str:
    """A group's name: its grid fields as "field=value, …" ("all" when the grid is empty)."""
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all"


def _number(value: Any, where: str, positive: bool = True) -> float:
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or (x <= 0 if positive else x < 0):
        raise UsageError(f"{where}: expected a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return x


def _integer(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UsageError(f"{where}: expected an integer from {lo} to {hi}, got {value!r}")
    return value


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise UsageError(f"{where}: expected a list of seeds, got {value!r}")
    seeds = tuple(_integer(v, where, 0, 2**31 - 1) for v in value)
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"{where} gives a seed twice: {value!r}")
    return seeds


def _metric(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: expected a metric name (final_loss or a held-out metric), got {value!r}")
    return value


def _mapping(value: Any, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    for key in value:
        if key not in keys:
            raise UsageError(f"{where}: unknown key {key!r}; it has: {', '.join(keys)}")
    return value


def parse_bracket(value: Any, grid: dict[str, list[Any]], fixed: dict[str, Any], fields: dict[str, Any],
                  where: str) -> Bracket:
    """Check a spec's `bracket:` mapping against its grid and fixed fields; `fields`: field name -> type hint
    kinds (a set of types) of the config class."""
    w = f"{where}bracket"
    if not isinstance(value, dict):
        raise UsageError(f"{w} must be a mapping with keys {', '.join(KEYS)}, got {value!r}")
    _mapping(value, KEYS, w)
    axis = value.get("axis", "lr")
    if axis not in fields:
        raise UsageError(f"{w}.axis: {axis!r} is not a config field")
    if fields[axis] != {float}:
        raise UsageError(f"{w}.axis: {axis} is not a number field; bracket a float field such as lr")
    for section, names in (("fixed", fixed), ("grid", grid)):
        if axis in names:
            raise UsageError(f"{where}{section}.{axis}: {axis} is the bracketed axis; give it in bracket.start")
    if "seed" in grid:
        raise UsageError(f"{where}grid.seed: a bracketed spec gives its seeds in bracket.choose.seeds and "
                         "bracket.seeds_at_best")
    step = _number(value.get("step_decades", 0.5), f"{w}.step_decades")
    if step < 0.01:
        raise UsageError(f"{w}.step_decades: at least 0.01 (points 3 significant digits apart), got {step:g}")
    max_points = _integer(value.get("max_points", 8), f"{w}.max_points", 3, MAX_POINTS)
    first = _integer(value.get("first_points", 3), f"{w}.first_points", 3, max_points)

    labels = {}  # a group's label and, for one-field grids, its bare value -> label
    for point in itertools.product(*grid.values()):
        values = dict(zip(grid, point))
        labels[label(values)] = label(values)
        if len(values) == 1:
            labels[str(point[0])] = label(values)
    start = value.get("start", "default")
    if start == "default":
        if axis != "lr":
            raise UsageError(f"{w}.start: default is the rule's default η, for axis lr; give a number for {axis}")
    elif isinstance(start, dict):
        per: dict[str, float] = {}
        for key, x in start.items():
            if str(key) not in labels:
                groups = ", ".join(sorted(set(labels.values())))
                raise UsageError(f"{w}.start: no group {key!r}; the groups are: {groups}")
            per[labels[str(key)]] = _number(x, f"{w}.start.{key}")
        if axis != "lr" and len(per) < len(set(labels.values())):
            raise UsageError(f"{w}.start: give every group a start (default applies to axis lr only)")
        start = per
    else:
        start = _number(start, f"{w}.start")

    choose = value.get("choose", DEFAULT_CHOOSE)
    seeds, higher = None, None
    if isinstance(choose, dict):
        _mapping(choose, CHOOSE_KEYS, f"{w}.choose")
        if "seeds" in choose:
            seeds = _seeds(choose["seeds"], f"{w}.choose.seeds")
            if not seeds:
                raise UsageError(f"{w}.choose.seeds: give at least one seed")
        higher = choose.get("higher_is_better")
        if higher is not None and not isinstance(higher, bool):
            raise UsageError(f"{w}.choose.higher_is_better: expected true or false, got {higher!r}")
        choose = choose.get("metric", DEFAULT_CHOOSE)
    choose = _metric(choose, f"{w}.choose")
    if seeds is not None and "seed" in fixed:
        raise UsageError(f"{where}fixed.seed: the choosing seeds are bracket.choose.seeds; give them there alone")
    seeds = seeds or (int(fixed.get("seed", 0)),)
    at_best = _seeds(value.get("seeds_at_best", []), f"{w}.seeds_at_best")
    if twice := set(at_best) & set(seeds):
        raise UsageError(f"{w}.seeds_at_best: seed {min(twice)} already chooses (bracket.choose.seeds)")

    report = value.get("report", [choose])
    report_seeds = None
    if isinstance(report, dict):
        _mapping(report, REPORT_KEYS, f"{w}.report")
        if "seeds" in report:
            report_seeds = _seeds(report["seeds"], f"{w}.report.seeds")
            if missing := set(report_seeds) - set(seeds) - set(at_best):
                raise UsageError(f"{w}.report.seeds: seed {min(missing)} never runs at the best point; add it to "
                                 "bracket.seeds_at_best")
        report = report.get("metrics", [choose])
    report = [report] if isinstance(report, str) else report
    if not isinstance(report, list) or not report:
        raise UsageError(f"{w}.report: expected a metric name or a list of them, got {report!r}")
    report = tuple(_metric(m, f"{w}.report") for m in report)
    margin = value.get("margin", {})
    if isinstance(margin, dict):
        for key in margin:
            if key not in report:
                raise UsageError(f"{w}.margin: {key!r} is not a report metric ({', '.join(report)})")
        margin = {str(k): _number(v, f"{w}.margin.{k}", positive=False) for k, v in margin.items()}
    else:
        delta = _number(margin, f"{w}.margin", positive=False)
        margin = dict.fromkeys(report, delta)
    return Bracket(axis=axis, start=start, step_decades=step, first_points=first, max_points=max_points,
                   choose=choose, choose_seeds=seeds, higher_is_better=higher, seeds_at_best=at_best,
                   report=report, report_seeds=report_seeds, margin=margin)

"""The statistics of the study protocol: intervals over seeds, paired differences, forgiving widths, the
budget test and the verdict words (see DESIGN.md, "The evidence protocol").

    interval(values)                 mean and 95% t-interval over seeds
    paired(arm, reference)           arm − reference, paired by seed, with its interval
    forgiveness({x: cost})           how wide a range of a log axis stays within 1% of the best
    plateau(curve)                   the budget test: did the held-out metric still improve ≥ 2% over the last quarter?
    verdict(arm, reference, metric)  "ties" | "better" | "worse" | "undecided", naming its metric

Costs are oriented so that lower is better (a higher-is-better metric enters negated; a failed or diverged
point is +inf). These functions give exactly what bench/decisive_analysis.py gives on the same inputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FORGIVE = 0.01  # forgiving width: the range within 1% of the best
PLATEAU = 0.02  # the budget holds when the held-out metric improves < 2% over the last quarter of the run
LEVEL = 0.95  # intervals and "better"/"worse"
TIES_LEVEL = 0.90  # "ties": the 90% interval inside ±δ, i.e. two one-sided tests at 5% each
VERDICTS = ("ties", "better", "worse", "undecided")


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(x) for x in values if x is not None and math.isfinite(x)]


def interval(values: Iterable[float | None], level: float = LEVEL) -> dict[str, Any] | None:
    """Mean and `level` t-interval of the finite values: mean ± t_{(1+level)/2, n−1} · s / √n, s the sample
    standard deviation (n − 1). {mean, lo, hi, n, values}; lo and hi are None for one value; None for none."""
    from scipy import stats

    v = _finite(values)
    if not v:
        return None
    mean = sum(v) / len(v)
    if len(v) < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": 1, "values": v}
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
    half = stats.t.ppf((1 + level) / 2, len(v) - 1) * sd / math.sqrt(len(v))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": len(v), "values": v}


def differences(arm: Mapping[Any, float | None], reference: Mapping[Any, float | None]) -> list[float]:
    """arm − reference for each seed both have a finite value for (in `arm`'s order)."""
    out = []
    for seed, a in arm.items():
        b = reference.get(seed)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            out.append(a - b)
    return out


def paired(arm: Mapping[Any, float | None], reference: Mapping[Any, float | None],
           level: float = LEVEL) -> dict[str, Any] | None:
    """The interval of arm − reference over the seeds both ran (seed -> value): arms that share seeds share
    their batch order, so the difference is paired and its spread is the seeds' disagreement alone."""
    return interval(differences(arm, reference), level)


def forgiveness(costs: Mapping[float, float | None], within: float = FORGIVE) -> dict[str, Any] | None:
    """Width in decades of the axis range whose cost stays within `within` (1%) of the best.

    `costs`: axis value (> 0) -> cost, lower is better (+inf: failed or diverged; None: not run, left out).
    The limit is best·(1 + within) (best + within·|best| when best ≤ 0). From the best point the range
    extends over neighbours within the limit, then to where the straight line in log10(x) between the last
    point inside and the first outside crosses the limit (to the point outside itself when it diverged).
    {decades, open, within (the limit), best}; `open` when the range reaches an end of the grid (a lower
    bound on the width)."""
    points = sorted((x, c) for x, c in costs.items() if c is not None)
    finite = [(x, c) for x, c in points if math.isfinite(c)]
    if not finite:
        return None
    best = min(c for _, c in finite)
    limit = best * (1 + within) if best > 0 else best + within * abs(best)
    i = min(range(len(points)), key=lambda k: points[k][1])
    x = [math.log10(v) for v, _ in points]

    def edge(direction: int) -> tuple[float, bool]:
        k = i
        while 0 <= k + direction < len(points) and points[k + direction][1] <= limit:
            k += direction
        if not 0 <= k + direction < len(points):
            return x[k], True
        c0, c1 = points[k][1], points[k + direction][1]
        frac = 1.0 if not math.isfinite(c1) else (limit - c0) / (c1 - c0)
        return x[k] + direction * frac * abs(x[k + direction] - x[k]), False

    (lo, lo_open), (hi, hi_open) = edge(-1), edge(1)
    return {"decades": hi - lo, "open": lo_open or hi_open, "within": limit, "best": best}


def plateau(curve: Iterable[tuple[float, float | None]], threshold: float = PLATEAU,
            higher_is_better: bool = False) -> dict[str, Any] | None:
    """The budget test on a held-out curve [(step, value), …] in step order (None values left out).

    The reading: with T the last evaluation's step, the value at the quarter mark 0.75·T is the evaluation
    there, or else read on the straight line between the two evaluations around it; the gain is
    (v(0.75·T) − v(T)) / |v(0.75·T)| (negated for a higher-is-better metric; 0 when v(0.75·T) = 0). The budget
    holds when gain < `threshold` (2%): the last quarter of the run improved the metric by less than that.
    {from_step, between (the evaluations read), to_step, gain, holds}; None with fewer than two evaluations
    or none at or before the mark."""
    points = [(s, v) for s, v in curve if v is not None]
    if len(points) < 2:
        return None
    end_step, end = points[-1]
    mark = 0.75 * end_step
    pair = next(((a, b) for a, b in zip(points, points[1:]) if a[0] <= mark <= b[0]), None)
    if pair is None:
        return None
    (s0, v0), (s1, v1) = pair
    start = v0 if s1 == s0 else v0 + (v1 - v0) * (mark - s0) / (s1 - s0)
    gain = (start - end) / abs(start) if start else 0.0
    if higher_is_better:
        gain = -gain
    return {"from_step": round(mark, 1), "between": [s0, s1], "to_step": end_step, "gain": gain,
            "holds": gain < threshold}


def eval_curve(run_dir: str | Path, metric: str) -> list[tuple[int, float]]:
    """A run's held-out `metric` per evaluation [(step, value), …], from its metrics.jsonl ([] if none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a killed run
            continue
        if isinstance(row, dict) and row.get(metric) is not None and "step" in row:
            out.append((row["step"], float(row[metric])))
    return out


def verdict(arm: Mapping[Any, float | None], reference: Mapping[Any, float | None], metric: str,
            higher_is_better: bool, delta: float | None = None) -> dict[str, Any]:
    """The verdict on arm against reference on `metric`, from their paired differences d = arm − reference:

    - "ties" when δ is given and the 90% interval of d lies inside (−δ, δ): both one-sided tests
      (d > −δ and d < δ, each at 5%) reject a difference of δ or more. It is read first, so a difference
      that is significant yet smaller than the declared margin is a tie.
    - "better" / "worse" when the 95% interval of d excludes 0 (better: on the metric's good side);
    - "undecided" otherwise, and with fewer than two pairs.
    {metric, verdict, n, mean, ci95, ci90, delta}."""
    d = differences(arm, reference)
    wide, narrow = interval(d, LEVEL), interval(d, TIES_LEVEL)
    out = {"metric": metric, "verdict": "undecided", "n": len(d), "mean": wide["mean"] if wide else None,
           "ci95": [wide["lo"], wide["hi"]] if wide else None,
           "ci90": [narrow["lo"], narrow["hi"]] if narrow else None, "delta": delta}
    if not wide or wide["lo"] is None:
        return out
    if delta is not None and -delta < narrow["lo"] and narrow["hi"] < delta:
        out["verdict"] = "ties"
    elif wide["lo"] > 0 or wide["hi"] < 0:
        up = wide["lo"] > 0
        out["verdict"] = "better" if up == higher_is_better else "worse"
    return out

"""The decisive benchmark's criteria as they read before they changed, kept so that every change made after the
records existed is shown with its figures under both readings (BENCHMARKS.md §7, "Criteria changed after the records
existed"). Each function here is the earlier rule; bench/decisive/analysis.py holds the current one.

    CHANGES                       each change: its key, the commit (or step) that made it, the reading before and after
    plateau_nearest(curve)        the budget test before f606a72: the evaluation nearest the ¾ mark, not interpolated
    untuned_v1(paired)            untuned LoRA-α's tally before v2's words: "tied" when the 95% interval contains 0
    drift_v1(up, flat)            the drift verdict before: "partly" when the signal rises and the drift ratio rises too
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bench.decisive.plan import PLATEAU

CHANGES = [  # (key, commit, before, after): the rows of the rendered table, in the order they were made
    ("budget", "f606a72",
     "the held-out value at the evaluation nearest ¾ of the run (the earlier one when two are as near)",
     "the value at ¾ of the run, read on the line between the evaluations around it"),
    ("untuned", "v1 re-framing",
     "per baseline, \"tied\" when the paired 95% interval contains 0; the claim holds when none is worse",
     "v2's words (loralpha.studies.protocol.verdict): v1 declared no margin δ, so nothing is a tie and an interval "
     "containing 0 is \"undecided\"; the claim holds only when every baseline is beaten"),
    ("metric", "v1 re-framing",
     "tweets' verdicts by held-out eval_loss alone (the metric that picked η)",
     "each tweets verdict also by accuracy, the metric the task declares; every verdict names its metric"),
    ("drift", "v1 re-framing",
     "\"partly\" when the signal rises with γ and the drift ratio rises more than 10%",
     "\"does not\" wherever the drift ratio rises more than 10%: the claim is that it does not rise"),
    ("calibrator", "v1 re-framing",
     "\"within its interval\": the calibrated mean inside another rule's 95% interval, unpaired",
     "the paired difference calibrated − rule over the same seeds, and its v2 word"),
    ("cost", "v1 re-framing",
     "probe steps ÷ the steps of the whole decisive grid (every rule, 3 seeds, longer budgets)",
     "probe steps ÷ one rule's seed-0 η sweep in that table (what a user would run instead), and in target runs"),
]


def plateau_nearest(curve: Iterable[tuple[float, float | None]], threshold: float = PLATEAU) -> dict[str, Any] | None:
    """The budget test as it read before f606a72: gain = (v(s) − v(T)) / |v(s)|, s the evaluation nearest 0.75·T
    (the first of two as near), T the last; it holds when gain < `threshold`. {from_step, to_step, gain, holds}."""
    points = [(s, v) for s, v in curve if v is not None]
    if len(points) < 2:
        return None
    end_step, end = points[-1]
    start_step, start = min(points, key=lambda p: abs(p[0] - 0.75 * end_step))
    gain = (start - end) / abs(start) if start else 0.0
    return {"from_step": start_step, "to_step": end_step, "gain": gain, "holds": gain < threshold}


def untuned_v1(paired: list[tuple[str, dict]], higher: bool = False) -> dict[str, Any]:
    """v1's verdict on "untuned LoRA-α ties or beats each tuned baseline" from the paired 95% intervals untuned − rule:
    worse when the interval lies on the metric's bad side of 0 (above it when lower is better), better on its good
    side, tied when it contains 0; the claim holds when none is worse, does not when all are, partly otherwise."""
    worse = sum((p["hi"] < 0) if higher else (p["lo"] > 0) for _, p in paired)
    better = sum((p["lo"] > 0) if higher else (p["hi"] < 0) for _, p in paired)
    verdict = "holds" if not worse else ("does not" if worse == len(paired) else "partly")
    return {"verdict": verdict, "figure": f"worse than {worse}, better than {better}, tied with "
                                          f"{len(paired) - worse - better} of {len(paired)}"}


def drift_v1(up: bool, flat: bool) -> str:
    """v1's drift verdict: holds when the signal rises and the drift ratio stays flat, does not when neither,
    partly when one of the two."""
    return "holds" if up and flat else ("does not" if not up and not flat else "partly")

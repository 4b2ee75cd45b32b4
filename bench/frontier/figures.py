"""The frontier's figure per task: tuning cost in target runs against the paired test gap to the oracle
(bench/results/frontier/<task>.png), drawn by `python -m bench.frontier.analysis`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.frontier.plan import budget_words, folder

COLOURS = {"recipe": "tab:orange", "sweep": "tab:blue", "reference": "tab:gray", "calibrator": "tab:green"}


def path_of(task: str) -> Path:
    """Beside the task's folder of records: results/frontier/<task>.png (results/quick/frontier.png)."""
    return folder(task).with_suffix(".png")


def label_of(r: dict[str, Any]) -> str:
    """A point's label: the method's name; a calibration by its probe budget ('calibrate, 0.5 run')."""
    if r["kind"] == "calibrator":
        return f"calibrate, {budget_words(r['probe_runs'])}"
    return r["method"]


def draw(t: dict[str, Any], task: str) -> Path | None:
    """Cost in target runs (recipes at 0, the rest on a log scale) against the paired test gap to the oracle on
    the task's first report metric, with 95% intervals."""
    metric = t["metrics"][0]
    points = [(r, r["gap"][metric]) for r in t["rows"] if r["gap"].get(metric) and r["gap"][metric]["mean"] is not None]
    if not points:
        return None
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.3, 3 * max(r["cost_runs"] for r, _ in points) + 1)
    lows = [g["ci95"][0] if g["ci95"] and g["ci95"][0] is not None else g["mean"] for _, g in points]
    highs = [g["ci95"][1] if g["ci95"] and g["ci95"][1] is not None else g["mean"] for _, g in points]
    pad = 0.08 * ((max(highs) - min(lows)) or 1.0)
    ax.set_ylim(min(lows + [0]) - pad, max(highs + [0]) + 3 * pad)  # room above for stacked labels
    taken: list[tuple[float, float, float]] = []  # placed labels: left, right (pixels), height (pixels)
    for r, g in sorted(points, key=lambda p: (p[0]["cost_runs"], p[1]["mean"])):
        x = r["cost_runs"]
        lo, hi = g["ci95"] if g["ci95"] and g["ci95"][0] is not None else (g["mean"], g["mean"])
        ax.errorbar([x], [g["mean"]], yerr=[[g["mean"] - lo], [hi - g["mean"]]], fmt="o", capsize=3,
                    color=COLOURS.get(r["kind"], "k"))
        label = label_of(r)
        px, py = ax.transData.transform((x, g["mean"]))
        left, right = px + 5, px + 5 + 4.3 * len(label)  # about 4.3 pixels a character at 7 points and 110 dpi
        row = 0  # step the label up (9 points a row) until it overlaps no label placed before it
        while any(a < right and left < b and abs(h - (py + 13.75 * row)) < 12 for a, b, h in taken):
            row += 1
        taken.append((left, right, py + 13.75 * row))
        ax.annotate(label, (x, g["mean"]), fontsize=7, xytext=(5, 2 + 9 * row), textcoords="offset points")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("tuning cost (target runs; recipes at 0)")
    ax.set_ylabel(f"paired test gap to the oracle ({metric})")
    ax.set_title(f"{t['task']}: the tuning frontier")
    fig.tight_layout()
    path = path_of(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path

"""The frontier's figure per task: tuning cost in target runs against the paired test gap to the oracle
(bench/results/frontier/<task>.png), drawn by `python -m bench.frontier.analysis`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.frontier.plan import folder

COLOURS = {"recipe": "tab:orange", "sweep": "tab:blue", "reference": "tab:gray", "calibrator": "tab:green"}


def path_of(task: str) -> Path:
    """Beside the task's folder of records: results/frontier/<task>.png (results/quick/frontier.png)."""
    return folder(task).with_suffix(".png")


def draw(t: dict[str, Any], task: str) -> Path | None:
    """Cost in target runs (recipes at 0, the rest on a log scale) against the paired test gap to the oracle on
    the task's first report metric, with 95% intervals."""
    metric = t["metrics"][0]
    points = [(r, r["gap"][metric]) for r in t["rows"] if r["gap"].get(metric) and r["gap"][metric]["mean"] is not None]
    if not points:
        return None
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    span = max(abs(g["mean"]) for _, g in points) or 1.0
    placed: list[tuple[float, float]] = []  # label positions so far, to step a label up past its neighbours
    for r, g in sorted(points, key=lambda p: (p[0]["cost_runs"], p[1]["mean"])):
        x = r["cost_runs"]
        lo, hi = g["ci95"] if g["ci95"] and g["ci95"][0] is not None else (g["mean"], g["mean"])
        ax.errorbar([x], [g["mean"]], yerr=[[g["mean"] - lo], [hi - g["mean"]]], fmt="o", capsize=3,
                    color=COLOURS.get(r["kind"], "k"))
        near = sum(abs(px - x) <= 0.3 * max(x, 1) and abs(py - g["mean"]) < 0.04 * span for px, py in placed)
        placed.append((x, g["mean"]))
        ax.annotate(r["method"], (x, g["mean"]), fontsize=7, xytext=(5, 2 + 9 * near), textcoords="offset points")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.3, 3 * max(r["cost_runs"] for r, _ in points) + 1)
    ax.set_xlabel("tuning cost (target runs; recipes at 0)")
    ax.set_ylabel(f"paired test gap to the oracle ({metric})")
    ax.set_title(f"{t['task']}: the tuning frontier")
    fig.tight_layout()
    path = path_of(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path

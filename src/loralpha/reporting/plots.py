"""Plots shared by the reports: learning curves of run directories."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import runs


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def running_mean(values: Sequence[float], window: int = 10) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curves(run_dir: Path) -> dict[str, Any]:
    """Train loss per step and held-out metrics per evaluation step of a run directory."""
    rows = runs.read_metrics(run_dir)
    loss = [(r["step"], r["loss"]) for r in rows if "loss" in r and r["loss"] is not None]
    evals: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        for k, v in r.items():
            if k not in ("step", "loss", "lr") and isinstance(v, (int, float)) and math.isfinite(v):
                evals.setdefault(k, []).append((r["step"], v))
    return {"loss": loss, "eval": evals}


def plot_curves(named: dict[str, dict[str, Any]], metric: str, path: Path, title: str,
                loss_line: tuple[float, str] | None = None, metric_line: tuple[float, str] | None = None) -> Path:
    """Left: train loss (running mean of 10 steps) per step; right: held-out `metric` per step."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for i, (name, c) in enumerate(named.items()):
        if c["loss"]:
            steps, values = zip(*c["loss"])
            ax.plot(steps, running_mean(list(values)), color=f"C{i % 10}", label=name)
        if c["eval"].get(metric):
            steps, values = zip(*c["eval"][metric])
            bx.plot(steps, values, "o-", ms=3, color=f"C{i % 10}", label=name)
    if loss_line:
        ax.axhline(loss_line[0], color="k", ls=":", lw=1, label=loss_line[1])
    if metric_line:
        bx.axhline(metric_line[0], color="k", ls=":", lw=1, label=metric_line[1])
    ax.set_ylabel("train loss (mean of the last 10 steps)")
    bx.set_ylabel(f"held-out {metric}")
    for a in (ax, bx):
        a.set_xlabel("optimizer step")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

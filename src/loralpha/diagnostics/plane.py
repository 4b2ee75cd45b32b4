"""The α rules as points of one plane: (η_A, γ·η_B) under Adam.

Adam ignores a constant scale of the gradient and B starts at zero, so training with
multiplier k·γ at rates (η_A, η_B) moves W = W0 + γ·B·A exactly as training with γ at
(η_A, k·η_B), up to Adam's ε and without weight decay (see `scaling.adam_plane` and
docs/findings.md). LoRA-α (a large γ), LoRA+ (a large η_B) and plain LoRA (γ = 1 or 2)
are therefore points of one plane, and two rules at the same point train the same W.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import scaling


def points(rules: list[str], ranks: list[int], full_ft_lr: float, lrs: dict[str, float] | None = None,
           coef: float = scaling.PAPER_COEF, alpha: float = scaling.DEFAULT_ALPHA,
           loraplus_ratio: float = scaling.LORAPLUS_RATIO) -> list[dict[str, Any]]:
    """One row per (rule, rank): η (the rule's default for a task whose full-FT rate is
    `full_ft_lr`, unless `lrs` names one), γ, and the plane point (η_A, γ·η_B)."""
    rows = []
    for rule in rules:
        if not scaling.check_rule(rule).lora_alpha:
            continue  # full fine-tuning has no A and B
        lr = (lrs or {}).get(rule, scaling.default_lr(rule, full_ft_lr))
        for r in ranks:
            eta_a, eta_b_gamma = scaling.adam_plane(rule, r, lr, coef, alpha, loraplus_ratio)
            rows.append({"rule": rule, "rank": r, "lr": lr, "gamma": scaling.gamma(rule, r, coef, alpha),
                         "eta_A": eta_a, "gamma_eta_B": eta_b_gamma})
    return rows


def plot(rows: list[dict[str, Any]], path: str | Path, title: str | None = None) -> None:
    """Log-log plane, one line per rule through its ranks (each point labelled r=…)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    for i, rule in enumerate(rules):
        mine = sorted((r for r in rows if r["rule"] == rule), key=lambda r: r["rank"])
        xs, ys = [r["eta_A"] for r in mine], [r["gamma_eta_B"] for r in mine]
        ax.plot(xs, ys, "o-", color=f"C{i}", label=f"{rule} (η = {mine[0]['lr']:.2g})", alpha=0.85)
        side = (6, -3) if i % 2 == 0 else (-30, -3)  # neighbouring rules label on opposite sides
        if len({(x, y) for x, y in zip(xs, ys)}) == 1:  # γ·η_B does not depend on r (α = r, α = 2r)
            ax.annotate("every r", (xs[0], ys[0]), textcoords="offset points", xytext=side, fontsize=7, color=f"C{i}")
            continue
        for x, y, r in zip(xs, ys, mine):
            ax.annotate(f"r={r['rank']}", (x, y), textcoords="offset points", xytext=side, fontsize=7, color=f"C{i}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("η_A: learning rate of A")
    ax.set_ylabel("γ·η_B: learning rate of B × multiplier γ = α/r")
    ax.set_title(title or "α rules on the Adam plane (same point ⇒ same W trajectory)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

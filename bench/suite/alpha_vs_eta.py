"""α vs η on the paper's synthetic setting: scale α by k, or η by k, from one base config.

    python -m bench.suite.alpha_vs_eta            # 5-layer MLP, width 400, rank 25, AdamW, η = 5e-5 (~2 min on 2 cores)
    python -m bench.suite.alpha_vs_eta --quick    # a smoke run on a small MLP

Base: rule `fixed` with α = r (γ = 1), η = 5e-5, constant schedule, no weight decay.
"α × k" sets α = k·r at the same η; "η × k" multiplies η by k at α = r. Each run tracks
Signal-Drift every 10 steps; the table gives the final loss, held-out relative MSE,
divergence, and the median (over tracked steps) of the norm-weighted drift ratios.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import median, quick_arg, save
from loralpha import TrainConfig, train
from loralpha.reporting import fmt


def run(quick: bool) -> dict[str, object]:
    rank, lr, steps = (4, 5e-5, 40) if quick else (25, 5e-5, 300)
    factors = [2, 128] if quick else [2, 8, 32, 128, 256]
    options = {"width": 64, "depth": 3} if quick else {}
    base = dict(task="teacher-student", rule="fixed", rank=rank, alpha=float(rank), lr=lr, steps=steps,
                schedule="constant", eval_every=steps, track_every=10, task_options=options)
    variants = [("base", 1, {})]
    variants += [(f"α × {k}", k, {"alpha": float(k * rank)}) for k in factors]
    variants += [(f"η × {k}", k, {"lr": k * lr}) for k in factors]
    rows = []
    for name, k, change in variants:
        result = train(TrainConfig(**{**base, **change}))
        rows.append({"variant": name, "k": k, "alpha": change.get("alpha", float(rank)), "lr": change.get("lr", lr),
                     "status": result.status, "diverged_at": result.diverged_at, "final_loss": result.final_loss,
                     "rel_mse": result.eval.get("rel_mse"),
                     "drift_ratio": median([r["weighted"].get("drift_ratio") for r in result.signal_drift]),
                     "bilinear_ratio": median([r["weighted"].get("bilinear_ratio") for r in result.signal_drift
                                               if r["step"] > 1]),
                     "series": {key: [(r["step"], r["weighted"].get(key)) for r in result.signal_drift]
                                for key in ("drift_ratio", "bilinear_ratio")}})
        print(_line(rows[-1]), flush=True)
    return {"setting": {**base, "factors": factors}, "rows": rows}


def _line(r: dict[str, object]) -> str:
    return (f"| {r['variant']} | {r['alpha']:g} | {r['lr']:g} | {r['status']}"
            f"{'' if r['diverged_at'] is None else ' at step ' + str(r['diverged_at'])} | {fmt(r['final_loss'])} | "
            f"{fmt(r['rel_mse'])} | {fmt(r['drift_ratio'])} | {fmt(r['bilinear_ratio'])} |")


def main() -> None:
    quick = quick_arg(__doc__)
    print("| variant | α | η | status | final loss | held-out rel. MSE | drift ratio (median) "
          "| bilinear ratio (median) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    payload = run(quick)
    path = save("alpha_vs_eta", payload, quick)
    plot(payload["rows"], path.with_suffix(".png"))
    print(f"plot: {path.with_suffix('.png')}")
    print(f"wrote {path}")


def plot(rows: list[dict[str, object]], path: Path) -> None:
    """Drift ratio and bilinear ratio over training, α × k (solid) against η × k (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    ks = sorted({r["k"] for r in rows})
    for ax, key, label in zip(axes, ("drift_ratio", "bilinear_ratio"),
                              ("drift ratio ‖drift‖ / |signal| (norm-weighted)",
                               "bilinear ratio ‖γΔBΔA‖ / ‖first order‖")):
        for r in rows:
            points = [(s, v) for s, v in r["series"][key] if v is not None and (key == "drift_ratio" or s > 1)]
            if not points:
                continue
            color = f"C{ks.index(r['k'])}"
            style = "-" if r["variant"].startswith("α") or r["variant"] == "base" else "--"
            ax.plot([s for s, _ in points], [v for _, v in points], style, color=color,
                    label=r["variant"] + (" (diverged)" if r["status"] == "diverged" else ""))
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("α × k (solid) vs η × k (dashed), teacher-student", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()

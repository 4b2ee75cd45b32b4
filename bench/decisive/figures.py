"""BENCHMARKS.md §7's figures, one per decisive table, drawn from the committed records alone
(`python -m bench.decisive.run --render` writes them beside decisive.json):

1. the held-out selection metric over training of each row at its best η (seed 0; untuned LoRA-α at the full-FT η);
2. the budget test: the best-tuned baseline's held-out curve at the table's budget and at each longer one, with
   the quarter mark each test reads from;
3. why: the Signal-Drift tracker's ‖ΔA‖/‖A₀‖ and ‖B‖ over training for each LoRA row (seed 0, its best η).
"""

from __future__ import annotations

from pathlib import Path

from bench.decisive import plan as decisive_plan
from bench.decisive.analysis import summarize
from bench.decisive.plan import config, load, settings


def series(table: str, quick: bool, summary: dict | None = None) -> dict:
    """What the figure of `table` draws, from its records: {"rows": {row: {"lr", "eval", "a_motion", "b_norm"}},
    "budgets": {steps: held-out curve}, "baseline", "baseline_lr", "select"}; each curve a list of (step, value).
    The budget panel's baseline is the one the table's budget test names (bench/decisive/analysis.py); `summary`
    is the table's summary where the caller has it already."""
    from loralpha.sweep import trial_id

    s = settings(quick)[table]
    records = load(table, quick)
    t = summary or summarize(table, quick)
    arms = {arm.name: arm for arm in s.arms()}

    def done(arm, lr, steps=None):
        rec = records.get(trial_id(config(table, s, arms[arm], lr, 0, steps=steps)))
        return rec if rec and rec["status"] == "done" else None

    def curve(rec, key, rows="curve"):
        return [(r["step"], r[key]) for r in rec.get(rows) or [] if r.get(key) is not None]

    rows = {}
    for row in t["rows"]:
        rec = done(row["arm"], row["lr"]) if row["lr"] is not None else None
        if rec:
            rows[row["arm"]] = {"lr": row["lr"], "eval": curve(rec, s.select),  # motion on a log axis: > 0 only
                                **{k: [p for p in curve(rec, k, "motion") if p[1] > 0] for k in ("a_motion", "b_norm")}}
    longer = t["longer"]
    baseline = longer[0]["arm"] if longer else t["best_baseline"]
    lr = longer[0]["lr"] if longer else next((r["lr"] for r in t["rows"] if r["arm"] == baseline), None)
    budgets = {}
    for n in (s.steps, *s.longer) if baseline else ():
        rec = done(baseline, lr, n)
        if rec:
            budgets[n] = curve(rec, s.select)
    return {"rows": rows, "budgets": budgets, "baseline": baseline, "baseline_lr": lr, "select": s.select}


def path_of(table: str, quick: bool) -> Path:
    return decisive_plan.folder(table, quick).parent / f"{table}.png"


def draw(table: str, quick: bool, summary: dict | None = None) -> Path | None:
    """The figure of `table` (None where no row has a finished seed-0 run at its best η yet)."""
    data = series(table, quick, summary)
    if not data["rows"]:
        return None
    from loralpha.reporting.plots import pyplot

    plt = pyplot()
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(16, 4.4), dpi=100)
    sel = data["select"]
    for i, (name, r) in enumerate(data["rows"].items()):
        color, style = f"C{i % 10}", ("--" if "untuned" in name else "-")
        if r["eval"]:
            ax.plot(*zip(*r["eval"]), style, marker="o", ms=3, color=color, label=f"{name} (η {r['lr']:.3g})")
        if r["a_motion"]:
            cx.plot(*zip(*r["a_motion"]), style, color=color, label=f"{name}: ‖ΔA‖/‖A₀‖")
        if r["b_norm"]:
            cx.plot(*zip(*r["b_norm"]), style, color=color, alpha=0.45, lw=1, label=f"{name}: ‖B‖")
    for i, (n, c) in enumerate(sorted(data["budgets"].items())):
        if c:
            bx.plot(*zip(*c), marker="o", ms=3, color=f"C{i}", label=f"{n} steps")
            bx.axvline(0.75 * n, color=f"C{i}", ls=":", lw=1)
    ax.set_title(f"held-out {sel}, each row at its best η (seed 0)", fontsize=10)
    bx.set_title(f"budget test: {data['baseline'] or 'no best-tuned baseline yet'}"
                 + (f" at η {data['baseline_lr']:.3g}" if data["baseline_lr"] else "")
                 + " (dotted: each run's quarter mark)", fontsize=10)
    cx.set_title("Signal-Drift per-factor motion (pale: ‖B‖)", fontsize=10)
    cx.set_yscale("log")
    ax.set_ylabel(f"held-out {sel}")
    for a in (ax, bx, cx):
        a.set_xlabel("optimizer step")
        a.grid(alpha=0.3)
        if a.has_data():
            a.legend(fontsize=6)
    fig.suptitle(f"decisive benchmark: {table}", fontsize=11)
    fig.tight_layout()
    path = path_of(table, quick)
    fig.savefig(path)
    plt.close(fig)
    return path

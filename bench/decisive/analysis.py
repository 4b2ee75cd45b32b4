"""What the decisive benchmark's records say: each task's table (means and 95% intervals over the seeds, the
paired differences against untuned LoRA-α, forgiving widths, the budget test, the Signal-Drift motion) and the
verdict on each claim of the paper, from the stored records alone."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from bench.common import save
from bench.decisive import plan as decisive_plan
from bench.decisive.plan import PLATEAU, RANK, SEEDS, SUBJECT, Arm, Setting, config, cost, lattice, load, plan, settings  # noqa: E501
from loralpha.studies import protocol
from loralpha.studies.protocol import interval

CLAIMS = {  # the paper's claims, as the verdict table names them
    "untuned": "LoRA-α at the full-FT η (untuned) ties or beats each tuned baseline",
    "faster": "at the full-FT η it converges faster than 2rank",
    "search": "it shortens search (untuned within 1% of tuned; a wider forgiving η range)",
    "law": "α* ∝ √r with a large c",
    "spectrum": "spectral suppression",
    "drift": "a larger α raises the signal without raising the drift ratio (at the full-FT η)",
}


def _metric(rec: dict | None, name: str) -> float | None:
    if not rec or rec["status"] != "done":
        return None
    v = rec["eval"].get(name)
    return v if v is not None and math.isfinite(v) else None


def forgiveness(grid: dict[float, dict | None], s: Setting) -> dict | None:
    """Width in decades of η of the range whose held-out `select` is within 1% of the best, on the seed-0 grid
    (`loralpha.studies.protocol.forgiveness`)."""
    return protocol.forgiveness({lr: cost(r, s) for lr, r in grid.items() if r is not None})


def plateau(rec: dict | None, s: Setting) -> dict | None:
    """The budget test on a run's held-out `select` curve (`loralpha.studies.protocol.plateau`, v1's reading)."""
    return protocol.plateau([(r["step"], r.get(s.select)) for r in (rec or {}).get("curve", [])], PLATEAU)


def _motion(rec: dict | None) -> dict | None:
    rows = (rec or {}).get("motion") or []
    if not rows:
        return None
    last = rows[-1]
    ratios = sorted(r["drift_ratio"] for r in rows if r.get("drift_ratio") is not None
                    and math.isfinite(r["drift_ratio"]))
    signals = sorted(r["signal"] for r in rows if r.get("signal") is not None)
    return {"step": last["step"], "a_motion": last.get("a_motion"), "b_norm": last.get("b_norm"),
            "median_drift_ratio": ratios[len(ratios) // 2] if ratios else None,
            "median_signal": signals[len(signals) // 2] if signals else None}


def summarize(task: str, quick: bool, only: set[str] | None = None) -> dict:
    """The decisive table of `task`, from its stored records alone (those of `only`, if given)."""
    from loralpha.sweep import trial_id

    s = settings(quick)[task]
    records = load(task, quick, only)
    wanted, state = plan(task, s, records)
    rows = []
    for arm, st in state.items():
        lr = st["lr"]
        seeds = [records.get(trial_id(config(task, s, arm, lr, seed))) if lr is not None else None for seed in SEEDS]
        row = {"arm": arm.name, "rule": arm.rule, "targets": arm.targets, "tuned": arm.tuned, "lr": lr,
               "bracketed": st["bracketed"], "seeds_done": sum(r is not None for r in seeds),
               "statuses": [r["status"] if r else None for r in seeds],
               "grid": {f"{x:.3g}": {"status": r["status"] if r else None, s.select: _metric(r, s.select),
                                     s.report: _metric(r, s.report)} for x, r in st["grid"].items()},
               "select": interval([_metric(r, s.select) for r in seeds]),
               "report": interval([_metric(r, s.report) for r in seeds]),
               "forgiveness": forgiveness(st["grid"], s) if arm.tuned else None,
               "plateau": plateau(seeds[0], s), "motion": _motion(seeds[0]),
               "wall_time_s": [r.get("wall_time_s") for r in seeds if r]}
        rows.append((arm, row, seeds))
    by_name = {arm.name: (row, seeds) for arm, row, seeds in rows}
    about = decisive_plan.task_facts(task)
    higher = about.higher_is_better if s.report == about.metric else False
    for arm, row, seeds in rows:  # paired differences (same seeds, same batch order) against untuned LoRA-α
        untuned = by_name.get(Arm(SUBJECT, arm.targets, False).name)
        if untuned is None or not arm.tuned:
            continue
        for key, name in (("select", s.select), ("report", s.report)):
            pairs = [(_metric(u, name), _metric(b, name)) for u, b in zip(untuned[1], seeds)]
            row[f"paired_{key}"] = interval([u - b for u, b in pairs if u is not None and b is not None])
    # the baselines decisive_plan.best_baseline chooses among (tuned, every linear layer), with the seeds so far
    baselines = [row for arm, row, _ in rows if arm.tuned and arm.rule != SUBJECT and arm.targets == "all"
                 and row["select"]]
    best_baseline = min(baselines, key=lambda r: r["select"]["mean"], default=None)
    longer = []  # the best-tuned baseline at longer budgets: where its curve flattens
    best = decisive_plan.budget_baseline(task, s, records, state)
    for n in s.longer if best else ():
        rec = records.get(trial_id(config(task, s, best[0], best[1], 0, steps=n)))
        longer.append({"arm": best[0].name, "lr": best[1], "steps": n, "status": rec["status"] if rec else None,
                       s.select: _metric(rec, s.select), s.report: _metric(rec, s.report),
                       "plateau": plateau(rec, s)})
    n_records = sum(1 for c in wanted if trial_id(c) in records)
    mine = {trial_id(c) for c in wanted}  # a task's tables share its folder: count this table's trials only
    walls = [r.get("wall_time_s") or 0.0 for tid, r in records.items() if tid in mine]
    left = len(wanted) - n_records  # at the median trial so far: what the rest of the plan as it stands costs
    median_wall = statistics.median(walls) if walls else None
    return {"task": task, "steps": s.steps, "batch_size": s.batch_size, "rank": RANK,
            "targets": s.targets, "task_options": s.task_options, "select": s.select, "report": s.report,
            "report_higher_is_better": higher, "full_ft_lr": decisive_plan.task_facts(task).full_ft_lr,
            "trials_done": n_records, "trials_wanted": len(wanted),
            "complete": n_records == len(wanted) and all(r["bracketed"] for _, r, _ in rows),
            "best_baseline": best_baseline["arm"] if best_baseline else None,
            "budget": best_baseline["plateau"] if best_baseline else None, "longer": longer,
            "compute_s": sum(walls), "median_trial_s": median_wall,
            "remaining_s": left * median_wall if median_wall is not None else None,
            "devices": sorted({r.get("device", "cpu") for tid, r in records.items() if tid in mine}),
            "rows": [row for _, row, _ in rows], "record_ids": sorted(records)}


def table(task: str, quick: bool, only: set[str] | None = None) -> dict:
    """The task's table and its verdicts; until the table is complete every verdict is pending (its figure says
    what the trials so far show)."""
    out = summarize(task, quick, only)
    said = verdicts(task, quick, out, only)
    if not out["complete"]:
        for v in said:
            if v["verdict"] not in ("pending", "not tested"):
                v["figure"] = f"so far {v['verdict']}: {v['figure']}"
                v["verdict"] = "pending"
    return {**out, "verdicts": said}


def _gamma(rule: str) -> float | None:
    from loralpha import scaling

    spec = scaling.RULES[rule]
    return None if spec.trains_full_weights or spec.lora_plus else scaling.gamma(rule, RANK)


def verdicts(task: str, quick: bool, table: dict, only: set[str] | None = None) -> list[dict]:
    """One verdict per claim of the paper this suite can test on `task`: holds / does not / partly / pending,
    each with the figure it rests on. Lower `select` is better."""
    from loralpha.sweep import trial_id

    s = settings(quick)[task]
    rows = {r["arm"]: r for r in table["rows"]}
    out = []
    # 1. untuned LoRA-α ties or beats each tuned baseline (paired differences of the held-out select, 3 seeds)
    base = [r for r in table["rows"] if r["tuned"] and r["rule"] != SUBJECT and r["targets"] == "all"]
    paired = [(r["arm"], r.get("paired_select")) for r in base]
    ready = [(a, p) for a, p in paired if p and p["n"] == len(SEEDS)]
    if len(ready) < len(base) or not base:
        out.append({"claim": "untuned", "verdict": "pending",
                    "figure": f"{len(ready)} of {len(base)} baselines have {len(SEEDS)} paired seeds"})
    else:
        worse = [(a, p) for a, p in ready if p["lo"] > 0]
        better = [(a, p) for a, p in ready if p["hi"] < 0]
        gap = max(ready, key=lambda ap: ap[1]["mean"])
        verdict = "holds" if not worse else ("does not" if len(worse) == len(ready) else "partly")
        out.append({"claim": "untuned", "verdict": verdict,
                    "figure": f"worse than {len(worse)}, better than {len(better)}, tied with "
                              f"{len(ready) - len(worse) - len(better)} of {len(ready)}; largest gap vs {gap[0]}: "
                              f"{gap[1]['mean']:+.3g} [{gap[1]['lo']:+.3g}, {gap[1]['hi']:+.3g}]"})
    # 2. at the full-FT η (the paper's setting), LoRA-α converges faster than 2rank: its held-out select is lower
    # at every evaluation of seed 0; the other η both ran at are said beside it, as context
    records = load(task, quick, only)
    la, tr = Arm(SUBJECT, "all"), Arm("2rank", "all")
    full_ft = decisive_plan.task_facts(task).full_ft_lr
    at: dict[float, tuple[int, int]] = {}  # η -> (evaluations where lora-alpha is lower, evaluations compared)
    for lr in sorted({full_ft} | {lattice(k, task) for k in range(-4, 12)}):
        a = records.get(trial_id(config(task, s, la, lr, 0)))
        b = records.get(trial_id(config(task, s, tr, lr, 0)))
        if not a or not b or a["status"] != "done" or b["status"] != "done":
            continue
        ca = {r["step"]: r.get(s.select) for r in a["curve"] if r["step"] > 0}
        cb = {r["step"]: r.get(s.select) for r in b["curve"] if r["step"] > 0}
        steps = [st for st in ca if st in cb and ca[st] is not None and cb[st] is not None]
        at[lr] = (sum(ca[st] < cb[st] for st in steps), len(steps))
    elsewhere = "; ".join(f"at η = {lr:.3g}: lower at {w} of {n}" for lr, (w, n) in at.items() if lr != full_ft)
    if not at.get(full_ft, (0, 0))[1]:
        out.append({"claim": "faster", "verdict": "pending",
                    "figure": f"lora-alpha and 2rank not both done at the full-FT η {full_ft:g}"
                              + (f" (so far {elsewhere})" if elsewhere else "")})
    else:
        wins, total = at[full_ft]
        v = "holds" if wins == total else ("does not" if wins == 0 else "partly")
        out.append({"claim": "faster", "verdict": v,
                    "figure": f"at the full-FT η {full_ft:g}, lora-alpha's held-out {s.select} is lower at {wins} of "
                              f"{total} evaluations" + (f" (elsewhere {elsewhere})" if elsewhere else "")})
    # 3. it shortens search: untuned within 1% of tuned, and a wider forgiving range than the baselines
    tuned, untuned = rows.get(la.name), rows.get(Arm(SUBJECT, "all", False).name)
    widths = [r["forgiveness"]["decades"] for r in base if r.get("forgiveness")]
    if not (tuned and untuned and tuned["select"] and untuned["select"] and tuned.get("forgiveness") and widths):
        out.append({"claim": "search", "verdict": "pending", "figure": "tuned and untuned lora-alpha not both done"})
    else:
        close = untuned["select"]["mean"] <= tuned["select"]["mean"] * 1.01
        wide = tuned["forgiveness"]["decades"] >= statistics.median(widths)
        v = "holds" if close and wide else ("does not" if not close and not wide else "partly")
        out.append({"claim": "search", "verdict": v,
                    "figure": f"untuned {untuned['select']['mean']:.4g} vs tuned {tuned['select']['mean']:.4g}; "
                              f"forgiving width {tuned['forgiveness']['decades']:.2f} decades vs the baselines' "
                              f"median {statistics.median(widths):.2f}"})
    # 4.-5. need other ranks / the Hessian: not this suite's
    out.append({"claim": "law", "verdict": "not tested",
                "figure": f"rank {RANK} only here; §4's rank sweeps fit the law at short budgets"})
    out.append({"claim": "spectrum", "verdict": "not tested",
                "figure": "no Hessian in this suite; docs/findings.md §2 measures it at init"})
    # 6. a larger γ raises the signal without raising the drift ratio (LoRA rules at one η, seed 0): read at the
    # full-FT η, the paper's regime (as claim 2), where two LoRA rules ran there; else at the η most LoRA rules
    # share. Beside it, the other η that most LoRA rules share: there a larger γ may have stopped a run learning.
    by_lr: dict[float, list[tuple[float, dict]]] = {}
    mine = {trial_id(c) for c in plan(task, s, records)[0]}  # a task's tables share its folder: this table's own
    for rec in (r for tid, r in records.items() if tid in mine):
        c = rec["config"]
        g = _gamma(c["rule"])
        m = _motion(rec)
        if g is None or c["seed"] != 0 or not m or m["median_signal"] is None or rec["status"] != "done" \
                or c["targets"] != s.targets:
            continue
        by_lr.setdefault(c["lr"], []).append((g, m))
    shared = {lr: sorted(group, key=lambda gm: gm[0]) for lr, group in by_lr.items() if len(group) >= 2}

    def motion_said(lr: float) -> tuple[str, str]:
        group = shared[lr]
        signals = [m["median_signal"] for _, m in group]
        ratios = [m["median_drift_ratio"] for _, m in group]
        up = all(b > a for a, b in zip(signals, signals[1:]))
        flat = ratios[-1] is not None and ratios[0] is not None and ratios[-1] <= 1.1 * ratios[0]
        v = "holds" if up and flat else ("does not" if not up and not flat else "partly")
        return v, (f"η = {lr:.3g}, γ {group[0][0]:.3g} → {group[-1][0]:.3g}: signal {signals[0]:.3g} → "
                   f"{signals[-1]:.3g}, drift ratio {ratios[0]:.3g} → {ratios[-1]:.3g}")

    def most(lrs) -> float | None:
        return max(lrs, key=lambda lr: (len(shared[lr]), -lr), default=None)

    at = next((lr for lr in shared if math.isclose(lr, full_ft, rel_tol=1e-3)), None) or most(shared)
    if at is None:
        out.append({"claim": "drift", "verdict": "pending", "figure": "fewer than two LoRA rules at one η"})
    else:
        v, figure = motion_said(at)
        if (other := most(lr for lr in shared if lr != at)) is not None:
            other_v, other_said = motion_said(other)
            figure += f" (elsewhere, {other_said}: {other_v})"
        out.append({"claim": "drift", "verdict": v, "figure": figure})
    return out


def successors(tables: dict[str, dict]) -> dict[str, str]:
    """Table -> the table that takes its place: where a table's budget test failed, the same task's table at the
    next longer budget (`<task>@<steps>`), if there is one. A table that stands has no entry."""
    out = {}
    for name, t in tables.items():
        later = [n for n, u in tables.items()
                 if decisive_plan.task_of(n) == decisive_plan.task_of(name) and u["steps"] > t["steps"]]
        if t.get("budget") and not t["budget"]["holds"] and later:
            out[name] = min(later, key=lambda n: tables[n]["steps"])
    return out


def write_summary(tasks: list[str], quick: bool, tables: dict[str, dict] | None = None) -> Path:
    """results/decisive.json (quick/decisive.json): every task's table, from the records (or `tables`, where the
    caller has summarized them already)."""
    if tables is None:
        tables = {t: table(t, quick) for t in tasks if load(t, quick)}
    return save("decisive", {"tasks": tables}, quick)

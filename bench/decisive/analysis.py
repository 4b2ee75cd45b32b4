"""What the decisive benchmark's records say (protocol v1: seed 0 picks each η on the held-out split that the three
seeds then report on): each task's table (means and 95% intervals over the seeds and over seeds 1–2 alone, the seeds
that did not pick; the paired differences against untuned LoRA-α with v2's words; forgiving widths, the budget test,
the Signal-Drift motion) and the verdict on each claim of the paper, from the stored records alone. The readings
that changed after the records existed are computed beside the current ones (bench/decisive/criteria.py)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from bench.common import save
from bench.decisive import criteria
from bench.decisive import plan as decisive_plan
from bench.decisive.plan import PLATEAU, RANK, SEEDS, SUBJECT, Arm, Setting, config, cost, lattice, load, plan, settings  # noqa: E501
from loralpha.studies import protocol
from loralpha.studies.protocol import interval

CLAIMS = {  # the paper's claims, as the verdict table names them
    "untuned": "LoRA-α at the full-FT η (untuned) ties or beats each tuned baseline",
    "faster": "at the full-FT η it converges faster than 2rank",
    "search": "it shortens search (untuned LoRA-α within 1% of tuned LoRA-α, against itself and not against the "
              "baselines' search; a forgiving η range wider than the baselines' median)",
    "law": "α* ∝ √r with a large c",
    "spectrum": "spectral suppression",
    "drift": "a larger α raises the signal without raising the drift ratio (at the full-FT η)",
}


def _metric(rec: dict | None, name: str) -> float | None:
    if not rec or rec["status"] != "done":
        return None
    v = rec["eval"].get(name)
    return v if v is not None and math.isfinite(v) else None


def forgiveness(grid: dict[float, dict | None], s: Setting, metric: str | None = None,
                higher: bool = False) -> dict | None:
    """Width in decades of η of the range whose held-out `select` (or `metric`, negated when `higher` is better) is
    within 1% of the best, on the seed-0 grid (`loralpha.studies.protocol.forgiveness`)."""
    if metric is None:
        return protocol.forgiveness({lr: cost(r, s) for lr, r in grid.items() if r is not None})
    values = {lr: _metric(r, metric) for lr, r in grid.items() if r is not None}
    return protocol.forgiveness({lr: math.inf if v is None else -v if higher else v for lr, v in values.items()})


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
               "seeds_1_2": {"select": interval([_metric(r, s.select) for r in seeds[1:]]),
                             "report": interval([_metric(r, s.report) for r in seeds[1:]])},
               "forgiveness": forgiveness(st["grid"], s) if arm.tuned else None,
               "plateau": plateau(seeds[0], s), "motion": _motion(seeds[0]),
               "wall_time_s": [r.get("wall_time_s") for r in seeds if r]}
        rows.append((arm, row, seeds))
    by_name = {arm.name: (row, seeds) for arm, row, seeds in rows}
    about = decisive_plan.task_facts(task)
    higher = about.higher_is_better if s.report == about.metric else False
    for arm, row, seeds in rows:  # paired differences (same seeds, same batch order) against untuned LoRA-α
        if arm.tuned and s.report != s.select:  # the forgiving width by the task's own metric too
            row["forgiveness_report"] = forgiveness(state[arm]["grid"], s, s.report, higher)
        untuned = by_name.get(Arm(SUBJECT, arm.targets, False).name)
        if untuned is None or not arm.tuned:
            continue
        for key, name, up in (("select", s.select, False), ("report", s.report, higher)):
            u = {seed: _metric(r, name) for seed, r in zip(SEEDS, untuned[1])}
            b = {seed: _metric(r, name) for seed, r in zip(SEEDS, seeds)}
            row[f"paired_{key}"] = protocol.paired(u, b)
            row[f"word_{key}"] = protocol.verdict(u, b, name, up)["verdict"]  # v2's words, no margin δ (v1 had none)
            late = SEEDS[1:]  # the seeds that did not pick η
            u, b = {k: u[k] for k in late}, {k: b[k] for k in late}
            row["seeds_1_2"][f"paired_{key}"] = protocol.paired(u, b)
            row["seeds_1_2"][f"word_{key}"] = protocol.verdict(u, b, name, up)["verdict"]
    # the baselines decisive_plan.best_baseline chooses among (tuned, every linear layer), with the seeds so far
    baselines = [row for arm, row, _ in rows if arm.tuned and arm.rule != SUBJECT and arm.targets == "all"
                 and row["select"]]
    best_baseline = min(baselines, key=lambda r: r["select"]["mean"], default=None)
    budget_means = None  # the budget test on each of the best baseline's seeds, under both readings: their mean
    if best_baseline:
        runs = [r for r in by_name[best_baseline["arm"]][1] if r]
        curves = [[(p["step"], p.get(s.select)) for p in r.get("curve", [])] for r in runs]
        now = [plateau(r, s) for r in runs]
        before = [criteria.plateau_nearest(c) for c in curves]
        if runs and all(now) and all(before):
            budget_means = {"n": len(runs), "interpolated": statistics.mean(p["gain"] for p in now),
                            "nearest": statistics.mean(p["gain"] for p in before)}
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
            "budget_nearest": criteria.plateau_nearest([(p["step"], p.get(s.select)) for p in
                                                        by_name[best_baseline["arm"]][1][0].get("curve", [])])
            if best_baseline and by_name[best_baseline["arm"]][1][0] else None,
            "budget_means": budget_means,
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
            for w in (v, v.get("by_report") or {}):
                if w and w["verdict"] not in ("pending", "not tested"):
                    w["figure"] = f"so far {w['verdict']}: {w['figure']}"
                    w["verdict"] = "pending"
    return {**out, "verdicts": said}


def _gamma(rule: str) -> float | None:
    from loralpha import scaling

    spec = scaling.RULES[rule]
    return None if spec.trains_full_weights or spec.lora_plus else scaling.gamma(rule, RANK)


def _tally(words: list[str], n: int) -> str:
    """'worse than 5, better than 0, undecided on 0 of 5' (ties are counted only where some are)."""
    ties = f", ties with {words.count('ties')}" if "ties" in words else ""
    return (f"worse than {words.count('worse')}, better than {words.count('better')}{ties}, undecided on "
            f"{words.count('undecided')} of {n}")


def _gap(p: dict) -> str:
    return f"{p['mean']:+.3g}" + (f" [{p['lo']:+.3g}, {p['hi']:+.3g}]" if p.get("lo") is not None else "")


def claim_word(words: list[str]) -> str:
    """Claim 1's verdict from the paired words untuned − each baseline: holds when every baseline is beaten or
    tied, does not when some are worse and none is beaten or tied, partly when some are beaten and some worse,
    undecided otherwise."""
    won, worse = sum(w in ("better", "ties") for w in words), words.count("worse")
    return "holds" if won == len(words) else "does not" if worse and not won else "partly" if worse else "undecided"


def untuned_said(base: list[dict], key: str, metric: str, higher: bool) -> dict:
    """Claim 1 by `metric` (key: "select" or "report"), from the paired differences untuned − rule and their v2
    words: holds when every baseline is beaten (or tied within a declared margin: v1 declared none), does not when
    some are not beaten and none is, partly when some are beaten and some are worse, undecided otherwise."""
    ready = [r for r in base if (r.get(f"paired_{key}") or {}).get("n") == len(SEEDS)]
    if len(ready) < len(base) or not base:
        return {"metric": metric, "verdict": "pending",
                "figure": f"{len(ready)} of {len(base)} baselines have {len(SEEDS)} paired seeds"}
    words = [r[f"word_{key}"] for r in ready]
    verdict = claim_word(words)
    sign = -1 if higher else 1  # the gap that goes most against untuned LoRA-α
    gap = max(ready, key=lambda r: sign * r[f"paired_{key}"]["mean"])
    late = [r["seeds_1_2"] for r in ready]
    late_gap = max(zip(ready, late), key=lambda rl: sign * rl[1][f"paired_{key}"]["mean"])
    v1 = criteria.untuned_v1([(r["arm"], r[f"paired_{key}"]) for r in ready], higher)
    return {"metric": metric, "verdict": verdict,
            "figure": f"by {metric}, 3 seeds: {_tally(words, len(words))}; largest gap vs {gap['arm']}: "
                      f"{_gap(gap[f'paired_{key}'])}. Seeds 1–2 alone (not the seed that picked η): "
                      f"{_tally([x[f'word_{key}'] for x in late], len(late))}; largest gap vs {late_gap[0]['arm']}: "
                      f"{_gap(late_gap[1][f'paired_{key}'])}",
            "v1": {**v1, "figure": f"by {metric}: {v1['figure']}"}}


def faster_said(task: str, s: Setting, records: dict[str, dict], metric: str, higher: bool) -> dict:
    """Claim 2 by `metric`: at the full-FT η, seed 0, LoRA-α's held-out `metric` is better than 2rank's at every
    evaluation; the other η both ran at are said beside it, as context."""
    from loralpha.sweep import trial_id

    la, tr = Arm(SUBJECT, "all"), Arm("2rank", "all")
    full_ft = decisive_plan.task_facts(task).full_ft_lr
    at: dict[float, tuple[int, int]] = {}  # η -> (evaluations where lora-alpha is better, evaluations compared)
    for lr in sorted({full_ft} | {lattice(k, task) for k in range(-4, 12)}):
        a = records.get(trial_id(config(task, s, la, lr, 0)))
        b = records.get(trial_id(config(task, s, tr, lr, 0)))
        if not a or not b or a["status"] != "done" or b["status"] != "done":
            continue
        ca = {r["step"]: r.get(metric) for r in a["curve"] if r["step"] > 0}
        cb = {r["step"]: r.get(metric) for r in b["curve"] if r["step"] > 0}
        steps = [st for st in ca if st in cb and ca[st] is not None and cb[st] is not None]
        at[lr] = (sum((ca[st] > cb[st]) if higher else (ca[st] < cb[st]) for st in steps), len(steps))
    word = "higher" if higher else "lower"
    elsewhere = "; ".join(f"at η = {lr:.3g}: {word} at {w} of {n}" for lr, (w, n) in at.items() if lr != full_ft)
    if not at.get(full_ft, (0, 0))[1]:
        return {"metric": metric, "verdict": "pending",
                "figure": f"lora-alpha and 2rank not both done at the full-FT η {full_ft:g}"
                          + (f" (so far {elsewhere})" if elsewhere else "")}
    wins, total = at[full_ft]
    return {"metric": metric, "verdict": "holds" if wins == total else ("does not" if wins == 0 else "partly"),
            "figure": f"by {metric}: at the full-FT η {full_ft:g}, lora-alpha's held-out {metric} is {word} at "
                      f"{wins} of {total} evaluations" + (f" (elsewhere {elsewhere})" if elsewhere else "")}


def search_said(rows: dict[str, dict], base: list[dict], key: str, metric: str, higher: bool) -> dict:
    """Claim 3 by `metric`: untuned LoRA-α within 1% of tuned LoRA-α (LoRA-α against itself: no baseline's search
    enters it), and tuned LoRA-α's forgiving width at least the baselines' median."""
    width = "forgiveness" if key == "select" else "forgiveness_report"
    tuned, untuned = rows.get(Arm(SUBJECT, "all").name), rows.get(Arm(SUBJECT, "all", False).name)
    widths = [r[width]["decades"] for r in base if r.get(width)]
    if not (tuned and untuned and tuned[key] and untuned[key] and tuned.get(width) and widths):
        return {"metric": metric, "verdict": "pending", "figure": "tuned and untuned lora-alpha not both done"}
    u, t = untuned[key]["mean"], tuned[key]["mean"]
    close = u >= t * 0.99 if higher else u <= t * 1.01
    wide = tuned[width]["decades"] >= statistics.median(widths)
    return {"metric": metric, "verdict": "holds" if close and wide else ("does not" if not close and not wide
                                                                          else "partly"),
            "figure": f"by {metric}: untuned LoRA-α {u:.4g} vs tuned LoRA-α {t:.4g}; forgiving width "
                      f"{tuned[width]['decades']:.2f} decades vs the baselines' median {statistics.median(widths):.2f}"}


def verdicts(task: str, quick: bool, table: dict, only: set[str] | None = None) -> list[dict]:
    """One verdict per claim of the paper this suite can test on `task`: holds / does not / partly / undecided /
    pending, each with the figure it rests on and the metric it reads. Where the task's report metric is not the one
    that picked η (tweets: accuracy, not eval_loss), claims 1–3 are said by it too (`by_report`)."""
    from loralpha.sweep import trial_id

    s = settings(quick)[task]
    rows = {r["arm"]: r for r in table["rows"]}
    higher = table["report_higher_is_better"]
    records = load(task, quick, only)
    base = [r for r in table["rows"] if r["tuned"] and r["rule"] != SUBJECT and r["targets"] == "all"]
    out = []
    for claim, said in (("untuned", lambda key, m, up: untuned_said(base, key, m, up)),
                        ("faster", lambda key, m, up: faster_said(task, s, records, m, up)),
                        ("search", lambda key, m, up: search_said(rows, base, key, m, up))):
        v = {"claim": claim, **said("select", s.select, False)}
        if s.report != s.select:
            v["by_report"] = said("report", s.report, higher)
        out.append(v)
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

    def motion_said(lr: float) -> tuple[str, str, str]:
        """(verdict, v1's verdict, figure) at η = lr: the claim's point is that the drift ratio does not rise, so
        where it rises more than 10% from the smallest γ to the largest the claim does not hold, whatever the
        signal did (v1 said "partly" where the signal rose)."""
        group = shared[lr]
        signals = [m["median_signal"] for _, m in group]
        ratios = [m["median_drift_ratio"] for _, m in group]
        up = all(b > a for a, b in zip(signals, signals[1:]))
        flat = ratios[-1] is not None and ratios[0] is not None and ratios[-1] <= 1.1 * ratios[0]
        v = "does not" if not flat else "holds" if up else "partly"
        rise = f" (×{ratios[-1] / ratios[0]:.2f})" if ratios[0] and ratios[-1] is not None else ""
        return v, criteria.drift_v1(up, flat), (
            f"η = {lr:.3g}, γ {group[0][0]:.3g} → {group[-1][0]:.3g}: signal {signals[0]:.3g} → {signals[-1]:.3g}, "
            f"drift ratio {ratios[0]:.3g} → {ratios[-1]:.3g}{rise}")

    def most(lrs) -> float | None:
        return max(lrs, key=lambda lr: (len(shared[lr]), -lr), default=None)

    full_ft = decisive_plan.task_facts(task).full_ft_lr
    at = next((lr for lr in shared if math.isclose(lr, full_ft, rel_tol=1e-3)), None) or most(shared)
    if at is None:
        out.append({"claim": "drift", "verdict": "pending", "figure": "fewer than two LoRA rules at one η"})
    else:
        v, v1, figure = motion_said(at)
        before = figure
        if (other := most(lr for lr in shared if lr != at)) is not None:
            other_v, other_v1, other_said = motion_said(other)
            figure += f" (elsewhere, {other_said}: {other_v})"
            before += f" (elsewhere, {other_said}: {other_v1})"
        out.append({"claim": "drift", "verdict": v, "figure": figure, "v1": {"verdict": v1, "figure": before}})
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

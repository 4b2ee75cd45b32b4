"""The summary at the top of BENCHMARKS.md: bench/summary.md (plain words, no figures) and one
computed line per question, with every number read from the JSON results."""

from __future__ import annotations

import math
from pathlib import Path

from loralpha.reporting import fmt
from loralpha.studies.records import is_higher_better


def headline(R: dict) -> list[str]:
    """One computed line per question (numbers straight from the JSON)."""
    out = []
    Q = R.get("quality")
    for task, T in (Q or {}).get("tasks", {}).items():
        rep = T["report"]
        rows = {r["rule"]: r for r in T["rows"]}
        u = rows.get("lora-alpha (default η)", {}).get(rep)
        if not u or u.get("mean") is None:
            continue
        parts = []
        for name, r in rows.items():
            if not r["tuned"] or not r.get(rep) or r[rep].get("mean") is None:
                continue
            parts.append(f"{name} {r[rep]['mean']:.3g} ± {r[rep]['std']:.2g}")
        out.append(f"- **Quality, {task}** ({rep}, {'higher' if is_higher_better(rep) else 'lower'} is better, "
                   f"3 seeds): untuned `lora-alpha` {u['mean']:.3g} ± {u['std']:.2g}; each rule at its best η: "
                   + "; ".join(parts) + ".")
    C = R.get("convergence")
    for task, T in (C or {}).get("tasks", {}).items():
        row = next((r for r in T["by_lr"] if math.isclose(r["lr"], T["full_ft_lr"], rel_tol=1e-3)), None)
        if not row or not row.get("rules"):
            continue
        cells = []
        for rule, r in row["rules"].items():
            if r.get("steps"):
                cells.append(f"{rule} {r['steps']}" + (f" ({r['ratio_to_full']:.2f}× full)" if r.get("ratio_to_full")
                                                       else ""))
            else:
                cells.append(f"{rule} not reached" if r.get("status") == "done" else f"{rule} {r.get('status')}")
        out.append(f"- **Steps to `2rank`'s final loss, {task}, η = {row['lr']:g} (full-FT rate)**: "
                   + ", ".join(cells) + f" (of {T['steps']}).")
    S = R.get("search_cost")
    if S:
        cells = []
        for r in S["rows"]:
            t = r.get("targets", {}).get("any_10pct")
            cells.append(f"{r['rule']} {r['best']:.3g}" + (f" ({t['hits']}/{t['trials']} within 10%)" if t else ""))
        z = S["zero_tuning"]
        out.append(f"- **Search cost, {S['task']}** ({S['trials_per_rule']} random trials per rule; best {S['metric']} "
                   f"found, and how many trials came within 10% of the best of any rule, {S['best']['value']:.3g}): "
                   + ", ".join(cells) + f". Untuned `lora-alpha` (c = 256) regret "
                   f"{fmt(z['paper_c']['regret'], '+.0%')}; with `calibrate-c`'s c = {z['calibrated_c']['coef']:.3g}: "
                   f"{fmt(z['calibrated_c']['regret'], '+.0%')} at a cost of {z['calibrated_c']['cost_trials']:.3g} "
                   "trial-equivalents.")
    L = R.get("law")
    for task, T in (L or {}).get("tasks", {}).items():
        cells = []
        for metric, d in T["fits"].items():
            fit = d["fit"]
            if fit:
                inside = fit["p_ci"] and fit["p_ci"][0] <= 0.5 <= fit["p_ci"][1]
                ci = f" [{fit['p_ci'][0]:.2f}, {fit['p_ci'][1]:.2f}]" if fit["p_ci"] else ""
                cells.append(f"by {metric} p = {fit['p']:.2f}{ci}, c = {fit['c']:.3g}"
                             + ("" if not fit["p_ci"] else (" (½ inside the interval)" if inside else
                                                            " (½ outside the interval)")))
        cal = T["calibration"]
        out.append(f"- **Law, {task}**: " + "; ".join(cells)
                   + (f"; `calibrate-c` c = {cal['coef']:.3g}." if cal else "; `calibrate-c` not run yet."))
    bits = []
    if "tracker_overhead" in R:
        o = R["tracker_overhead"]["overhead"]
        bits.append("Signal-Drift tracking " + ", ".join(f"{100 * v:.1f}% every {k}" for k, v in o.items()))
    if "peft_step" in R:
        bits.append("loralpha step / plain PEFT step " + ", ".join(f"{r['ratio']:.2f} ({r['task']})"
                                                                   for r in R["peft_step"]["rows"]))
    if "sweep_engines" in R:
        E = R["sweep_engines"]
        bits.append(f"2 local workers {E['speedup']['speedup']:.2f}× faster than 1")
        if "per_trial_overhead_s" in E.get("ray", {}):
            bits.append(f"Ray adds {E['ray']['per_trial_overhead_s']:.1f} s per trial")
    if "hessian_cost" in R:
        rows = [r for r in R["hessian_cost"]["rows"] if r["method"] == "lanczos k=1"]
        if rows:
            bits.append("Lanczos top eigenvalue " + ", ".join(f"{r['space']}: {r['hvps']} HVPs, rel. error "
                                                              f"{r['rel_error']:.0e}" for r in rows))
    if bits:
        out.append("- **Overheads**: " + "; ".join(bits) + ".")
    if "memory" in R:
        by_task: dict = {}
        for r in R["memory"]["rows"]:
            by_task.setdefault(r["task"], []).append(r)
        out.append("- **Peak RSS**: " + "; ".join(
            f"{t} {min(r['peak_mib'] for r in rows):.0f}–{max(r['peak_mib'] for r in rows):.0f} MiB" for t, rows in
            by_task.items()) + ".")
    return out


def summary(R: dict) -> list[str]:
    path = Path(__file__).parent / "summary.md"
    out = ["## Summary", ""]
    if path.is_file():
        out += [*path.read_text().strip().splitlines(), ""]
    lines = headline(R)
    if lines:
        out += ["The headline figures (computed from the JSON):", "", *lines, ""]
    return out if len(out) > 2 else []

"""The summary at the top of BENCHMARKS.md: one short bullet or two per section (§1–§9), each naming its section,
with every number read from the JSON results; a section without its result file says so."""

from __future__ import annotations

import math

from bench.decisive.analysis import CLAIMS, successors
from bench.frontier.tables import summary_lines as frontier_summary
from loralpha.reporting import fmt
from loralpha.studies.records import is_higher_better


def _span(values: list[float], spec: str) -> str:
    lo, hi = format(min(values), spec), format(max(values), spec)
    return lo if lo == hi else f"{lo}–{hi}"


def _plain(text: str) -> str:
    """`text` without its parenthesised asides: a claim said short."""
    while " (" in text and ")" in text[text.index(" ("):]:
        start = text.index(" (")
        text = text[:start] + text[text.index(")", start) + 1:]
    return text


def quality(R: dict) -> list[str]:
    cells = []
    for task, T in R["quality"]["tasks"].items():
        rep, higher = T["report"], is_higher_better(T["report"])
        untuned = next((r for r in T["rows"] if not r["tuned"] and (r.get(rep) or {}).get("mean") is not None), None)
        tuned = [r for r in T["rows"] if r["tuned"] and (r.get(rep) or {}).get("mean") is not None]
        if not untuned or not tuned:
            continue
        u = untuned[rep]["mean"]
        best = (max if higher else min)(tuned, key=lambda r: r[rep]["mean"])
        better = sum((r[rep]["mean"] > u) if higher else (r[rep]["mean"] < u) for r in tuned)
        cells.append(f"{task} {rep} {u:.3g} untuned, best `{best['rule']}` {best[rep]['mean']:.3g} ({better} of "
                     f"{len(tuned)} tuned rules better)")
    return ["- **§1 Quality at equal budget** (3 seeds, each rule at its best η; untuned: `lora-alpha` at its default "
            "η): " + "; ".join(cells) + "."] if cells else []


def convergence(R: dict) -> list[str]:
    cells = []
    for task, T in R["convergence"]["tasks"].items():
        row = next((r for r in T["by_lr"] if math.isclose(r["lr"], T["full_ft_lr"], rel_tol=1e-3)), None)
        steps = {rule: r.get("steps") for rule, r in ((row or {}).get("rules") or {}).items()}
        if "lora-alpha" in steps and "2rank" in steps:
            said = {rule: str(n) if n else "not reached" for rule, n in steps.items()}
            cells.append(f"{said['lora-alpha']} against {said['2rank']} of {T['steps']} on {task}")
    return ["- **§2 Convergence speed** (steps to `2rank`'s final loss at the full-FT η, `lora-alpha` against "
            "`2rank`): " + "; ".join(cells) + "."] if cells else []


def search(R: dict) -> list[str]:
    S = R["search_cost"]
    by = {r["rule"]: r for r in S["rows"]}
    lora = next((r for r in S["rows"] if r["best"] == S.get("best_lora")), None)
    z = S["zero_tuning"]
    la = by.get("lora-alpha")
    return [f"- **§3 Search cost** ({S['task']}, {S['trials_per_rule']} random trials per rule, best {S['metric']}): "
            f"`{S['best']['rule']}` {S['best']['value']:.3g}"
            + (f", the best LoRA rule `{lora['rule']}` {lora['best']:.3g}" if lora else "")
            + (f", `lora-alpha` {la['best']:.3g} ({la['diverged']} of {la['trials']} diverged)" if la else "")
            + f". Untuned `lora-alpha`'s regret {fmt(z['paper_c']['regret'], '+.0%')}; with `calibrate-c`'s "
            f"c = {z['calibrated_c']['coef']:.3g}, {fmt(z['calibrated_c']['regret'], '+.0%')} for "
            f"{z['calibrated_c']['cost_trials']:.3g} trial-equivalents."]


def law(R: dict) -> list[str]:
    cells = []
    for task, T in R["law"]["tasks"].items():
        fits = [(metric, d) for metric, d in T["fits"].items() if d.get("fit")]
        said = [f"by {metric} p = {d['fit']['p']:.2f}"
                + (f" [{d['fit']['p_ci'][0]:.2f}, {d['fit']['p_ci'][1]:.2f}]" if d["fit"]["p_ci"] else "")
                for metric, d in fits]
        ratios = [o["ratio_to_paper"] for o in fits[0][1]["optima"] if o.get("ratio_to_paper")] if fits else []
        if said:
            cells.append(f"{task} {', '.join(said)}"
                         + (f" (α* {_span(ratios, '.2g')}× the paper's 256·√r by {fits[0][0]})" if ratios else ""))
    return ["- **§4 The law α* = c·r^p**: " + "; ".join(cells) + "."] if cells else []


def overheads(R: dict) -> list[str]:
    bits = []
    if "tracker_overhead" in R:
        o = R["tracker_overhead"]["overhead"]
        bits.append("Signal-Drift tracking " + ", ".join(f"{100 * v:.1f}% every {k}" for k, v in o.items()))
    if "peft_step" in R:
        bits.append("loralpha step / plain PEFT step " + ", ".join(f"{r['ratio']:.2f} ({r['task']})"
                                                                   for r in R["peft_step"]["rows"]))
    if "hessian_cost" in R:
        rows = [r for r in R["hessian_cost"]["rows"] if r["method"] == "lanczos k=1"]
        if rows:
            bits.append(f"Lanczos λ_max in {_span([r['hvps'] for r in rows], 'd')} Hessian-vector products, rel. "
                        f"error ≤ {max(r['rel_error'] for r in rows):.0e}")
    if "sweep_engines" in R:
        E = R["sweep_engines"]
        bits.append(f"2 local sweep workers {E['speedup']['speedup']:.2f}× faster than 1"
                    + (f", Ray +{E['ray']['per_trial_overhead_s']:.1f} s per trial"
                       if "per_trial_overhead_s" in E.get("ray", {}) else ""))
    return ["- **§5 Overheads**: " + "; ".join(bits) + "."] if bits else []


def memory(R: dict) -> list[str]:
    by_task: dict = {}
    for r in R["memory"]["rows"]:
        by_task.setdefault(r["task"], []).append(r["peak_mib"])
    spread = max(max(v) - min(v) for v in by_task.values())
    return ["- **§6 Memory** (peak RSS of a fresh process, rank 8): " + ", ".join(
        f"{t} {_span(v, '.0f')} MiB" for t, v in by_task.items()) + f"; the rule moves a task's peak by at most "
            f"{spread:.0f} MiB."]


def decisive(R: dict) -> list[str]:
    tasks = R["decisive"]["tasks"]
    after = successors(tasks)
    shown = [n for n, t in tasks.items() if t["complete"] and not (n in after and tasks[after[n]]["complete"])]
    instead = {later: name for name, later in after.items()}  # the table that gave way to each longer one

    def said(n: str) -> str:
        failed = instead.get(n)
        return f"{n} ({tasks[n]['steps']} steps" + (f"; {failed} at {tasks[failed]['steps']} steps failed its budget "
                                                    "test" if failed else "") + ")"

    running = [f"{n} ({t['trials_done']} of {t['trials_wanted']} trials)" for n, t in tasks.items()
               if not t["complete"]]
    out = ["- **§7 The decisive benchmark**: complete: " + (", ".join(said(n) for n in shown) or "none yet")
           + (f"; running: {', '.join(running)}" if running else "") + "."]
    if shown:
        said = []

        def word(v: dict, n: str) -> str:
            rep = v.get("by_report")
            return f"{v.get('verdict', '—')}" + (f" ({rep['verdict']} by {rep['metric']})" if rep else "")

        for claim in CLAIMS:
            verdicts = [word(next((v for v in tasks[n]["verdicts"] if v["claim"] == claim), {}), n) for n in shown]
            if any(v != "not tested" for v in verdicts):
                said.append(f"{_plain(CLAIMS[claim])}: {' / '.join(verdicts)}")
        select = sorted({tasks[n]["select"] for n in shown})
        out.append(f"- **§7 verdicts**, protocol v1 (seed 0 picked η and is among the seeds reported; v2's words, "
                   f"no margin declared, so no tie; by held-out {'/'.join(select)} unless named) "
                   f"({' / '.join(shown)}): " + "; ".join(said) + ".")
    return out


def targets(rows: list[list[str]], R: dict) -> list[str]:
    measured = [r for r in rows if r[2] != "not measured"]
    missed = [r for r in measured if r[2].endswith("**not met**")]
    gpu = "" if R.get("gpu_check") else " The GPU check has not run."
    return [f"- **§8 Speed targets**: {len(measured) - len(missed)} of {len(measured)} met"
            + ("; not met: " + "; ".join(f"{r[0]} {r[2].split(' (')[0].split(' — ')[0]} (goal {r[1]})"
                                         for r in missed) if missed else "") + "." + gpu]


def calibration(R: dict) -> list[str]:
    tables = {n: t for n, t in R["calibration"]["tables"].items() if t.get("state") == "complete" and t.get("against")}
    if not tables:
        return ["- **§9 The calibrator**: no table has its 3 seeds yet."]
    shares = [s for t in tables.values() for s in t["cost_vs_sweep"].values()]
    cells = []
    for n, t in tables.items():
        by: dict[str, list[str]] = {}
        for a in t["against"]:
            by.setdefault(a["verdict"], []).append(a["arm"])
        cells.append(f"{n}{' (held out)' if t.get('held_out') else ''}: "
                     + ", ".join(f"{w} vs {', '.join(arms)}" for w, arms in by.items()))
    return [f"- **§9 The calibrator**, protocol v1 (probes costing {_span(shares, '.0%')} of one rule's η sweep, "
            f"{_span([t['cost_runs'] for t in tables.values()], '.2f')} target runs; then 3 seeds, paired by seed, "
            "v2's words): " + "; ".join(cells) + "."]


def summary(R: dict, target_rows: list[list[str]] | None = None) -> list[str]:
    """BENCHMARKS.md's Summary: a bullet or two per section, in section order, each from its result file;
    `target_rows` are §8's table rows (target, goal, measured) as bench/tables.py renders them."""
    def given(name: str, said) -> list[str]:
        return said(R) if name in R else []

    lines = [*given("quality", quality), *given("convergence", convergence), *given("search_cost", search),
             *given("law", law), *overheads(R), *given("memory", memory), *given("decisive", decisive),
             *(targets(target_rows, R) if target_rows is not None and "targets" in R else []),
             *given("calibration", calibration), *given("frontier", frontier_summary)]
    if not lines:
        return []
    return ["## Summary", "", "A line or two per section, each from its result file (the tables follow, each naming "
            "its command, its JSON file and when it ran):", "", *lines, ""]

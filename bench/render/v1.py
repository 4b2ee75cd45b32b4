"""The rendered blocks that quote protocol v1's tables (BENCHMARKS.md §7 and §9): README's results, the docs'
`decisive` blocks and docs/calibrate.md's `calibration-headline`, from bench/results/decisive.json
(`python -m bench.decisive.run --render`) and bench/results/calibration.json (`python -m bench.calibration.run
--render`). Each says it is v1 and what v1 cannot do: one held-out split both picked η and reported, with seed 0, the
seed that picked, among the seeds reported. Blocks are tables and short sentences; the figures behind each word are
in BENCHMARKS.md."""

from __future__ import annotations

import re
from typing import Any

from bench.calibration.tables import sweep_range
from bench.common import RESULTS
from bench.decisive.analysis import CLAIMS, successors
from bench.decisive.plan import ORDER, SUBJECT
from bench.render.markdown import load, span, table

V1 = ("Protocol v1: one held-out split both picked η and reported, and seed 0, which picked η, is among the 3 "
      "seeds reported.")


def decisive(link: str = "../BENCHMARKS.md") -> str:
    """Where the decisive benchmark stands (a table of its tables) and what its verdicts say (claim × complete table
    → v2's word by each metric), with two short sentences; every figure and interval is in BENCHMARKS.md §7."""
    path = RESULTS / "decisive.json"
    if not path.is_file():
        return "The decisive benchmark (`python -m bench.decisive.run`, BENCHMARKS.md §7) has no finished trial yet."
    tasks = load(path)["tasks"]
    after = successors(tasks)
    state = [[task, f"{t['steps']}", f"{t['trials_done']} of {t['trials_wanted']}",
              budget_cell(t, after.get(task)) if t["complete"] else "running"] for task, t in tasks.items()]
    state += [[task, "—", "—", "not started"] for task in ORDER if task not in tasks]
    done = [task for task, t in tasks.items() if t["complete"]]
    claims = [c for c in CLAIMS if any(v["claim"] == c and v["verdict"] != "not tested"
                                       for task in done for v in tasks[task]["verdicts"])]
    words = {task: {v["claim"]: v for v in tasks[task]["verdicts"]} for task in done}
    rows = [[re.sub(r" \([^)]*\)", "", CLAIMS[c])] + [_words(words[task].get(c)) for task in done] for c in claims]
    return "\n".join([
        f"{V1} Each claim's verdict on each complete table, in v2's words by each metric (v1 declared no margin, so "
        f"nothing can be called a tie); the figures, intervals and seeds 1–2 alone are in "
        f"[BENCHMARKS.md §7]({link}#7-the-decisive-benchmark).", "",
        table(["table", "steps", "trials", "budget test (best-tuned baseline plateaued)"], state), "",
        table(["claim", *done], rows)])


def _words(v: dict | None) -> str:
    """'**does not** (eval_loss: worse than 5 of 5); **undecided** (accuracy: …)': a verdict's word by its metric, and
    by the task's own, with the tally of paired differences where the verdict counts them."""
    if not v:
        return "—"
    out = []
    for said in [v] + ([v["by_report"]] if v.get("by_report") else []):
        count = f": {tally(said['figure'])}" if TALLY.search(said["figure"]) else ""
        out.append(f"**{said['verdict']}**" + (f" ({said['metric']}{count})" if said.get("metric") else ""))
    return "; ".join(out)


def budget_cell(t: dict, later: str | None) -> str:
    """A complete table's budget test, said short: passes, or fails with its gain (and which table takes its place)."""
    b, old = t.get("budget"), t.get("budget_nearest")
    if not b:
        return "—"
    if b["holds"]:
        return "passes" + (f" (fails under the reading before f606a72: {100 * old['gain']:.2f}%)"
                           if old and not old["holds"] else "")
    return (f"**fails**: {100 * b['gain']:.1f}% better over the last quarter"
            + (f"; {later} takes its place" if later else ""))


def _ci(d: dict[str, Any]) -> str:
    return f"{d['mean']:.4g} [{d['lo']:.4g}, {d['hi']:.4g}]"


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


TALLY = re.compile(r"worse than (\d+), better than (\d+)(?:, ties with (\d+))?, undecided on (\d+) of (\d+)")


def tally(figure: str) -> str:
    """'by eval_loss, 3 seeds: worse than 5, better than 0, undecided on 0 of 5; …' (a verdict's figure) said short:
    'worse than 5 of 5'."""
    found = TALLY.search(figure)
    if not found:
        return figure.split(";")[0]
    worse, better, ties, undecided, n = found.groups()
    parts = [f"{word} {k}" for word, k in (("worse than", worse), ("better than", better), ("tied with", ties),
                                           ("undecided against", undecided)) if k and k != "0"]
    return ", ".join(parts) + f" of {n}"


def _gaps(t: dict) -> str:
    """The largest paired gap untuned − baseline by the selection metric: 3 seeds → seeds 1–2 alone."""
    base = [r for r in t["rows"] if r["tuned"] and r["rule"] != SUBJECT and r["targets"] == "all"
            and r.get("paired_select") and (r.get("seeds_1_2") or {}).get("paired_select")]
    if not base:
        return ""
    three = max(base, key=lambda r: r["paired_select"]["mean"])
    late = max(base, key=lambda r: r["seeds_1_2"]["paired_select"]["mean"])
    who = three["arm"] if late is three else f"{three['arm']}, then {late['arm']}"
    return f"{three['paired_select']['mean']:+.3g} → {late['seeds_1_2']['paired_select']['mean']:+.3g} (vs {who})"


def results() -> str:
    """README's results: one table of each calibrated decisive table (the best tuned rule, the best tuned LoRA rule,
    untuned LoRA-α and the calibrator's setting), then one short sentence per finding."""
    path, cal_path = RESULTS / "decisive.json", RESULTS / "calibration.json"
    tasks = load(path)["tasks"] if path.is_file() else {}
    tables = load(cal_path)["tables"] if cal_path.is_file() else {}
    after = successors(tasks)
    shown = {name: t for name, t in tasks.items()  # a table whose budget failed gives way to its task's longer one
             if t["complete"] and not (name in after and tasks[after[name]]["complete"])}
    if not shown:
        return ("The decisive benchmark ([BENCHMARKS.md §7](BENCHMARKS.md#7-the-decisive-benchmark)) has no complete "
                "table yet.")
    rows, done = [], {name: t for name, t in tables.items() if t.get("state") == "complete" and t.get("against")}
    for name, t in done.items():
        c = t["calibration"]["settings"]["lora-alpha"]
        label = f"{name} ({t['steps']}{', held out' if t.get('held_out') else ''})"
        rows.append([label, f"{t['best']['arm']} {_ci(t['best']['select'])}",
                     f"{t['best_lora']['arm']} {_ci(t['best_lora']['select'])}" if t.get("best_lora") else "—",
                     _ci(t["paper"]["select"]),
                     f"{_ci(t['seeds'])} (c = {c['coef']:.3g}, η = {c['lr']:.2g}; probes {t['cost_runs']:.2f} runs)"])
    out = [f"{V1} Held-out eval_loss (lower is better), mean [95% interval] over 3 seeds, at budgets the best-tuned "
           "baseline has plateaued at ([BENCHMARKS.md §7](BENCHMARKS.md#7-the-decisive-benchmark), "
           "[§9](BENCHMARKS.md#9-the-calibrator-against-the-decisive-ground-truth)):", ""]
    if rows:
        out += [table(["table (steps)", "best tuned rule", "best tuned LoRA rule", "LoRA-α c = 256, untuned",
                       "`loralpha calibrate` (probes in runs at the target budget)"], rows), ""]
    said = ["Words are v2's, paired by seed; v1 declared no margin, so nothing can be called a tie."]
    verdicts = {name: {v["claim"]: v for v in t["verdicts"]} for name, t in shown.items()}
    untuned = [f"on {name} by {v['untuned']['metric']} {tally(v['untuned']['figure'])}"
               + (f", by {v['untuned']['by_report']['metric']} {tally(v['untuned']['by_report']['figure'])}"
                  if v["untuned"].get("by_report") else "")
               for name, v in verdicts.items() if v.get("untuned", {}).get("verdict") not in (None, "pending")]
    if untuned:
        said.append(f"Untuned LoRA-α against the tuned baselines: {'; '.join(untuned)}.")
    gaps = [f"{g} on {name}" for name, t in shown.items() if (g := _gaps(t))]
    if gaps:
        said.append(f"Untuned LoRA-α's largest eval_loss gap, 3 seeds → seeds 1–2 alone (not the seed that picked "
                    f"η), is {_names(gaps)}.")
    fast = [name for name, v in verdicts.items() if v.get("faster", {}).get("verdict") == "holds"]
    if fast:
        said.append(f"At the full-FT η it converges faster than `2rank` on {_names(fast)}.")
    for name in shown:
        if name in after:
            later = tasks[after[name]]
            said.append(f"{name}'s budget test failed; {after[name]} is running ({later['trials_done']} of "
                        f"{later['trials_wanted']} planned trials).")
    if done:
        paper = sum(next((a["verdict"] for a in t["against"] if a["arm"] == t["paper"]["arm"]), "") == "better"
                    for t in done.values())
        said.append(f"`loralpha calibrate` (§9: its method then, 3 runs of probes) beats untuned c = 256 on {paper} of "
                    f"{len(done)} tables.")
        worse = [f"{', '.join(a['arm'] for a in t['against'] if a['verdict'] == 'worse')} on {n}"
                 for n, t in done.items() if any(a["verdict"] == "worse" for a in t["against"])]
        if worse:
            said.append(f"The calibrator is worse than {'; '.join(worse)}, and undecided against the other tuned "
                        "rules.")
        shares = [s for t in done.values() for s in t["cost_vs_sweep"].values()]
        said.append(f"The calibrator's probes cost {span([t['cost_runs'] for t in done.values()], '.2f')} runs at "
                    f"the target budget, {span(shares, '.0%')} of one rule's η sweep.")
    waiting = [f"{n} ({t.get('state', 'not started')})" for n, t in tables.items() if n not in done]
    if waiting:
        said.append(f"Calibration still running: {_names(waiting)}.")
    return "\n".join(out + [f"- {line}" for line in said])


def calibration_headline() -> str:
    """docs/calibrate.md's word on zero tuning: per calibrated table, the probes' cost, the chosen point, its held-out
    metric over 3 seeds and which rules it is better than, undecided against and worse than (paired by seed, v2's
    words), from bench/results/calibration.json (written by `python -m bench.calibration.run`)."""
    path = RESULTS / "calibration.json"
    tables = load(path)["tables"] if path.is_file() else {}
    link = "[BENCHMARKS.md §9](../BENCHMARKS.md#9-the-calibrator-against-the-decisive-ground-truth)"
    rows = []
    for name, t in tables.items():
        c = t.get("calibration")
        if not c or t.get("state") != "complete" or not t.get("against"):
            rows.append([name, t.get("state", "not started"), "—", "—", "—", "—", "—"])
            continue
        by = {w: ", ".join(a["arm"] for a in t["against"] if a["verdict"] == w) or "—"
              for w in ("better", "undecided", "worse")}
        rows.append([name + (" (held out while the method was designed)" if t.get("held_out") else ""),
                     f"{t['cost_runs']:.2f} target runs ({sweep_range(t)} of one rule's η sweep)",
                     f"c = {c['settings']['lora-alpha']['coef']:.4g}, η = {c['eta_A']:.3g}",
                     f"{t['metric']} {_ci(t['seeds'])}", by["better"], by["undecided"], by["worse"]])
    if not rows:
        return f"`loralpha calibrate` (LoRA's learning rates from short probes, {link}) has no table yet."
    return "\n".join([
        f"Zero tuning, tested under protocol v1 ({link}, where every paired difference is): the rows it is held "
        "against had their η picked by seed 0, one of the three seeds reported, and v1 declared no margin, so no "
        "tie can be said. `loralpha calibrate` picks LoRA's two learning rates from short probes; the setting then "
        "trains at the table's budget with 3 seeds, paired by seed with each row of the table:", "",
        table(["table", "probes", "chosen point", "held-out, mean [95%]", "better than", "undecided against",
               "worse than"], rows)])

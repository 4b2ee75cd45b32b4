"""BENCHMARKS.md §9, the calibrator against the decisive ground truth, and README's calibration headline, rendered
from bench/results/calibration.json (which `python -m bench.calibration.run --render` writes from the committed
records); bench/render/benchmarks.py and bench/render/docs.py put them in place."""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import RESULTS, missing
from bench.decisive.analysis import successors
from bench.decisive.plan import ORDER, task_of
from bench.decisive.tables import ci


def rule_cell(r: dict | None) -> str:
    return "—" if not r else f"{r['arm']} at η = {r['lr']:.3g}: {ci(r['select'])}"


def point(c: dict) -> str:
    st = c["settings"]["lora-alpha"]
    return f"({c['eta_A']:.3g}, {c['gamma_eta_B']:.3g}): LoRA-α c = {st['coef']:.4g}, η = {st['lr']:.3g}"


def vs(p: dict | None) -> str:
    """The paired difference calibrated − that row, if every seed of both has run."""
    if not p or p.get("lo") is None:
        return ""
    return f"; calibrated − it: {p['mean']:+.3g} [{p['lo']:+.3g}, {p['hi']:+.3g}]"


def outcome(t: dict) -> str:
    v = t.get("verdict")
    if not v or t.get("state") != "complete":
        return f"pending ({t.get('state', '')})"
    paired = t.get("paired_vs_best")
    return f"{v['said']}" + vs(paired)


def calibration(R: dict, folder: Path) -> list[str]:
    out = ["## 9. The calibrator against the decisive ground truth", "",
           "```", "make bench-calibration                      # the same, then these tables and the docs' blocks",
           "python -m bench.calibration.run                  # calibrate each table, then its setting with 3 seeds "
           "(resumes from the records)", "python -m bench.calibration.run --render         # only calibration.json "
           "and the figures, from the records", "```", ""]
    if "calibration" not in R:
        return out + missing("calibration.run", "calibration")
    out += ["`loralpha calibrate` picks LoRA's point (η_A, γ·η_B) on the Adam plane for a task and a budget from "
            "short probes (its docstring, `loralpha.studies.calibrate`, has the method): a 5 × 4 lattice half a decade "
            "apart at a short horizon, a plus of 5 points at 3× it, each axis carried to the target budget along "
            "the line through the two horizons' optima. Probes are scored by their own train loss on batches not "
            "yet seen, never by the held-out split. Its budget here is three runs' worth of steps (3 × the table's "
            "budget); the last column is its share of the optimizer steps of the decisive table's whole grid. The "
            "calibrated setting then trains at the table's budget with seeds 0, 1, 2, as the decisive table's rows "
            "do (same batches per seed); its held-out metric is compared with the best tuned rule's 95% interval "
            "(lower is better) and, paired by seed (calibrated − it, same seeds and batch order), with that rule, "
            "with the best tuned LoRA rule and with untuned LoRA-α. `tweets@1000 (qv)` (PEFT's default "
            "query/value targets) was held out: the method and its defaults were fixed before any of its probes "
            "ran, and its comparison rows are the decisive table's qv rows (and full-model, which trains every "
            "weight). The other two tables are not independent of the design: the map's default span was chosen "
            "with their tuned optima in view (both lie inside it).", "",
            "| table | calibrated point (η_A, γ·η_B) | its held-out metric (3 seeds) | best tuned rule's | best tuned "
            "LoRA rule's | paper's c = 256 (untuned) | against the best tuned rule | probe cost / grid cost |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes = []
    for name, t in R["calibration"]["tables"].items():
        label = f"{name} (held out)" if t.get("held_out") else name
        c = t.get("calibration")
        if not c:
            out.append(f"| {label} | {t['state']} | — | {rule_cell(t.get('best'))} | — | — | pending | — |")
            continue
        share = (f"{c['cost_steps']} / {t['grid_steps']} = {t['cost_share']:.1%}" if t.get("grid_steps") else
                 f"{c['cost_steps']} / —")
        out.append(f"| {label} | {point(c)} | {ci(t.get('seeds'))} | {rule_cell(t.get('best'))} | "
                   f"{rule_cell(t.get('best_lora'))}{vs(t.get('paired_vs_best_lora'))} | "
                   f"{ci((t.get('paper') or {}).get('select'))}{vs(t.get('paired_vs_paper'))} | {outcome(t)} | "
                   f"{share} |")
        figure = f"{t['folder']}.png"
        notes.append(f"- **{name}**: horizons {c['horizons']['short']} → {c['horizons']['long']} → "
                     f"{c['horizons']['target']} steps; how sure: {c['certainty']}. `{c['command']}`. "
                     f"[Figure: probes and the chosen point on the Adam plane]({figure}).")
    return out + ["", *notes, *without_truth(R, R["calibration"]["tables"]), ""]


def without_truth(R: dict, tables: dict) -> list[str]:
    """The decisive benchmark's tasks with no complete table yet: nothing to check a calibration against."""
    decisive = (R.get("decisive") or {}).get("tasks", {})
    after = successors(decisive)
    mine = {task_of(t["decisive"]) for t in tables.values()}
    said = []
    for task in ORDER:
        if task in after or task_of(task) in mine or task not in decisive and "@" in task:
            continue
        t = decisive.get(task)
        said.append(f"{task} ({t['trials_done']} of {t['trials_wanted']} planned trials)" if t else
                    f"{task} (not started)")
    if not said:
        return []
    return ["", "Not calibrated yet, for want of ground truth: the decisive tables of " + ", ".join(said)
            + " are not complete, so there is no tuned optimum to hold a calibration against."]


def calibration_headline() -> str:
    """docs/calibrate.md's word on zero tuning: the calibrator's setting against each decisive table's best tuned rule,
    from bench/results/calibration.json (written by `python -m bench.calibration.run`)."""
    path = RESULTS / "calibration.json"
    tables = json.loads(path.read_text())["tables"] if path.is_file() else {}
    said, waiting = [], []
    for name, t in tables.items():
        c = t.get("calibration")
        if not c or t.get("state") != "complete" or not t.get("verdict"):
            waiting.append(f"{name} ({t.get('state', 'not started')})")
            continue
        best, seeds = t["best"], t["seeds"]
        held = " (held out while the method was designed)" if t.get("held_out") else ""
        lora, paper = t.get("best_lora"), t["paper"]
        said.append(f"on {name}{held}, probes costing {t['cost_share']:.1%} of the decisive grid's steps chose "
                    f"LoRA-α c = {c['settings']['lora-alpha']['coef']:.4g} at η = {c['eta_A']:.3g}: held-out "
                    f"{t['metric']} {seeds['mean']:.4g} [{seeds['lo']:.4g}, {seeds['hi']:.4g}] against the best tuned "
                    f"rule, {best['arm']}, at {best['select']['mean']:.4g} [{best['select']['lo']:.4g}, "
                    f"{best['select']['hi']:.4g}]: **{t['verdict']['said']}**"
                    + (f", paired {t['paired_vs_best']['mean']:+.3g} [{t['paired_vs_best']['lo']:+.3g}, "
                       f"{t['paired_vs_best']['hi']:+.3g}]" if t.get("paired_vs_best") else "")
                    + (f" (the best tuned LoRA rule, {lora['arm']}: {t['verdict_lora']['said']})" if lora else "")
                    + (f"; against untuned LoRA-α (c = 256, {paper['select']['mean']:.4g}) the paired difference is "
                       f"{t['paired_vs_paper']['mean']:+.3g} [{t['paired_vs_paper']['lo']:+.3g}, "
                       f"{t['paired_vs_paper']['hi']:+.3g}]" if t.get("paired_vs_paper") else ""))
    if not said:
        return ("`loralpha calibrate` (LoRA's learning rates from short probes, [BENCHMARKS.md §9]"
                "(../BENCHMARKS.md#9-the-calibrator-against-the-decisive-ground-truth)) has no table with its 3 seeds "
                "yet" + (f"; running: {'; '.join(waiting)}." if waiting else "."))
    return ("Zero tuning, tested ([BENCHMARKS.md §9]"
            "(../BENCHMARKS.md#9-the-calibrator-against-the-decisive-ground-truth)"
            ": `loralpha calibrate` picks LoRA's two learning rates from short probes, then the setting trains at "
            "the table's budget with 3 seeds): " + "; ".join(said) + "."
            + (f" Still running: {'; '.join(waiting)}." if waiting else ""))

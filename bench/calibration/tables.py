"""BENCHMARKS.md §9, the calibrator against the decisive ground truth, rendered
from bench/results/calibration.json (which `python -m bench.calibration.run --render` writes from the committed
records); bench/render/benchmarks.py puts it in place."""

from __future__ import annotations

from pathlib import Path

from bench.common import missing
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


def word(a: dict | None) -> str:
    """A v2 verdict (loralpha.studies.protocol.verdict) with its paired difference: '+0.0123 [+0.0029, +0.0217]
    worse'."""
    if not a or a.get("mean") is None:
        return "—"
    ci = f" [{a['ci95'][0]:+.3g}, {a['ci95'][1]:+.3g}]" if a.get("ci95") and a["ci95"][0] is not None else ""
    return f"{a['mean']:+.3g}{ci} {a['verdict']}"


def versus(t: dict, row: str, paired: str) -> str:
    """'; calibrated − it: …' against the table's `row` (best_lora, paper): its v2 word where every seed has run."""
    a = next((a for a in t.get("against", []) if a["arm"] == (t.get(row) or {}).get("arm")), None)
    return f"; calibrated − it: {word(a)}" if a else vs(t.get(paired))


def outcome(t: dict) -> str:
    v = t.get("verdict")
    if not v or t.get("state") != "complete":
        return f"pending ({t.get('state', '')})"
    return word(v)


def costs(t: dict) -> str:
    """The probes against one rule's seed-0 η sweep (the range over the rules), in target runs, and, labelled, against
    the whole v1 grid."""
    c = t["calibration"]
    grid = f"{c['cost_steps']} / {t['grid_steps']} = {t['cost_share']:.1%}" if t.get("grid_steps") else "—"
    return f"{sweep_range(t)} | {t['cost_runs']:.2f} | {grid}"


def sweep_range(t: dict) -> str:
    """The probes' steps ÷ one rule's seed-0 η sweep, over the rules of the table: '70%–93%' (one figure if alike)."""
    shares = list((t.get("cost_vs_sweep") or {}).values())
    if not shares:
        return "—"
    lo, hi = f"{min(shares):.0%}", f"{max(shares):.0%}"
    return lo if lo == hi else f"{lo}–{hi}"


def calibration(R: dict, folder: Path) -> list[str]:
    out = ["## 9. The calibrator against the decisive ground truth", "",
           "```", "make bench-calibration                      # the same, then these tables and the docs' blocks",
           "python -m bench.calibration.run                  # calibrate each table, then its setting with 3 seeds "
           "(resumes from the records)", "python -m bench.calibration.run --render         # only calibration.json "
           "and the figures, from the records", "```", ""]
    if "calibration" not in R:
        return out + missing("calibration.run", "calibration")
    out += ["**Protocol v1**, as §7: the rows it is held against had their η picked by seed 0 on the held-out split "
            "that the three seeds then report on, so each paired difference is given over seeds 1–2 alone too. "
            "Words are v2's; no margin was declared in v1, so nothing can be called a tie.", "",
            "`loralpha calibrate` picks LoRA's point (η_A, γ·η_B) on the Adam plane for a task and a budget from "
            "short probes (its docstring, `loralpha.studies.calibrate`, has the method): a 5 × 4 lattice half a decade "
            "apart at a short horizon, a plus of 5 points at 3× it, each axis carried to the target budget along "
            "the line through the two horizons' optima. Probes are scored by their own train loss on batches not "
            "yet seen, never by the held-out split. Its budget here is three runs' worth of steps (3 × the table's "
            "budget). Its cost is set against what a user would otherwise run, one rule's η sweep at seed 0 in that "
            "table (the range over the rules), and in runs at the target budget; the share of the whole v1 grid "
            "(every rule, 3 seeds, longer budgets) is kept in the last column for the record. The calibrated setting "
            "then trains at the table's budget with seeds 0, 1, 2, as the decisive table's rows do (same batches per "
            "seed); its held-out metric is compared with each rule, paired by seed (calibrated − rule, same seeds "
            "and batch order, lower is better), with v2's word. `tweets@1000 (qv)` (PEFT's default "
            "query/value targets) was held out: the method and its defaults were fixed before any of its probes "
            "ran, and its comparison rows are the decisive table's qv rows (and full-model, which trains every "
            "weight). The other two tables are not independent of the design: the map's default span was chosen "
            "with their tuned optima in view (both lie inside it).", "",
            "| table | calibrated point (η_A, γ·η_B) | its held-out metric (3 seeds) | best tuned rule's | best tuned "
            "LoRA rule's | paper's c = 256 (untuned) | calibrated − best tuned rule | probes ÷ one rule's η sweep | "
            "probes in target runs | probes ÷ whole v1 grid |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes, pairs = [], []
    for name, t in R["calibration"]["tables"].items():
        label = f"{name} (held out)" if t.get("held_out") else name
        c = t.get("calibration")
        if not c:
            out.append(f"| {label} | {t['state']} | — | {rule_cell(t.get('best'))} | — | — | pending | — | — | — |")
            continue
        out.append(f"| {label} | {point(c)} | {ci(t.get('seeds'))} | {rule_cell(t.get('best'))} | "
                   f"{rule_cell(t.get('best_lora'))}{versus(t, 'best_lora', 'paired_vs_best_lora')} | "
                   f"{ci((t.get('paper') or {}).get('select'))}{versus(t, 'paper', 'paired_vs_paper')} | "
                   f"{outcome(t)} | {costs(t)} |")
        late = {a["arm"]: a for a in t.get("against_1_2", [])}
        pairs += [f"| {label} | {a['arm']} | {word(a)} | {word(late.get(a['arm']))} |" for a in t.get("against", [])]
        figure = f"{t['folder']}.png"
        notes.append(f"- **{name}**: horizons {c['horizons']['short']} → {c['horizons']['long']} → "
                     f"{c['horizons']['target']} steps; how sure: {c['certainty']}. `{c['command']}`. "
                     f"[Figure: probes and the chosen point on the Adam plane]({figure}).")
    if pairs:
        out += ["", "The calibrated setting against every row it is held against, paired by seed (calibrated − rule, "
                "mean [95% interval], v2's word):", "", "| table | rule | 3 seeds | seeds 1–2 alone |",
                "| --- | --- | --- | --- |", *pairs]
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

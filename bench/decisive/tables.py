"""BENCHMARKS.md §7, the decisive benchmark: its tables and verdicts, rendered from bench/results/decisive.json
(which bench/decisive/run.py writes from the committed records); bench/render/benchmarks.py puts it in its place."""

from __future__ import annotations

import math
from pathlib import Path

from bench.common import ROOT, missing, stamp
from bench.decisive.analysis import CLAIMS, successors
from bench.decisive.figures import path_of
from bench.frontier.tables import claim_said
from loralpha.reporting import fmt


def _span(p: dict) -> str:
    """The stretch the budget test read: from the quarter mark (between which evaluations) to the end."""
    between = p.get("between")
    read = (f" (read between the evaluations at {between[0]} and {between[1]})"
            if between and p["from_step"] not in between else "")
    return f"{p['from_step']:g}{read} to {p['to_step']}"


def ci(d: dict | None, spec: str = ".4g") -> str:
    if not d:
        return "—"
    if d.get("lo") is None:
        return f"{format(d['mean'], spec)} (n = 1)"
    return f"{format(d['mean'], spec)} [{format(d['lo'], spec)}, {format(d['hi'], spec)}]"


def _paired(d: dict | None) -> str:
    if not d:
        return "—"
    if d.get("lo") is None:
        return f"{d['mean']:+.3g} (n = 1)"
    return f"{d['mean']:+.3g} [{d['lo']:+.3g}, {d['hi']:+.3g}]"


V1 = ("**Protocol v1.** One held-out split both picked each rule's η and reported it: seed 0 picked η and is one "
      "of the three seeds reported, so the figures on seeds 1–2 alone (the seeds that did not pick) stand beside "
      "the 3-seed ones. Verdict words are v2's (`loralpha.studies.protocol.verdict`): better or worse when the "
      "paired 95% interval excludes 0, a tie only when the 90% interval lies inside a declared margin δ. No margin "
      "was declared in v1, so nothing can be called a tie: an interval that contains 0 is undecided.")


def worded(d: dict | None, word: str | None) -> str:
    """A paired difference and its v2 word: '+0.0513 [+0.0016, +0.101] worse'."""
    return "—" if not d else f"{_paired(d)} {word}" if word else _paired(d)


def verdict_said(v: dict, bold: bool = False) -> str:
    """A verdict with its figure, and by the task's own metric where it has one: 'does not: by eval_loss, …; by
    accuracy, undecided: …'."""
    word = (lambda w: f"**{w}**") if bold else (lambda w: w)
    out = f"{word(v['verdict'])}: {v['figure']}"
    if rep := v.get("by_report"):
        figure = rep["figure"].removeprefix(f"by {rep['metric']}: ").removeprefix(f"by {rep['metric']}, ")
        out += f"; by {rep['metric']}, {word(rep['verdict'])}: {figure}"
    return out


def budget_before(T: dict) -> str:
    """The budget test under the reading before f606a72 (the evaluation nearest the ¾ mark), and the mean over the
    best baseline's three seeds under both readings."""
    b, old, means = T.get("budget"), T.get("budget_nearest"), T.get("budget_means")
    if not b or not old:
        return ""
    out = (f" Under the reading before f606a72 (the evaluation nearest the ¾ mark, step {old['from_step']}), the same "
           f"run improved {100 * old['gain']:.2f}%: the test {'passes' if old['holds'] else '**fails**'}")
    if means and means["n"] > 1:
        out += (f"; over the baseline's {means['n']} seeds the mean improvement is {100 * means['nearest']:.2f}% "
                f"under that reading and {100 * means['interpolated']:.2f}% under the current one (the test reads "
                "seed 0 alone)")
    return out + "."


def decisive(R: dict, folder: Path) -> list[str]:
    out = ["## 7. The decisive benchmark", "",
           "```", "make bench-decisive                 # the same, then these tables and the docs' blocks",
           "python -m bench.decisive.run            # runs what is missing (hours on 2 cores), then writes "
           "bench/results/decisive.json", "python -m bench.decisive.run --status   # how complete each table is",
           "python -m bench.decisive.run --render   # only decisive.json, from the records",
           "python -m bench.decisive.run --workers 8 --deadline 6   # a lent GPU: many trials at once, none started "
           "after 6 min (see its docstring)", "```", ""]
    if "decisive" not in R:
        return out + missing("decisive.run", "decisive")
    D = R["decisive"]
    out += [V1, ""]
    out += ["Every rule at rank 8 on every linear layer of the blocks (and, on tweets, PEFT's default query/value "
            "for the rows marked qv), each at a fixed budget that the table tests, η on a lattice half a decade "
            "apart through the task's full-FT η, grown until each rule's best η has a worse point on both sides (a "
            "diverged point counts as worse); seed 0 picks the η, then seeds 1 and 2 run there. `lora-alpha "
            "untuned` is c = 256 at the full-FT η, never tuned. Intervals are 95% t-intervals over the seeds; "
            "\"untuned − rule\" is the paired difference of the held-out selection metric (same seeds, same batch "
            "order; lower is better, so a positive figure means untuned LoRA-α is worse), with its v2 word, over the "
            "3 seeds and over seeds 1–2 alone; where the task's own metric is another, its paired difference "
            "follows. The forgiving width is "
            "the span of η, in decades, whose seed-0 held-out loss is within 1% of the rule's best (interpolated "
            "in log η; \"≥\" where it reaches an end of the grid). ‖ΔA‖/‖A₀‖, ‖B‖ and the drift ratio are the "
            "Signal-Drift tracker's per-factor motion at the end of the seed-0 run (the drift ratio: its median "
            "over the run). The budget test reads the best-tuned baseline's held-out loss at three quarters of its run "
            "and at its end; the baseline also runs at the longer budgets its task names (seed 0; the best of the "
            "seed-0 grids first, so that a failing budget shows before seeds 1 and 2 are spent on it), and where a "
            "table's budget fails, a table named `<task>@<steps>` repeats the task's protocol at the budget that "
            "passed. Each finished trial is a "
            "record in `bench/results/decisive/<task>/`; a rerun runs only what is missing.", ""]
    for task, T in D["tasks"].items():
        sel, rep = T["select"], T["report"]
        open_rows = sum(not r["bracketed"] for r in T["rows"])
        state = ("**complete**" if T["complete"] else
                 f"**not complete**: {open_rows} of {len(T['rows'])} rows not bracketed yet" if open_rows else
                 f"**not complete**: every optimum bracketed, {T['trials_wanted'] - T['trials_done']} trials to go")
        budget = T.get("budget")
        if budget:
            verb = "has plateaued" if budget["holds"] else "has **not** plateaued"
            btext = (f"Budget test: the best-tuned baseline ({T['best_baseline']}) improved its held-out {sel} by "
                     f"{100 * budget['gain']:.1f}% from step {_span(budget)}: it "
                     f"{verb} (threshold 2%).")
            btext += budget_before(T)
        else:
            btext = "Budget test: no tuned baseline has finished yet."
        for L in T.get("longer", []):
            if L["plateau"] is None:
                said = "not run yet" if L["status"] is None else f"{L['status']}, no held-out curve"
                btext += f" At {L['steps']} steps ({L['arm']} at {L['lr']:.3g}, seed 0): {said}."
                continue
            verb = "plateaued" if L["plateau"]["holds"] else "**not** plateaued"
            btext += (f" At {L['steps']} steps ({L['arm']} at {L['lr']:.3g}, seed 0): held-out {sel} "
                      f"{fmt(L[sel], '.4g')}, {100 * L['plateau']['gain']:.1f}% better from step "
                      f"{_span(L['plateau'])}: {verb}.")
        flat = [L["steps"] for L in T.get("longer", []) if L["plateau"] and L["plateau"]["holds"]]
        if budget and not budget["holds"] and flat:
            n = min(flat)
            btext += (f" So the smallest budget that passes is {n} steps; this table's trials ran at {T['steps']}, "
                      "and its verdicts hold for that budget only.")
            at = {L["steps"]: L for L in T["longer"]}
            later = [L for L in T["longer"] if L["steps"] > n and L["plateau"] and not L["plateau"]["holds"]]
            if later and at[n][sel] and later[-1][sel]:
                drop = 100 * (at[n][sel] - later[-1][sel]) / at[n][sel]
                btext += (f" It passes narrowly: at {later[-1]['steps']} steps the test fails again, and the held-out "
                          f"{sel} is {drop:.1f}% below the {n}-step run's, so the curve is still falling slowly.")
        out += [f"### {task}", "",
                f"{T['steps']} steps of batch {T['batch_size'] or 'default'}"
                f"{', ' + str(T['task_options']) if T['task_options'] else ''}; targets "
                f"{', '.join(T['targets']) if T['targets'] else 'the task default (every layer)'}; η chosen by "
                f"held-out `{sel}`. {T['trials_done']} of {T['trials_wanted']} planned trials done — {state}. "
                f"Compute so far: {T['compute_s'] / 3600:.1f} h of trial wall time"
                + (f" on {', '.join(T['devices'])}" if T["devices"] else "")
                + (f" (median trial {T['median_trial_s'] / 60:.0f} min; the {T['trials_wanted'] - T['trials_done']} "
                   f"trials still planned ≈ {T['remaining_s'] / 3600:.1f} h more of it, and the plan grows while an "
                   "optimum sits at an edge of its grid)" if T.get("remaining_s") else "") + ". " + btext, ""]
        cols = [f"held-out {sel}"] + ([rep] if rep != sel else [])
        pairs = ["untuned − rule (3 seeds)", "seeds 1–2 alone"] + ([f"untuned − rule, {rep}"] if rep != sel else [])
        out += ["| rule | η | bracketed | " + " | ".join(cols + pairs) + " | forgiving width | ‖ΔA‖/‖A₀‖ | "
                "‖B‖ | drift ratio |", "| --- " * (len(cols) + len(pairs) + 7) + "|"]
        for r in T["rows"]:
            f = r.get("forgiveness")
            width = "—" if not f else f"{'≥ ' if f['open'] else ''}{f['decades']:.2f}"
            m = r.get("motion") or {}
            name = r["arm"] if r["tuned"] else f"**{r['arm']}**"
            lr = "—" if r["lr"] is None else f"{r['lr']:.3g}"
            vals = [ci(r["select"])] + ([ci(r["report"], ".3f")] if rep != sel else [])
            bracketed = "— (untuned)" if not r["tuned"] else "yes" if r["bracketed"] else "not yet"
            late = r.get("seeds_1_2") or {}
            vals += [worded(r.get("paired_select"), r.get("word_select")),
                     worded(late.get("paired_select"), late.get("word_select"))]
            vals += [worded(r.get("paired_report"), r.get("word_report"))] if rep != sel else []
            out.append(f"| {name} | {lr} | {bracketed} | " + " | ".join(vals)
                       + f" | {width} | {fmt(m.get('a_motion'), '.3g')} | "
                       f"{fmt(m.get('b_norm'), '.3g')} | {fmt(m.get('median_drift_ratio'), '.3g')} |")
        lrs = sorted({float(x) for r in T["rows"] for x in r["grid"]})
        out += ["", f"Seed-0 held-out {sel} on the η lattice (— not run; ✕ diverged):", "",
                "| rule | " + " | ".join(f"{x:.3g}" for x in lrs) + " |", "| --- " * (len(lrs) + 1) + "|"]
        for r in T["rows"]:
            if not r["tuned"]:
                continue
            cells = []
            for x in lrs:
                g = next((v for k, v in r["grid"].items() if math.isclose(float(k), x)), None)
                if g is None or g["status"] is None:
                    cells.append("—")
                elif g["status"] != "done" or g[sel] is None:
                    cells.append("✕")
                else:
                    best = r["lr"] is not None and math.isclose(x, r["lr"])
                    cells.append(f"**{g[sel]:.4g}**" if best else f"{g[sel]:.4g}")
            out.append(f"| {r['arm']} | " + " | ".join(cells) + " |")
        figure = path_of(task, quick=False)
        if figure.is_file():  # drawn from the same records by bench/decisive/run.py --render
            out += ["", f"![{task}: held-out curves at each best η, the budget test, the per-factor motion]"
                    f"({figure.relative_to(ROOT)})"]
        out.append("")
    tasks = list(D["tasks"])
    after = successors(D["tasks"])
    heads = [f"{t} ({D['tasks'][t]['steps']} steps: budget test failed; see {after[t]})" if t in after else t
             for t in tasks]
    v2 = {n: f for n, t in (R.get("frontier") or {}).get("tasks", {}).items()
          if t["complete"] and (f := claim_said(t))}  # claim 1 read from the v2 frontier where it is complete
    heads += [f"{n} (v2 only)" for n in v2 if n not in tasks]
    out += ["### Verdicts", "", "One row per claim of the paper, one column per table, each from the table above "
            "(pending: the trials it needs are not all done), each naming the metric it reads: the held-out metric "
            "that picked η and, where the task declares another (tweets: accuracy), that one too. A table whose "
            "budget test failed gives way to its task's table at the budget that passed. The rules that changed "
            "after the records existed are listed with their figures under both readings below. Where a task's "
            "v2 frontier (§10) is complete, the first claim reads from it (validation chose, test reports).", "",
            "| claim | " + " | ".join(heads) + " |", "| --- " * (len(heads) + 1) + "|"]
    for key, claim in CLAIMS.items():
        cells = []
        for task in tasks:
            v = next((v for v in D["tasks"][task].get("verdicts", []) if v["claim"] == key), None)
            cells.append(v2[task] if key == "untuned" and task in v2 else "—" if v is None else verdict_said(v))
        cells += [v2[n] if key == "untuned" else "not measured under v2" for n in v2 if n not in tasks]
        out.append(f"| {claim} | " + " | ".join(cells) + " |")
    return out + ["", stamp(D, folder, "decisive"), ""]

"""Render BENCHMARKS.md from the JSON results in bench/results/ (so no number can drift from its file).

    python -m bench.render.benchmarks                 # bench/results/*.json → BENCHMARKS.md
    python -m bench.render.benchmarks --results bench/results/quick --out /tmp/B.md   # from the smoke results
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from bench.calibration.tables import calibration
from bench.common import RESULTS, ROOT, command, missing, pm, rel, stamp
from bench.decisive.tables import decisive
from bench.frontier.tables import frontier
from bench.render.criteria import criteria
from bench.render.headline import summary
from loralpha.reporting import fmt
from loralpha.studies.records import is_higher_better

FILES = ["quality", "convergence", "search_cost", "law", "tracker_overhead", "hessian_cost", "peft_step",
         "sweep_engines", "memory", "run_all", "decisive", "targets", "gpu_check", "calibration", "frontier"]


def load(folder: Path) -> dict:
    out = {}
    for name in FILES:
        p = folder / f"{name}.json"
        if p.is_file():
            out[name] = json.loads(p.read_text())
    return out


# ------------------------------------------------------------------ sections


def quality(R: dict, folder: Path) -> list[str]:
    out = ["## 1. Quality at equal budget", "", *command("suite.quality", folder, R)]
    if "quality" not in R:
        return out + missing("suite.quality")
    Q = R["quality"]
    out += ["Every rule at rank 8, its η chosen on seed 0 from a log grid (half a decade apart) by the held-out "
            "loss, then 3 seeds (0, 1, 2) at that η: mean ± std over the seeds. `lora-alpha (default η)` is the "
            "recipe untuned: c = 256 at the task's full-fine-tuning η. Cosine schedule, AdamW, no weight decay; a "
            "new classifier head trains at 1e-3 under every rule on the text tasks. `fixed` (α = 16) is `2rank` at "
            "r = 8. Where a rule's best η was at an end of the grid, its grid was extended half a decade that way, "
            "at most twice (the η tried per rule are in the JSON); \"edge\": the best η is still at an end (the "
            "optimum may lie beyond).", ""]
    for task, T in Q["tasks"].items():
        rep, sel = T["report"], T["select"]
        grid = ", ".join(f"{v:.3g}" for v in T["lr_grid"])
        out += [f"**{task}** — {T['steps']} steps, batch {T['batch_size'] or 'default'}"
                f"{', ' + str(T['task_options']) if T['task_options'] else ''}; η grid: {grid}; selection by "
                f"held-out `{sel}`.", ""]
        cols = ["final train loss", f"held-out {sel}"] + ([rep] if rep != sel else [])
        out += ["| rule | η | " + " | ".join(cols) + " | runs |", "| --- | --- | " + " | ".join("---" for _ in cols)
                + " | --- |"]
        untuned = next((r for r in T["rows"] if not r["tuned"]), None)
        for r in T["rows"]:
            vals = [pm(r.get("final_loss")), pm(r.get(sel))] + ([pm(r.get(rep), ".3f")] if rep != sel else [])
            status = ", ".join(sorted(set(r["statuses"])))
            name = f"**{r['rule']}**" if not r["tuned"] else r["rule"]
            out.append(f"| {name} | {r['lr']:.3g}{' (edge)' if r.get('edge') else ''} | " + " | ".join(vals)
                       + f" | {status} |")
        out.append("")
        if untuned and untuned.get(rep):
            higher = is_higher_better(rep)
            u = untuned[rep]["mean"]
            better = [r["rule"] for r in T["rows"] if r["tuned"] and r.get(rep) and r[rep]["mean"] is not None
                      and ((r[rep]["mean"] > u) if higher else (r[rep]["mean"] < u))]
            out += [f"Untuned `lora-alpha` ({rep} {u:.4g}) is beaten by {len(better)} of "
                    f"{sum(r['tuned'] for r in T['rows'])} tuned rules"
                    + (f" ({', '.join(better)})" if better else "") + ".", ""]
    out += [stamp(Q, folder, "quality"), ""]
    return out


def convergence(R: dict, folder: Path) -> list[str]:
    out = ["## 2. Convergence speed", "",
           *command("suite.convergence", folder, R, " (reads quality.py's seed-0 grid runs)")]
    if "convergence" not in R:
        return out + missing("suite.convergence")
    C = R["convergence"]
    out += [f"Steps for each rule to bring its train loss (mean of a {C['window']}-step window) down to the final "
            "loss of `2rank` at the same η (seed 0, rank 8, same batches), and in brackets that count over "
            "`full` fine-tuning's. \"—\": not reached within the budget.", ""]
    for task, T in C["tasks"].items():
        rules = []
        for row in T["by_lr"]:
            for rule in row.get("rules", {}):
                if rule not in rules:
                    rules.append(rule)
        out += [f"**{task}** ({T['steps']} steps; full-FT η = {T['full_ft_lr']:g})", "",
                "| η | 2rank's loss, first 10 → last 10 steps | " + " | ".join(rules) + " |",
                "| --- | --- | " + " | ".join("---" for _ in rules) + " |"]
        for row in T["by_lr"]:
            if row.get("target") is None:
                out.append(f"| {row['lr']:.3g} | {row.get('note', '—')} | " + " | ".join("" for _ in rules) + " |")
                continue
            cells = []
            for rule in rules:
                r = row["rules"].get(rule, {})
                if r.get("status") != "done":
                    cells.append(r.get("status", "—"))
                elif r.get("steps") is None:
                    cells.append("—")
                else:
                    cells.append(f"{r['steps']}" + (f" ({r['ratio_to_full']:.2f}×)" if r.get("ratio_to_full") else ""))
            mark = " (full-FT η)" if math.isclose(row["lr"], T["full_ft_lr"], rel_tol=1e-3) else ""
            begin = f"{row['start']:.4g} → " if row.get("start") is not None else ""
            out.append(f"| {row['lr']:.3g}{mark} | {begin}{row['target']:.4g} | " + " | ".join(cells) + " |")
        out.append("")
    out += [stamp(C, folder, "convergence"), ""]
    return out


def search(R: dict, folder: Path) -> list[str]:
    out = ["## 3. Search cost", "", *command("suite.search_cost", folder, R)]
    if "search_cost" not in R:
        return out + missing("suite.search_cost")
    S = R["search_cost"]
    b = S["best"]
    out += [f"Random search on {S['task']} (rank {S['rank']}, {S['steps']} steps, seed 0), {S['trials_per_rule']} "
            f"trials per rule: η log-uniform in [{S['lr_range'][0]:g}, {S['lr_range'][1]:g}], and α log-uniform in "
            f"[{S['alpha_range'][0]:g}, {S['alpha_range'][1]:g}] for the rules that have one; every rule sees the "
            f"same random quantiles. Target: held-out {S['metric']} within {S['tolerance']:.0%} of the best of any "
            f"trial, {b['value']:.4g} (`{b['rule']}`, η = {b['lr']:.3g}"
            + (f", α = {b['alpha']:.4g}" if b.get("alpha") else "") + ")"
            + (f"; best LoRA trial {S['best_lora']:.4g}" if S.get("best_lora") else "")
            + ". Expected trials = N / hits (geometric); "
            "`lora-alpha` searches η only, at c = 256 (with c searched too it is `rslora` with α = c).", "",
            "| rule | searched | best found | its regret | within 1% of best (hits, expected trials) | within 1% "
            "of best LoRA | within 10% of best | diverged |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def cell(t):
        if not t:
            return "—"
        exp = f"{t['expected_trials']:.3g}" if t["expected_trials"] else f"> {t['trials']}"
        return f"{t['hits']}/{t['trials']}, {exp}"

    for r in S["rows"]:
        tg = r.get("targets", {})
        out.append(f"| {r['rule']} | {r['searched']} | {fmt(r['best'])} | {fmt(r['regret_of_rule_best'], '+.1%')} | "
                   f"{cell(tg.get('any_1pct'))} | {cell(tg.get('lora_1pct'))} | {cell(tg.get('any_10pct'))} | "
                   f"{r['diverged']} |")
    z = S["zero_tuning"]
    p, c = z["paper_c"], z["calibrated_c"]
    out += ["", "Zero tuning (`lora-alpha` at the full-FT η, seeds 0–2; regret = mean / best − 1; cost in trials, "
            f"calibrate-c's optimizer steps counted as steps / {S['steps']}):", "",
            f"| variant | c | η | {S['metric']} (mean ± std) | regret | cost (trial-equivalents) |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| paper's c | {p['coef']:g} | {p['lr']:g} | {pm(p)} | {fmt(p['regret'], '+.1%')} | "
            f"{p['cost_trials']:g} |",
            f"| c from `calibrate-c` (r = {c['calibrate_rank']}, {c['calibrate_steps']} steps"
            f"{', at the grid edge' if c.get('edge') else ''}) | {c['coef']:.4g} | {c['lr']:g} | {pm(c)} | "
            f"{fmt(c['regret'], '+.1%')} | {c['cost_trials']:.3g} |", "", stamp(S, folder, "search_cost"), ""]
    return out


def law(R: dict, folder: Path) -> list[str]:
    out = ["## 4. The law α* = c·r^p", "",
           *command("suite.law", folder, R, " (the example sweeps into studies/, then "
                                      "loralpha.studies.laws.fit and loralpha.studies.calibrate_c)")]
    if "law" not in R:
        return out + missing("suite.law")
    L = R["law"]
    out += ["α* per rank from the sweep (parabola in log α around the best grid point), the power law with 95% "
            "bootstrap intervals, and the fixed exponent with the lowest leave-one-rank-out error. "
            "`calibrate-c` picks c at one small rank; c·√r is compared with α* at every rank.", "",
            "| task | metric | c [95% CI] | p [95% CI] | LOO RMSE p=0 / ½ / 1 / free | best | calibrated c |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for task, T in L["tasks"].items():
        cal = T["calibration"]
        for metric, d in T["fits"].items():
            fit = d["fit"]
            if not fit:
                out.append(f"| {task} | {metric} | no law: {d['reason']} | | | | |")
                continue
            ci = lambda v: f" [{v[0]:.3g}, {v[1]:.3g}]" if v else ""  # noqa: E731
            loo = " / ".join(fmt(m["loo_rmse"], ".2f") for m in fit["models"])
            out.append(f"| {task} | {metric} | {fit['c']:.4g}{ci(fit['c_ci'])} | {fit['p']:.2f}{ci(fit['p_ci'])} | "
                       f"{loo} | {fit['best_model']} | "
                       + (f"{cal['coef']:.4g}{' (edge)' if cal['edge'] else ''} |" if cal else "not run yet |"))
    out += ["", "| task | metric | rank | α* | 256·√r | α* / 256·√r | calibrated c·√r | α* / calibrated |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task, T in L["tasks"].items():
        for metric, d in T["fits"].items():
            for o in d["optima"]:
                star = o["x_star"]
                bound = {"upper": "≤ ", "lower": "≥ "}.get(o.get("bound") or "", "") if o.get("edge") else ""
                out.append(f"| {task} | {metric} | {o['rank']:g} | {bound}{fmt(star, '.4g')} | "
                           f"{fmt(o.get('paper'), '.4g')} | "
                           f"{fmt(o.get('ratio_to_paper'), '.2f')} | {fmt(o['calibrated'], '.4g')} | "
                           f"{fmt(o['ratio_to_calibrated'], '.2f')} |")
    cal_lines = [f"{task}: c = {T['calibration']['coef']:.4g} at r = {T['calibration']['rank']} from "
                 f"{T['calibration']['cost_steps']} optimizer steps ({T['calibration']['wall_time_s']:.0f} s wall, "
                 f"{T['calibration']['stopped']}{', at the edge of its grid' if T['calibration']['edge'] else ''})"
                 if T["calibration"] else f"{task}: not run yet" for task, T in L["tasks"].items()]
    out += ["", "Calibration: " + "; ".join(cal_lines) + ".",
            "Trials of the sweeps already in the store are reused, not rerun (the store keeps each trial's "
            "result and wall time).", "", stamp(L, folder, "law"), ""]
    return out


def overheads(R: dict, folder: Path) -> list[str]:
    out = ["## 5. Overheads", ""]
    out += ["**Signal-Drift tracker**", "", *command("suite.tracker_overhead", folder, R)]
    if "tracker_overhead" in R:
        T = R["tracker_overhead"]
        out += [f"{T['task']}, LoRA r = 8, {T['steps']} steps tracking every other step; medians of tracked and "
                f"untracked step times in the same run: plain step {T['plain_step_s']:.3f} s, tracked "
                f"{T['tracked_step_s']:.3f} s.", "", "| tracking interval | overhead (% of step time) |",
                "| --- | --- |"]
        out += [f"| {k} | {100 * v:.1f}% |" for k, v in T["overhead"].items()]
        out += ["", stamp(T, folder, "tracker_overhead"), ""]
    else:
        out += missing("suite.tracker_overhead")
    out += ["**Hessian top eigenvalue: cost and error against a dense reference**", "",
            *command("suite.hessian_cost", folder, R)]
    if "hessian_cost" in R:
        H = R["hessian_cost"]
        out += [f"Teacher-student MLP width {H['width']}, depth {H['depth']}, `{H['rule']}` r = {H['rank']} after 20 "
                f"steps, batch {H['batch']}, {H['dtype']}; times are medians of 3.", "",
                "| space | parameters | method | λ_max | HVPs | seconds | rel. error vs dense |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        out += [f"| {r['space']} | {r['size']} | {r['method']} | {r['lambda']:.6g} | {r['hvps']} | "
                f"{r['seconds']:.3f} | {r['rel_error']:.1e} |" for r in H["rows"]]
        out += ["", stamp(H, folder, "hessian_cost"), ""]
    else:
        out += missing("suite.hessian_cost")
    out += ["**loralpha's training step against plain PEFT (same α)**", "", *command("suite.peft_step", folder, R)]
    if "peft_step" in R:
        P = R["peft_step"]
        how = ("median over every step of all runs" if "step_samples" in P["rows"][0] else
               "median over runs of each run's mean step time")
        out += ["`loralpha.fit` against a hand loop (`peft.get_peft_model` + `torch.optim.AdamW`) on the same model, "
                f"α (lora-alpha, r = 8) and batches, alternating runs; time per step: {how}.", "",
                "| task | steps × repeats | loralpha (ms/step) | plain PEFT (ms/step) | ratio | "
                "first-step loss difference |",
                "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {r['task']} | {r['steps']} × {r['repeats']} | {1e3 * r['loralpha_step_s']:.1f} | "
                f"{1e3 * r['plain_step_s']:.1f} | {r['ratio']:.3f} | {r['first_loss_abs_diff']:.1e} |"
                for r in P["rows"]]
        out += ["", stamp(P, folder, "peft_step"), ""]
    else:
        out += missing("suite.peft_step")
    out += ["**Sweep engines: 2 local workers against 1, and Ray's per-trial overhead**", "",
            *command("suite.sweep_engines", folder, R)]
    if "sweep_engines" in R:
        E = R["sweep_engines"]
        s = E["speedup"]
        out += ["| measurement | value |", "| --- | --- |",
                f"| {s['trials']} trials × {s['steps']} steps, 1 worker (median of {s['repeats']}) | "
                f"{statistics.median(s['wall_1']):.1f} s |",
                f"| same, 2 workers | {statistics.median(s['wall_2']):.1f} s |",
                f"| speed-up | {s['speedup']:.2f}× |"]
        ray = E.get("ray", {})
        if "per_trial_overhead_s" in ray:
            fl, fr = ray["fits"]["local"], ray["fits"]["ray"]
            out += [f"| per tiny trial, local engine | {fl['per_trial_s']:.2f} s |",
                    f"| per tiny trial, Ray | {fr['per_trial_s']:.2f} s |",
                    f"| **Ray per-trial overhead** | {ray['per_trial_overhead_s']:.2f} s |",
                    f"| Ray fixed overhead (init + shutdown) | {ray['fixed_overhead_s']:.1f} s |"]
        else:
            out += [f"| Ray | {ray.get('skipped', 'not measured')} |"]
        out += ["", stamp(E, folder, "sweep_engines"), ""]
    else:
        out += missing("suite.sweep_engines")
    return out


def memory(R: dict, folder: Path) -> list[str]:
    out = ["## 6. Memory", "", *command("suite.memory", folder, R)]
    if "memory" not in R:
        return out + missing("suite.memory")
    M = R["memory"]
    out += ["Peak resident set size of a fresh process per (task, rule): after building the task (model and data) "
            "and after 10 training steps and one evaluation; \"added\" is the difference (rank 8).", "",
            "| task | rule | after build (MiB) | peak (MiB) | added (MiB) |", "| --- | --- | --- | --- | --- |"]
    out += [f"| {r['task']} | {r['rule']} | {r['built_mib']:.0f} | {r['peak_mib']:.0f} | {r['added_mib']:.0f} |"
            for r in M["rows"]]
    return out + ["", stamp(M, folder, "memory"), ""]


def _target(figure: float | None, ok: bool | None, text: str) -> str:
    if figure is None:
        return "not measured"
    return f"{text} — {'met' if ok else '**not met**'}"


def target_rows(R: dict) -> list[list[str]]:
    """§8's rows (target, goal, measured — met or **not met**), from targets.json and peft_step.json."""
    T = R["targets"]
    rows = []
    lab = T.get("labelled", {})
    for name, goal in (("default batch", 1.2), ("long prompts", 2.0)):
        d = lab.get(name)
        if not d:
            rows.append([f"sft step, labelled positions vs full logits ({name})", f"≥ {goal}×", "not measured"])
            continue
        rss = d["peak_rss_mib"]
        shape = f"{d['rows']} rows, {d['prompt_tokens']} prompt / {d['response_tokens']} response tokens"
        rows.append([f"Gemma-3-270M SFT step, labelled positions vs full logits ({name}: {shape})", f"≥ {goal}×",
                     _target(d["speedup"], d["speedup"] >= goal,
                             f"{d['speedup']:.2f}× ({d['step_s']['labelled']:.2f} s vs {d['step_s']['full']:.2f} s)")])
        rows.append([f"peak RSS, labelled vs full ({name})", "lower",
                     _target(rss["labelled"], rss["labelled"] < rss["full"],
                             f"{rss['labelled']:.0f} MiB vs {rss['full']:.0f} MiB")])
    for task, goal in (("teacher-student", 1.8), ("tweets", 1.6)):
        d = T.get("workers", {}).get(task)
        rows.append([f"2 sweep workers vs 1, trials per minute ({task})", f"≥ {goal}×",
                     "not measured" if not d else _target(d["ratio"], d["ratio"] >= goal, f"{d['ratio']:.2f}× "
                     f"({d['trials']} trials of {d['steps']} steps)")])
    for task in ("tweets", "sft-gemma"):
        d = T.get("eval_share", {}).get(task)
        rows.append([f"held-out evaluation's share of a default run ({task})", "≤ 10%",
                     "not measured" if not d else _target(d["share"], d["share"] <= 0.10,
                     f"{100 * d['share']:.1f}% ({d['default_evals']} evaluations of {d['eval_s']:.1f} s, "
                     f"{d['default_steps']} steps of {d['step_s']:.2f} s)")])
    P = R.get("peft_step")
    for r in (P or {}).get("rows", []):
        rows.append([f"loralpha step / plain PEFT step ({r['task']}, CPU)", "1.00 ± 0.05",
                     _target(r["ratio"], abs(r["ratio"] - 1) <= 0.05, f"{r['ratio']:.3f}")])
    return rows


def targets(R: dict, folder: Path) -> list[str]:
    out = ["## 8. Speed targets", "", *command("device.targets", folder, R), "```",
           "python -m bench.suite.peft_step   # plain-PEFT step parity (section 5)",
           "python -m bench.device.gpu_check --prepare   # then on a GPU machine: see the script's docstring",
           "```", ""]
    if "targets" not in R:
        return out + missing("device.targets")
    T = R["targets"]
    rows = target_rows(R)
    G = R.get("gpu_check")
    gpu = ("The GPU check has not run: no GPU machine has been at hand (it would write gpu_check.json into "
           "bench/results/)." if not G else
           f"GPU check on {G.get('gpu', {}).get('name', G['device'])}: {G['total_s'] / 60:.1f} min; see "
           f"`{rel(folder, 'gpu_check')}`.")
    why = []
    for task, d in T.get("workers", {}).items():  # one worker already runs torch on every core
        one = d["by_workers"]["1"]["wall_s"] / d["trials"]
        each = d["by_workers"]["2"]["wall_s"] * 2 / d["trials"]
        why.append(f"{task}, a trial takes {one:.1f} s alone on both cores and {each:.1f} s on 1 thread beside "
                   f"another ({each / one:.2f}× as long)")
    note = ("Why the workers fall short: one worker already trains on both cores (torch's own threads), and "
            "2 workers gain 2 ÷ (a 1-thread trial's time ÷ a 2-thread trial's time); on " + "; on ".join(why)
            + ". 1.8× would need a trial on one thread to take at most 1.11× as long as on two.") if why else ""
    out += ["Ratios are measured side by side in one run (interleaved where one process can do both), medians. "
            "The eval share is read off a short run's measured step and evaluation times, for a default run (200 "
            "steps, evaluations at 0, 50, …, 200).", "",
            "| target | goal | measured |", "| --- | --- | --- |"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return out + ["", note, "", gpu, "", stamp(T, folder, "targets"), ""]


def header(R: dict, folder: Path, summary: list[str]) -> list[str]:
    any_m = next((d["machine"] for d in R.values() if "machine" in d), {})
    out = ["# Benchmarks", "",
           "The figures behind loralpha's claims, each from a script in `bench/` and its JSON in `bench/results/` "
           "(with the machine and the load average). This file is generated by `python -m bench.render.benchmarks` "
           "from those files; edit the scripts, not the numbers.", "",
           "```", "make bench          # = bench/run_all: every script in full, then python -m bench.render.benchmarks",
           "```", ""]
    ra = R.get("run_all")
    if ra and "total_s" not in ra:
        out += ["A full run is in progress or was interrupted: sections without a result file are not measured yet. "
                + ra.get("note", ""), ""]
    elif ra and ra.get("subset"):
        out += [f"Last run: only {ra['subset']} ({ra.get('started')} → {ra.get('finished')}, "
                f"{ra['total_s'] / 60:.0f} min); every other section comes from an earlier partial run and gives its "
                "own date and load average. No complete `make bench` run has been timed end to end. "
                + ra.get("note", ""), ""]
    elif ra:
        codes = ra.get("exit_codes", {})
        failed = "; failed: " + ", ".join(k for k, v in codes.items() if v) if any(codes.values()) else ""
        out += [f"Last full run: {ra.get('started')} → {ra.get('finished')}, **{ra['total_s'] / 60:.0f} min** wall "
                f"({'; '.join(f'{s} {t / 60:.1f} min' for s, t in ra['scripts'].items())}"
                f"{failed}). "
                + ra.get("note", ""), ""]
    loads = [d["machine"]["load_average"][0] for d in R.values() if d.get("machine", {}).get("load_average")]
    cores = any_m.get("cores") or 0
    if loads and max(loads) > cores + 1:
        busy = (f"The machine was shared with other jobs during some of these runs (1-minute load average up to "
                f"{max(loads):.1f} on {cores} cores; each section gives its own): absolute times are noisy.")
    elif loads:
        busy = (f"1-minute load average at the end of each script: {min(loads):.1f}–{max(loads):.1f} on {cores} "
                "cores (a sweep's own 2 workers make about 2).")
    else:
        busy = ""
    out += [f"Machine: {cores or '?'} CPU cores ({any_m.get('cpu', '?')}), no GPU, torch "
            f"{any_m.get('torch', '?')}, transformers {any_m.get('transformers', '?')}, peft {any_m.get('peft', '?')}. "
            + busy + " Only ratios measured in the same run, interleaved, are comparable across machines.", ""]
    return out + summary


def render(folder: Path) -> str:
    R = load(folder)
    lines = header(R, folder, summary(R, target_rows(R) if "targets" in R else None))
    for section in (quality, convergence, search, law, overheads, memory, decisive, criteria, targets, calibration,
                    frontier):
        lines += section(R, folder)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    Path(args.out).write_text(render(Path(args.results)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""What each rendered block of README.md and docs/*.md says, from the stored result files it reads
(bench/results/*.json, written by the bench scripts; docs/results/**, written by the commands shown beside each
block); bench/render/docs.py puts the blocks in place."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench.common import RESULTS, ROOT
from bench.examples import rl_arith as rl_bench
from bench.frontier.tables import calibrator_block, plane_block
from bench.frontier.tables import readme_block as frontier_block
from bench.render import v1
from bench.render.markdown import load, span, table
from loralpha import scaling
from loralpha.reporting import fmt
from loralpha.reporting.document import fmt_lr
from loralpha.tasks import TASKS

DOCS = ROOT / "docs" / "results"


# ------------------------------------------------------------------ README


def rules() -> str:
    """The rule table, from the rule table itself (loralpha.scaling.RULES) and the task registry."""
    described = {"coef": f"c = {scaling.PAPER_COEF:g}, `--coef`", "alpha": f"α = {scaling.DEFAULT_ALPHA:g}, `--alpha`"}
    rows = []
    for name, rule in scaling.RULES.items():
        if rule.trains_full_weights:
            formula, gamma = rule.note, "—"
        else:
            formula = rule.formula + (f" ({described[rule.parameter]})" if rule.parameter else "")
            if rule.lora_plus:
                formula += f", B's η × {scaling.LORAPLUS_RATIO:g} (`--loraplus-ratio`)"
            gamma = f"{scaling.gamma(name, 8):.3g}"
        rate = "the task's full-FT rate" if rule.full_ft_lr else fmt_lr(scaling.LORA_LR)
        rows.append([f"`{name}`", formula, gamma, rate])
    by_rate: dict[float, list[str]] = {}
    for name, facts in TASKS.items():
        by_rate.setdefault(facts.full_ft_lr, []).append(f"`{name}`")
    rates = "; ".join(f"{fmt_lr(rate)} for {', '.join(names)}" for rate, names in by_rate.items())
    return table(["rule", "lora_alpha", "γ at r=8", "default η"], rows) + (
        f"\n\nThe task's full-FT rate (`loralpha.tasks.TASKS`): {rates}.")


def demo() -> str:
    """The demo's head-to-head table and its other parts' headline figures, from docs/results/demo/report.json
    (written by `loralpha demo --out docs/results/demo`)."""
    report = load(DOCS / "demo" / "report.json")
    head, ae, sp, law = report["sections"]
    m, data = report["data"]["machine"], head["data"]
    t = head["tables"][0]
    keep = ["rule", "α", "γ = α/r", "η", "final train loss", "held-out accuracy", "steps to 2rank's final loss"]
    cols = [t["header"].index(c) for c in keep]
    rows = [[row[i] for i in cols] for row in t["rows"]]
    minutes = report["data"]["total_s"] / 60
    load_avg = (report["data"].get("finished") or {}).get("load_average")
    out = [f"On this project's {m['cores']}-core build machine ({m['date']}, CPU only"
           + (f"; 1-minute load {load_avg[0]:g} when it finished" if load_avg else "")
           + f") `loralpha demo` (what `make demo` runs) took **{minutes:.1f} min** and measured, on tweets (rank "
           f"{data['rank']}, {data['steps']} steps of batch {data['batch_size']} for every rule):", "",
           table(keep, rows), "",
           "![Train loss and held-out accuracy per step, each rule at its default η]"
           "(results/demo/head_to_head.png)", ""]
    variants = {row[0]: row for row in ae["tables"][0]["rows"]}
    header = ae["tables"][0]["header"]
    status, drift = header.index("status"), header.index("drift ratio (median)")
    alphas = sorted((int(k.split("×")[1]), row) for k, row in variants.items() if k.startswith("α"))
    etas = dict((int(k.split("×")[1]), row) for k, row in variants.items() if k.startswith("η"))
    top_k, top = alphas[-1]
    sp_rows = sp["tables"][0]["rows"]
    ratio = sp["tables"][0]["header"].index("adapter / full")
    by_rule: dict[str, list[float]] = {}
    for row in sp_rows:
        if row[ratio] != "—":
            by_rule.setdefault(row[0], []).append(float(row[ratio]))
    law_rows = law["tables"][0]["rows"]
    vs_paper = [float(row[-1]) for row in law_rows if row[-1] != "—"]
    fit = law["data"]

    def ci(iv, spec):
        return f"[{iv[0]:{spec}}, {iv[1]:{spec}}]" if iv else "(no interval)"

    eta_128 = f"; η × 128 ends `{etas[128][status]}` (the paper says it diverges)" if 128 in etas else ""
    parts = [
        [f"α × {top_k} against η × {top_k}", f"α × {top_k} ends `{top[status]}`, η × {top_k} ends "
                                              f"`{etas[top_k][status]}`{eta_128}"],
        ["median drift ratio", f"{variants['base'][drift]} at the base → {top[drift]} at α × {top_k} (the paper says "
                               "raising α does not raise it)"],
        ["λ_max in adapter space ÷ full-weight", ", ".join(f"{span(v, '.2g')} × under `{rule}`"
                                                          for rule, v in by_rule.items())],
        ["α*(r) law on teacher-student", f"p = {fit['p']:.2f} {ci(fit['p_ci'], '.2f')}, c = {fit['c']:.4g} "
                                         f"{ci(fit['c_ci'], '.4g')}: α* is {span(vs_paper, '.2g')} × the paper's "
                                         "256·√r"]]
    out += [f"Held-out split of {data['n_eval']} tweets (the majority class scores {data['majority_accuracy']:.3f}), "
            "one seed: a gap of a few points is within seed noise. The same run measured the other three parts (full "
            "report: [docs/results/demo/report.md](results/demo/report.md)):", "",
            table(["part", "measured"], parts)]
    return "\n".join(out)


def bench_headline() -> str:
    """docs/reproduce.md's word on `make bench`: its wall time and two headline figures, from bench/results
    (run_all.json, quality.json, convergence.json)."""
    R = {name: load(RESULTS / f"{name}.json") for name in ("quality", "convergence", "run_all")}
    bbc = R["quality"]["tasks"]["bbc-news"]["rows"]
    acc = {r["rule"]: r["accuracy"]["mean"] for r in bbc if r["tuned"]}
    untuned = next(r["accuracy"]["mean"] for r in bbc if not r["tuned"])
    T = R["convergence"]["tasks"]["teacher-student"]
    conv = next(r for r in T["by_lr"] if math.isclose(r["lr"], T["full_ft_lr"], rel_tol=1e-3))["rules"]
    minutes = R["run_all"]["total_s"] / 60
    return (f"Its last full run took {minutes:.0f} min on {R['run_all']['machine']['cores']} cores from scratch. "
            "Once every baseline gets its own learning rate from a log grid, bbc-news accuracy is "
            f"{untuned:.2f} for untuned LoRA-α, {acc['2rank']:.2f} for `2rank` and {acc['full']:.2f} for full "
            f"fine-tuning (3 seeds). At the small full-fine-tuning η (η = {fmt_lr(T['full_ft_lr'])}) LoRA-α reaches "
            f"`2rank`'s final loss on teacher-student in {conv['lora-alpha']['steps']} steps where `2rank` needs "
            f"{conv['2rank']['steps']} (of {T['steps']}).")


def spectrum_line() -> str:
    """λ_max ratios and optimization gaps at init, from docs/results/spectrum-teacher-student/spectrum.json."""
    results = load(DOCS / "spectrum-teacher-student" / "spectrum.json")["results"]
    by = {rule: [r for r in results if r["rule"] == rule] for rule in ("2rank", "lora-alpha")}
    ranks = sorted({r["rank"] for r in results})
    gap = {rule: [r["full"]["step_gap"]["gap"] for r in rows] for rule, rows in by.items()}
    lr = {rule: rows[0]["lr"] for rule, rows in by.items()}
    ratio = {rule: span([r["suppression"] for r in rows], ".2g") for rule, rows in by.items()}
    return (f"On teacher-student at init, λ_max in adapter space is {ratio['2rank']} × the full-weight one with "
            f"α = 2r and {ratio['lora-alpha']} × with LoRA-α; the full-weight gap is {span(gap['2rank'], '.0f')} × "
            f"for `2rank` at η = {fmt_lr(lr['2rank'])} and "
            f"{span(gap['lora-alpha'], '.0f')} × for `lora-alpha` at η = {fmt_lr(lr['lora-alpha'])} (ranks "
            f"{ranks[0]}–{ranks[-1]}; table and command in "
            "[docs/findings.md](findings.md#2-spectral-suppression-and-the-optimization-gap)).")


def law_line() -> str:
    """α* per rank and the fitted law, from docs/results/sweep-*/fit.json."""
    ts = load(DOCS / "sweep-teacher-student-alpha" / "fit.json")
    f = ts["fit"]
    stars = [o for o in ts["optima"] if o["x_star"] is not None]
    best_fixed = min((m for m in f["models"] if m["name"] != "free"), key=lambda m: m["loo_rmse"])
    tweets = {metric: load(DOCS / f"sweep-tweets-alpha-{metric}" / "fit.json") for metric in ("eval_loss", "accuracy")}
    t_stars = [o["x_star"] for d in tweets.values() for o in d["optima"] if o["x_star"] is not None]
    found = ", ".join(f"{o['x_star']:.0f}" for o in stars)
    at = ", ".join(str(o["rank"]) for o in stars)
    return (f"`loralpha fit … --metric rel_mse` found α* = {found} at r = {at}, i.e. "
            f"**α* = {f['c']:.0f}·r^{f['p']:.2f}** (c in "
            f"[{f['c_ci'][0]:.0f}, {f['c_ci'][1]:.0f}], p in [{f['p_ci'][0]:.2f}, {f['p_ci'][1]:.2f}]); of the fixed "
            f"exponents {best_fixed['note'].removeprefix('∝ ')} predicts held-out ranks best. The paper's 256·√r is "
            f"{span([o['ratio_to_paper'] for o in stars], '.2g')}× below α* on this task. A small `tweets` sweep (one "
            f"seed, 60 steps) puts α* at {min(t_stars) / 1e3:.1f}k–{max(t_stars) / 1e3:.1f}k, also far above α = r, "
            f"with p = {tweets['eval_loss']['fit']['p']:.2f} by held-out loss and "
            f"{tweets['accuracy']['fit']['p']:.2f} by accuracy.")


def sft_gemma() -> str:
    """README's LLM run, from bench/results/sft_gemma.json (python -m bench.examples.sft_gemma)."""
    r = load(RESULTS / "sft_gemma.json")
    m = r["machine"]
    evals = r["evals"]
    out = [f"That command with `--eval-every 10` (`python -m bench.examples.sft_gemma`; {m['date']}, "
           f"{m['cores']} cores, 1-minute load {m['load_average'][0]:g} at the end):", "",
           table(["step", *[str(e["step"]) for e in evals]],
                 [["held-out loss", *[f"{e['eval_loss']:.3f}" for e in evals]],
                  ["perplexity", *[f"{e['perplexity']:.2f}" for e in evals]]]), ""]
    out.append(f"Wall time {r['wall_time_s']:.0f} s for {r['steps']} steps of {TASKS['sft-gemma'].batch_size} × ≤ "
               f"{r['task_info']['max_length']} tokens and "
               f"{len(evals)} held-out evaluations ({r['task_info']['n_eval']} records each); loading the converted "
               f"model took {r['load_s']:.1f} s"
               + (f", the one-off conversion {r['convert_s']:.0f} s." if r.get("convert_s") else "."))
    if r.get("step_s"):  # one step's forward + backward on one batch, both losses side by side
        s = r["step_s"]
        out.append(f"One training step (forward + backward, median of 3, alternating on the same batch) took "
                   f"{s['labelled']:.2f} s with the loss from labelled positions only and {s['full']:.2f} s with the "
                   f"full logits ({s['full'] / s['labelled']:.2f}×).")
    return "\n".join(out)


def clip_digits() -> str:
    """README's contrastive measurement, from docs/results/clip-digits/clip_digits.json
    (bench/examples/clip_digits.py)."""
    d = load(DOCS / "clip-digits" / "clip_digits.json")
    s = d["summary"]
    runs = {(r["rule"], r["seed"]): r for r in d["runs"] if r["status"] == "done"}
    lr = {r["rule"]: r["lr"] for r in d["runs"]}

    def acc(rule: str) -> str:
        z = s[rule]["zero_shot_accuracy"]
        return f"{z['mean']:.3f} ± {z['std']:.3f}"

    lead = [(runs[("2rank", k)]["final"]["zero_shot_accuracy"] - runs[("lora-alpha", k)]["final"]["zero_shot_accuracy"])
            for k in d["seeds"] if ("2rank", k) in runs and ("lora-alpha", k) in runs]
    drift = max(abs(r["last_fifth_eval_loss_change"]) for r in runs.values()
                if r["last_fifth_eval_loss_change"] is not None)
    recall = [s[rule]["recall_at_1"]["mean"] for rule in d["rules"]]
    who = ("2rank led lora-alpha" if all(x > 0 for x in lead) else "lora-alpha led 2rank" if all(x < 0 for x in lead)
           else "2rank − lora-alpha")
    return (f"Measured (`python -m bench.examples.clip_digits`: rank 8, {d['steps']} steps of "
            f"{TASKS['clip-digits'].batch_size}, {len(d['seeds'])} seeds; {d['machine']['date']}; "
            "[the figures](results/clip-digits/clip_digits.json)): "
            f"held-out zero-shot accuracy {s['base']['zero_shot_accuracy']['mean']:.2f} untouched, then "
            + ", ".join(f"{acc(rule)} for `{rule}` ({fmt_lr(lr[rule])})" for rule in d["rules"])
            + f"; recall@1 {span(recall, '.2f')} for all {len(d['rules'])}. The held-out loss had flattened (it moved "
            f"under {drift:.1%} over the last fifth of every run). Per seed, {who} by "
            f"{span([abs(x) for x in lead], '.3f')} zero-shot accuracy"
            + (": within a seed's spread, but every time." if who != "2rank − lora-alpha" else "."))


def rl_arith() -> str:
    """README's GRPO comparison, from docs/results/rl-arith/ (python -m bench.examples.rl_arith): the base accuracy
    and each finished run (rule × seed) at its budget."""
    folder = DOCS / "rl-arith"
    base = load(folder / "base.json")
    runs = sorted((load(p) for p in folder.glob("*-s*-*steps.json")), key=lambda r: (r["steps"], r["seed"], r["rule"]))
    out = [f"Before any training the embedded Gemma-3-270M gets {base['accuracy']:.1%} of the {base['n_eval']} "
           f"held-out problems right with greedy decoding ({base['mean_reward']:.1%} of its samples at temperature 1; "
           f"`python -m bench.examples.rl_arith --only base`)."]
    if not runs:
        return " ".join(out + [f"The comparison of rules (`python -m bench.examples.rl_arith --only runs`: "
                               f"{', '.join(rl_bench.RULES)} at {rl_bench.STEPS} GRPO steps, seeds "
                               f"{', '.join(map(str, rl_bench.SEEDS))}) has no finished run yet."])
    rows = []
    for r in runs:
        before, after = r["before"] or {}, r["after"] or {}
        m = r["machine"]
        rows.append([f"`{r['rule']}`", fmt_lr(r["lr"]), str(r["seed"]), str(r["steps"]),
                     f"{before.get('accuracy', float('nan')):.3f} → {after.get('accuracy', float('nan')):.3f}",
                     f"{after.get('format_rate', float('nan')):.3f}", f"{after.get('mean_reward', float('nan')):.3f}",
                     f"{r['train_reward_last10']:.3f}",
                     f"{r['train_time_s'] / max(r['steps'] - (r.get('resumed_from') or 0), 1):.1f}",
                     f"{r['wall_time_s'] / 60:.0f}" + (f" (steps {r['resumed_from']}–{r['steps']}: resumed)"
                                                       if r.get("resumed_from") else ""),
                     f"{m['load_average'][0]:g}"])
    planned = len(rl_bench.RULES) * len(rl_bench.SEEDS)
    acc = {(r["rule"], r["seed"]): (r["after"] or {}).get("accuracy") for r in runs if r["status"] == "done"}
    means = []
    for rule in rl_bench.RULES:
        got = [acc[(rule, k)] for k in rl_bench.SEEDS if acc.get((rule, k)) is not None]
        if len(got) == len(rl_bench.SEEDS):
            means.append(f"`{rule}` {sum(got) / len(got):.3f}")
    subject = rl_bench.RULES[0]
    gaps = [f"`{rule}`: " + ", ".join(f"{acc[(subject, k)] - acc[(rule, k)]:+.3f}" for k in rl_bench.SEEDS)
            for rule in rl_bench.RULES[1:] if all(acc.get((x, k)) is not None for x in (subject, rule)
                                                  for k in rl_bench.SEEDS)]
    out.append(f"{len(runs)} of {planned} planned runs done "
               "(`python -m bench.examples.rl_arith --only runs`, rank 8, each rule at its default η; a rerun "
               "continues a stopped run from its checkpoint):")
    after = []
    if means:
        after.append(f"Held-out accuracy after the run, mean over seeds {', '.join(map(str, rl_bench.SEEDS))}: "
                     + ", ".join(means) + ".")
    if gaps:
        after.append(f"Paired by seed ({', '.join(map(str, rl_bench.SEEDS))}: the same training problems), `{subject}` "
                     "minus " + "; minus ".join(gaps) + f" (one held-out set of {base['n_eval']} problems: "
                     f"{1 / base['n_eval']:.3f} is one problem).")
    return "\n".join([" ".join(out), "", table(["rule", "η", "seed", "steps", "held-out accuracy (before → after)",
                                                 "format rate", "sampled reward", "train reward (last 10 steps)",
                                                 "s / step", "wall (min)", "1-min load"], rows)]
                     + ([""] + [" ".join(after)] if after else []))


# ------------------------------------------------------------------ docs/findings.md


def alpha_vs_eta() -> str:
    rows = []
    for r in load(RESULTS / "alpha_vs_eta.json")["rows"]:
        status = r["status"] + (f" at step {r['diverged_at']}" if r["status"] == "diverged" else "")
        rows.append([r["variant"], f"{r['alpha']:g}", f"{r['lr']:g}", status, fmt(r["final_loss"]),
                     fmt(r["rel_mse"]), fmt(r["drift_ratio"]), fmt(r["bilinear_ratio"])])
    return table(["variant", "α", "η", "status", "final loss", "held-out rel. MSE", "drift ratio (median)",
                  "bilinear ratio (median)"], rows)


def spectrum_table(name: str) -> Callable[[], str]:
    def render() -> str:
        rows = []
        for r in load(DOCS / name / "spectrum.json")["results"]:
            rows.append([r["rule"], str(r["rank"]), fmt(r["gamma"], ".3g"), fmt(r.get("lr"), ".2g"),
                         fmt(r["adapter"]["eigenvalues"][0]), fmt(r["full"]["eigenvalues"][0]),
                         fmt(r["suppression"], ".3g"), fmt(r["adapter"].get("step_gap", {}).get("gap"), ".3g"),
                         fmt(r["full"].get("step_gap", {}).get("gap"), ".3g")])
        return table(["rule", "r", "γ", "η", "λ_max adapter", "λ_max full", "adapter / full", "gap adapter",
                      "gap full"], rows)
    return render


def equivalence() -> str:
    E = load(RESULTS / "equivalence.json")
    rows = [[f"{r['eps']:g}", f"{r['weight_decay']:g}", f"{r['relative_difference']:.2e}"] for r in E["rows"]]
    return table(["Adam ε", "weight decay", "‖W_a − W_b‖ / ‖ΔW_b‖"], rows)


def tracker() -> str:
    T = load(RESULTS / "tracker_overhead.json")
    m = T["machine"]
    rows = [[k + (" (the default of `--track signal-drift`)" if k == "10" else ""), f"{100 * v:.1f}%"]
            for k, v in T["overhead"].items()]
    return (f"plain step {T['plain_step_s']:.3f} s, tracked step {T['tracked_step_s']:.3f} s ({m['date'][:10]}, "
            f"within `make bench`, 1-minute load about {m['load_average'][0]:.0f}).\n"
            "The cost of tracking every k steps:\n\n" + table(["interval k", "overhead"], rows))


def _at(optimum: dict[str, Any], alpha: float) -> float | None:
    """The metric at α exactly, when α is a grid point of this rank (None when it is not on the grid)."""
    hit = [g["mean"] for g in optimum["grid"] if math.isclose(g["x"], alpha, rel_tol=1e-6)]
    return hit[0] if hit else None


def law_teacher_student() -> str:
    ts = load(DOCS / "sweep-teacher-student-alpha" / "fit.json")
    cal = load(DOCS / "calibrate-teacher-student" / "calibrate.json")
    by_rank = {a["rank"]: a["alpha"] for a in cal["alphas"]}
    c = cal["coef"]
    rows = []
    for o in ts["optima"]:
        r, star = o["rank"], o["x_star"]
        at_r = _at(o, float(r))
        paper = scaling.lora_alpha("lora-alpha", r)
        rows.append([str(r), f"{star:.0f}", f"{o['best_metric']:.3f}",
                     f"{at_r:.3f}" if at_r is not None else "not on the grid", f"{paper:.0f}", f"{star / paper:.2f}",
                     f"{by_rank[r]:.0f}", f"{star / by_rank[r]:.2f}"])
    f = ts["fit"]
    loo = {m["name"]: m["loo_rmse"] for m in f["models"]}
    on_grid = [(o["rank"], _at(o, float(o["rank"]))) for o in ts["optima"]]
    at_r = "; ".join(f"{v:.3f} at r = {r}" for r, v in on_grid if v is not None)
    off = [str(r) for r, v in on_grid if v is None]
    best = [o["best_metric"] for o in ts["optima"]]
    return (table(["rank", "α*", "best rel. MSE", "at α = r", "256·√r", "α* / 256·√r", f"calibrated {c:g}·√r",
                   "α* / calibrated"], rows)
            + f"\n\nFit α* = c·r^p: **c = {f['c']:.0f} [{f['c_ci'][0]:.0f}, {f['c_ci'][1]:.0f}], p = {f['p']:.2f} "
              f"[{f['p_ci'][0]:.2f}, {f['p_ci'][1]:.2f}]** (95% bootstrap over seeds). Leave-one-rank-out RMSE of "
              f"log α*: p = 0: {loo['p=0']:.2f}, p = ½: {loo['p=0.5']:.2f}, p = 1: {loo['p=1']:.2f}, free p: "
              f"{loo['free']:.2f}.\n\nAt α = r (γ = 1) the rel. MSE is {at_r}, against {span(best, '.2f')} at α*"
            + (f" (α = r is no grid point at r = {', '.join(off)})." if off else "."))


def law_tweets() -> str:
    fits = {m: load(DOCS / f"sweep-tweets-alpha-{m}" / "fit.json") for m in ("eval_loss", "accuracy")}
    cal = load(DOCS / "calibrate-tweets" / "calibrate.json")
    calibrated = {a["rank"]: a["alpha"] for a in cal["alphas"]}
    acc = {o["rank"]: o for o in fits["accuracy"]["optima"]}
    rows = []
    for o in fits["eval_loss"]["optima"]:
        r, a = o["rank"], acc[o["rank"]]
        at_r = _at(a, float(r))
        rows.append([str(r), f"{o['x_star']:.0f}", f"{a['x_star']:.0f} ({a['best_metric']:.3f})",
                     f"{at_r:.3f}" if at_r is not None else "not on the grid",
                     f"{scaling.lora_alpha('lora-alpha', r):.0f}", f"{calibrated[r]:.0f}",
                     f"{calibrated[r] / o['x_star']:.2f}, {calibrated[r] / a['x_star']:.2f}"])
    return table(["rank", "α* by eval loss", "α* by accuracy (best acc.)", "accuracy at α = r", "256·√r",
                  f"calibrated {cal['coef']:g}·√r", "calibrated / α* (by eval loss, by accuracy)"], rows)


def bench_costs() -> str:
    """docs/reproduce.md's table: what each `make bench*` target cost when it last ran, from bench/results
    (run_all.json, decisive.json, calibration.json, frontier.json)."""
    rows = []
    ra = RESULTS / "run_all.json"
    if ra.is_file():
        r = load(ra)
        rows.append(["`make bench`", "`bench/run_all`: the scripts of §1–§6 and of docs/findings.md in full, then "
                     "BENCHMARKS.md", f"{r['total_s'] / 60:.0f} min wall ({r['started']} → {r['finished']}, "
                     f"{r['machine']['cores']} cores)"])
    dec = RESULTS / "decisive.json"
    if dec.is_file():
        tasks = load(dec)["tasks"]
        rows.append(["`make bench-decisive`", "the decisive tables' missing trials (§7), then the docs", "; ".join(
            f"{name} {t['compute_s'] / 3600:.1f} h ({t['trials_done']} of {t['trials_wanted']} trials, "
            f"{', '.join(t['devices'])})" for name, t in tasks.items()) + " of trial wall time"])
    cal = RESULTS / "calibration.json"
    if cal.is_file():
        tables = load(cal)["tables"]
        trial = {name: t["median_trial_s"] for name, t in (load(dec)["tasks"] if dec.is_file() else {}).items()}
        rows.append(["`make bench-calibration`", "a calibration per complete decisive table, then its setting with "
                     "3 seeds (§9)", "; ".join(
                         f"{name}: probes {t['calibration']['wall_time_s'] / 60:.0f} min"
                         + (f", then 3 seeded runs (a trial of that decisive table: median "
                            f"{trial[t['decisive']] / 60:.0f} min)" if trial.get(t["decisive"]) else "")
                         for name, t in tables.items() if t.get("calibration"))])
    front = RESULTS / "frontier.json"
    if front.is_file():
        tasks = load(front)["tasks"]
        rows.append(["`make bench-frontier`", "the tuning frontier's missing trials (§10: recipes, η sweeps, "
                     "calibrations), then its tables and the docs", "; ".join(
                         f"{name} {t['trial_hours']:.1f} h ({t['trials']['done']} of {t['trials']['planned']} "
                         "trials)" for name, t in tasks.items()) + " of trial wall time"])
    if not rows:
        return "No benchmark has stored a result yet."
    return table(["command", "what it runs", "what it cost when it last ran"], rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "rules": rules, "demo": demo, "bench-headline": bench_headline, "spectrum-line": spectrum_line,
    "law-line": law_line, "sft-gemma": sft_gemma, "clip-digits": clip_digits, "rl-arith": rl_arith,
    "alpha-vs-eta": alpha_vs_eta,
    "spectrum-teacher-student": spectrum_table("spectrum-teacher-student"),
    "spectrum-tweets": spectrum_table("spectrum-tweets"), "equivalence": equivalence, "tracker": tracker,
    "law-teacher-student": law_teacher_student, "law-tweets": law_tweets, "decisive": v1.decisive,
    "results": v1.results, "bench-costs": bench_costs, "calibration-headline": v1.calibration_headline,
    "decisive-findings": v1.decisive, "frontier": frontier_block, "calibrator-frontier": calibrator_block,
    "frontier-plane": plane_block,
}

"""BENCHMARKS.md §10, the tuning frontier under protocol v2: the protocol as the code fixes it, then per task its
completeness, budget test and one table (each method's tuning cost in target runs and its paired test gap to the
oracle), and its figure; rendered from bench/results/frontier.json (python -m bench.frontier.analysis)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import ROOT, missing, stamp
from bench.frontier import plan as P
from bench.frontier.figures import path_of
from loralpha.scaling import adam_plane
from loralpha.studies.records import is_higher_better


def bare(metric: str) -> str:
    return metric.removeprefix("test:")


def gap(v: dict | None) -> str:
    """A paired difference with its 95% interval and its verdict word."""
    if not v or v.get("mean") is None:
        return "—"
    lo, hi = v["ci95"] or (None, None)
    span = f" [{lo:+.3g}, {hi:+.3g}]" if lo is not None else " (one seed)"
    return f"{v['mean']:+.3g}{span} {v['verdict']}"


def value(d: dict | None) -> str:
    if not d:
        return "—"
    return f"{d['mean']:.4g}" + (f" [{d['lo']:.4g}, {d['hi']:.4g}]" if d.get("lo") is not None else "")


def cost(r: dict) -> str:
    if r["cost_runs"] is None:
        return r.get("state") or "—"
    return "0" if r["kind"] == "recipe" else f"{r['cost_runs']:.3g}"


def protocol() -> list[str]:
    return [
        "Protocol v2, fixed in `bench/frontier/plan.py` and the task specs `bench/frontier/specs/*.yaml` before "
        "each task's first trial:", "",
        "- splits: train; validation (the task's held-out split), which alone chooses; test (examples set apart "
        "from the training ones), which alone reports;",
        f"- η is chosen at seed {P.CHOOSE_SEED} on validation `{P.CHOOSE}` at the end of the run; every reported "
        f"row is seeds {', '.join(map(str, P.REPORT_SEEDS))} on test, paired by seed;",
        "- a sweep starts at its rule's usual η with its two half-decade neighbours and grows until its best point "
        "has a worse one on both sides (a diverged point is worse); its cost is the runs it trained;",
        f"- the oracle is the best of the bracketed {', '.join(P.ORACLE_RULES)} sweeps on validation; "
        f"`{P.REFERENCE}` is tuned the same way and stands beside it;",
        f"- the budget test: the best-tuned baseline's validation `{P.CHOOSE}`, averaged over its seeds, improves by "
        f"less than {P.PLATEAU:.0%} from the ¾ mark to the end (both are evaluation steps; nothing is interpolated);",
        "- words: \"ties\" when the paired 90% interval lies inside ±δ (δ declared in the spec), \"better\" / "
        "\"worse\" when the paired 95% interval excludes 0, else \"undecided\"; each names its metric.", ""]


def claim_said(t: dict[str, Any]) -> str | None:
    """The paper's claim 1 under v2 on a task (its recipe against each tuned rule, on test, by each reported
    metric): 'does not: by rel_mse, worse than 6 of 6 tuned rules; largest gap vs rank: +0.163 [...] worse; …'."""
    said = (t.get("claims") or {}).get("untuned")
    if not said:
        return None
    parts = []
    for m, c in said.items():
        words = list(c["words"].values())
        tally = ", ".join(f"{w} than {words.count(w)}" if w in ("better", "worse") else f"{w} {words.count(w)}"
                          for w in ("worse", "better", "ties", "undecided") if w in words)
        parts.append(f"{c['verdict']}: by {bare(m)}, {tally} of {len(words)} tuned rules; largest gap vs "
                     f"{c['largest']['rule']}: {gap(c['largest'])}")
    return "v2, test, seeds 1–3: " + "; ".join(parts)


DECISIVE = ROOT / "bench" / "results" / "decisive.json"  # protocol v1's tables, with bbc-news's measured trials
RL_ARITH = ROOT / "docs" / "results" / "rl-arith"  # the README example's 100-step GRPO runs, with their wall times
TRIALS_PER_TASK = 60  # about what a task's frontier takes: 6 sweeps, their seeds, 6 recipes × 3, the calibrations


def not_planned() -> list[str]:
    """What the frontier has not run and what it would cost: bbc-news, from its protocol v1 trials, and rl-arith,
    from the README example's measured runs."""
    out = []
    v1 = (json.loads(DECISIVE.read_text())["tasks"] if DECISIVE.is_file() else {}).get("bbc-news")
    if v1 and v1.get("median_trial_s"):
        trial, b = v1["median_trial_s"] / 60, v1["budget_nearest"]
        out += [f"Not run yet: bbc-news, next in the issue's order. Under protocol v1 its {v1['steps']}-step trials "
                f"took a median {trial:.0f} min and failed the budget test ({v1['best_baseline']}, "
                f"{v1['budget_means']['n']} seed: {b['gain']:.1%} better from step {b['from_step']} to "
                f"{b['to_step']}), so its frontier needs a longer budget: even at {v1['steps']} steps about "
                f"{TRIALS_PER_TASK} trials would take about {TRIALS_PER_TASK * trial / 60:.0f} trial-hours.", ""]
    walls = [json.loads(p.read_text())["wall_time_s"] for p in sorted(RL_ARITH.glob("*-100steps.json"))]
    if walls:
        trial = sum(walls) / len(walls) / 60
        out += [f"Not planned: rl-arith (GRPO) has no test split yet, and a 100-step trial took {trial:.0f} min on "
                f"this machine ({len(walls)} runs of the README's example), so about {TRIALS_PER_TASK} trials would "
                f"take about {TRIALS_PER_TASK * trial / 60:.0f} trial-hours, {TRIALS_PER_TASK * trial / 120:.0f} h "
                "on 2 cores.", ""]
    return out


def calibrator_lines(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """Under a task's table, on its declared metric: the calibrator against each zero-cost recipe (paired by seed),
    and per probe budget which parts of the calibrator issue's bar hold (`plan.calibrator_meets`)."""
    calibrated = [r for r in rows if r.get("vs_recipes")]
    if not calibrated:
        return []
    names = list(calibrated[0]["vs_recipes"])
    out = ["", f"The calibrator against each zero-cost recipe: calibrated − recipe, test {bare(metric)}, paired by "
               "seed:", "", "| probes | " + " | ".join(names) + " |",
           "| --- | " + " | ".join("---" for _ in names) + " |"]
    out += [f"| {r['cost_runs']:.3g} runs | " + " | ".join(gap(r["vs_recipes"][n][metric]) for n in names) + " |"
            for r in calibrated]
    for r in (r for r in calibrated if r.get("meets")):
        j, n = r["meets"], sum(r["meets"]["recipes"].values())
        parts = [f"ties the oracle within δ: {'yes' if j['ties_oracle'] else 'no'}",
                 f"below every one-rule sweep at no more cost: {'yes' if j['below_every_sweep'] else 'no'}",
                 "against the recipes: " + ", ".join(f"{w} {k}" for w, k in j["recipes"].items() if k) + f" of {n}"]
        out += ["", f"{r['method']}, by {bare(metric)}: {'; '.join(parts)} — "
                    f"{'meets' if j['meets'] else 'does not meet'} the calibrator's bar (`plan.calibrator_meets`)."]
    return out


def task_section(t: dict[str, Any]) -> list[str]:
    name, metrics = t["task"], t["metrics"]
    done, planned = t["trials"]["done"], t["trials"]["planned"]
    state = "complete" if t["complete"] else f"running: {done} of {planned} planned trials so far"
    b = t["budget"]
    budget = ("not read yet" if b.get("holds") is None else
              f"{'holds' if b['holds'] else '**fails**'} ({b['group'].removeprefix('rule=')}: {b['improvement']:.2%} "
              f"better from step {b['mark']} to {b['steps']}, mean of {b['seeds']} seed{'s' * (b['seeds'] > 1)})"
              + ("" if t["complete"] else ", provisional: the best-tuned baseline may change as the sweeps grow"))
    if b.get("holds") is False and (delta := t["margin"].get(f"test:{P.CHOOSE}")) is not None:
        budget += (f"; in absolute terms validation {P.CHOOSE} went from {b['at_mark']:.3g} to {b['at_end']:.3g}, a "
                   f"change of {abs(b['at_mark'] - b['at_end']):.2g} against the task's δ of {delta:g}")
    share = t.get("eval_share")
    out = [f"### {name} ({t['steps']} steps; {state})", "",
           f"Budget test: {budget}. Oracle: "
           f"{(t['oracle'] or '').removeprefix('rule=') or 'not known until every LoRA sweep is bracketed'}. "
           f"Trial hours so far: {t['trial_hours']:.1f}"
           + (f"; evaluation took at most {share['max']:.1%} of a finished trial's wall time (median "
              f"{share['median']:.1%})." if share else "."), "",
           "| method | cost (runs) | η | " + " | ".join(f"test {bare(m)}" for m in metrics) + " | "
           + " | ".join(f"gap to oracle, {bare(m)} (δ {t['margin'].get(m, '—'):g})" for m in metrics) + " |",
           "| --- | --- | --- | " + " | ".join("---" for _ in metrics * 2) + " |"]
    for r in t["rows"]:
        lr = "—" if r.get("lr") is None else f"{r['lr']:.3g}"
        mine = t["oracle"] is not None and r["kind"] == "sweep" and f"rule={r['rule']}" == t["oracle"]
        out.append(f"| {r['method']} | {cost(r)} | {lr} | " + " | ".join(value(r["test"][m]) for m in metrics)
                   + " | " + " | ".join("the oracle's own" if mine else gap(r["gap"][m]) for m in metrics) + " |")
    out += calibrator_lines(t["rows"], metrics[0])
    if name in P.CALIBRATOR_HELD_OUT and any(r["kind"] == "calibrator" for r in t["rows"]):
        out += ["", f"{name}: {P.CALIBRATOR_HELD_OUT[name]}."]
    if said := claim_said(t):
        out += ["", f"The paper's claim that LoRA-α at the full-FT η, untuned, ties or beats each tuned baseline "
                    f"(its recipe − each tuned rule): {said}."]
    for e in t.get("earlier_calibrations", []):  # a method changed after its calibrations of this task existed
        before = "; ".join(f"{runs} run{'s' * (float(runs) > 1)}: {state}" for runs, state in e["states"].items())
        out += ["", f"Changed after the records existed: the calibrator's method ({e['commit']}: {e['change']}). "
                    f"Before, by the earlier method (`{e['folder']}/`): {before}. After: the calibrate rows above."]
    figure = path_of(t["task"])
    if figure.is_file():
        out += ["", f"![{name}: tuning cost against the paired test gap to the oracle]"
                    f"({figure.relative_to(ROOT).as_posix()})"]
    return out + [""]


def frontier(R: dict, folder: Path) -> list[str]:
    out = ["## 10. The tuning frontier (protocol v2)", "",
           "Which α and η to pick when you will not tune, and what tuning buys: each method's cost in target runs "
           "against its paired test gap to the oracle.", "", *protocol()]
    if "frontier" not in R:
        return out + missing("frontier.analysis")
    for t in R["frontier"]["tasks"].values():
        out += task_section(t)
    return out + not_planned() + [stamp(R["frontier"], folder, "frontier"), ""]


def summary_lines(R: dict) -> list[str]:
    """The Summary's line on §10: each task's state, and where complete its oracle and best recipe."""
    parts = []
    for t in R["frontier"]["tasks"].values():
        if not t["complete"]:
            parts.append(f"{t['task']} running ({t['trials']['done']} of {t['trials']['planned']} planned trials)")
            continue
        metric = t["metrics"][0]
        recipes = [r for r in t["rows"] if r["kind"] == "recipe" and (r["gap"][metric] or {}).get("mean") is not None]
        best = min(recipes, key=lambda r: abs(r["gap"][metric]["mean"])) if recipes else None
        parts.append(f"{t['task']} complete: oracle {t['oracle'].removeprefix('rule=')}"
                     + (f", closest recipe {best['method']} at {gap(best['gap'][metric])} ({bare(metric)})"
                        if best else ""))
    return ["- **§10 The tuning frontier** (protocol v2): " + ("; ".join(parts) or "no task has records yet") + "."]


def stored_tasks() -> dict[str, dict[str, Any]]:
    """The tasks of bench/results/frontier.json (none before `python -m bench.frontier.analysis` wrote it); read at
    each call, from `bench.common.RESULTS` as it is then."""
    import bench.common

    path = bench.common.RESULTS / "frontier.json"
    return json.loads(path.read_text())["tasks"] if path.is_file() else {}


def readme_block() -> str:
    """README's word on the frontier: per task, its state and, once complete, the oracle, the closest zero-cost
    recipe and the calibrator, each by its paired test gap to the oracle (BENCHMARKS.md §10 has every row)."""
    tasks = stored_tasks()
    rows = []
    for name, t in tasks.items():
        metric = t["metrics"][0]
        if not t["complete"]:
            rows.append(f"| {name} | running: {t['trials']['done']} of {t['trials']['planned']} planned trials | — | — "
                        "| — |")
            continue
        recipes = [r for r in t["rows"] if r["kind"] == "recipe" and (r["gap"][metric] or {}).get("mean") is not None]
        closest = min(recipes, key=lambda r: abs(r["gap"][metric]["mean"])) if recipes else None
        said = []
        for r in t["rows"]:
            if r["kind"] == "calibrator":
                g = r["gap"][metric]
                said.append(f"{P.budget_words(r['probe_runs'])}: "
                            + (gap(g) if g and g.get("mean") is not None else (r.get("state") or "—").split(":")[0]))
        rows.append(f"| {name} | complete | {t['oracle'].removeprefix('rule=')} | "
                    + (f"{closest['method']}: {gap(closest['gap'][metric])}" if closest else "—") + " | "
                    + ("; ".join(said) or "—") + " |")
    said = headline(tasks)
    return "\n".join([
        "Protocol v2 ([BENCHMARKS.md §10](BENCHMARKS.md#10-the-tuning-frontier-protocol-v2)): validation chooses, "
        "test reports, seeds 1–3 paired against the oracle (the best tuned LoRA setting).", "",
        "| task | state | oracle | closest zero-cost recipe (test gap) | `loralpha calibrate` (test gap) |",
        "| --- | --- | --- | --- | --- |", *rows, *([""] + [f"- {line}" for line in said] if said else [])])


DID = {"ties": "tied it", "better": "beat it", "worse": "was worse", "undecided": "was undecided"}  # a verdict, said


def headline(tasks: dict[str, dict]) -> list[str]:
    """The frontier in short sentences, over the complete tasks only, each on the task's declared metric: which
    recipes tie the oracle (use one when you will not tune) and which lose everywhere; what a one-rule η sweep
    buys and costs; what the calibrator buys at one run of probes."""
    done = {n: t for n, t in tasks.items() if t["complete"]}
    if not done:
        return []
    where = f"on {', '.join(done)} ({len(done)} of {len(set(P.ORDER) | set(tasks))} tasks complete)"

    def words(kind: str, match=lambda r: True) -> dict[str, dict[str, str]]:  # method -> task -> its verdict
        out: dict[str, dict[str, str]] = {}
        for n, t in done.items():
            for r in t["rows"]:
                g = (r.get("gap") or {}).get(t["metrics"][0])
                if r["kind"] == kind and match(r) and g and g.get("verdict"):
                    out.setdefault(r["method"], {})[n] = g["verdict"]
        return out

    recipes = words("recipe")
    tie = [m for m, w in recipes.items() if set(w.values()) == {"ties"} and len(w) == len(done)]
    lose = [m for m, w in recipes.items() if set(w.values()) == {"worse"} and len(w) == len(done)]
    if tie or len(done) == 1:
        lines = [f"Without tuning, {' and '.join(tie) if tie else 'no recipe'} tied the oracle {where}."]
    else:  # none everywhere: which tied it where
        some = {m: [n for n, v in w.items() if v == "ties"] for m, w in recipes.items()}
        lines = [f"Without tuning, no recipe tied the oracle on all {len(done)} complete tasks"
                 + "".join(f"; {m} tied it on {' and '.join(ts)}" for m, ts in some.items() if ts) + "."]
    if lose:
        lines.append(f"Worse than the oracle everywhere: {', '.join(lose)}.")
    sweeps = words("sweep", lambda r: r.get("users_sweep"))
    costs = [r["cost_runs"] for t in done.values() for r in t["rows"] if r["kind"] == "sweep" and r.get("users_sweep")]
    tied = sum(v == "ties" for w in sweeps.values() for v in w.values())
    if costs:
        lines.append(f"A one-rule η sweep ({min(costs):.3g}–{max(costs):.3g} runs) tied it in {tied} of "
                     f"{sum(len(w) for w in sweeps.values())} cases.")
    one = words("calibrator", lambda r: r["method"].startswith("loralpha calibrate (1 run"))
    cal = [r["cost_runs"] for t in done.values() for r in t["rows"]
           if r["method"].startswith("loralpha calibrate (1 run") and r["cost_runs"] is not None]
    if one:
        verdicts = [v for w in one.values() for v in w.values()]
        held = [f"{DID[w[n]]} on {n}" for w in one.values() for n in w if n in P.CALIBRATOR_HELD_OUT]
        lines.append(f"`loralpha calibrate` at one run of probes ({max(cal):.2g} runs spent) tied it in "
                     f"{verdicts.count('ties')} of {len(verdicts)}"
                     + (f"; held out from its design, it {' and '.join(held)}." if held else "."))
    return lines


def against_recipes(r: dict, metric: str) -> str:
    """A calibration against the zero-cost recipes, paired by seed on `metric`: how many it beats, ties, is
    undecided against and loses to, and the recipe it does worst against, with that gap ("—" before its seeds)."""
    versus = {n: v[metric] for n, v in (r.get("vs_recipes") or {}).items() if v[metric].get("mean") is not None}
    if not versus:
        return "—"
    sign = -1 if is_higher_better(metric) else 1  # calibrated − recipe: its worst is the most positive loss gap
    worst = max(versus, key=lambda n: sign * versus[n]["mean"])
    words = [v["verdict"] for v in versus.values()]
    counts = ", ".join(f"{w} {words.count(w)}" for w in ("better", "ties", "undecided", "worse") if w in words)
    return f"{counts}; worst: {worst} {gap(versus[worst])}"


def calibrator_block() -> str:
    """docs/calibrate.md's word on the calibrator under protocol v2: per task with calibrations, each probe budget's
    cost in target runs, its chosen point, its paired test gap to the oracle, and how it fares against the zero-cost
    recipes (by the task's declared metric), from bench/results/frontier.json."""
    tasks = stored_tasks()
    rows = []
    for task, t in tasks.items():
        metric = t["metrics"][0]
        name = f"{task} (held out)" if task in P.CALIBRATOR_HELD_OUT else task
        for r in t["rows"]:
            if r["kind"] != "calibrator":
                continue
            budget = f"{P.budget_words(r['probe_runs'])} of probes"
            if r["cost_runs"] is None:
                rows.append(f"| {name} | {budget} | {(r.get('state') or '—').split(':')[0]} | — | — | — |")
                continue
            rows.append(f"| {name} | {budget} | {r['cost_runs']:.2g} | c = {r['coef']:.4g}, η = {r['lr']:.3g} | "
                        f"{bare(metric)} {gap(r['gap'][metric])} | {against_recipes(r, metric)} |")
    if not rows:
        return "No frontier task has been calibrated yet (`make bench-frontier`)."
    return "\n".join([
        "Under protocol v2 ([BENCHMARKS.md §10](../BENCHMARKS.md#10-the-tuning-frontier-protocol-v2)): the probes "
        "read training batches only, validation chose every other method's η, and the point trains at seeds 1–3, "
        "reported on test and paired by seed (each task's declared metric):", "",
        "| task | probe budget | runs spent | chosen point | gap to the oracle | against the six recipes (its worst) |",
        "| --- | --- | --- | --- | --- | --- |", *rows,
        *[f"\n{task}: {P.CALIBRATOR_HELD_OUT[task]}." for task in tasks if task in P.CALIBRATOR_HELD_OUT
          and any(r["kind"] == "calibrator" for r in tasks[task]["rows"])]])


def ratio(values: list[float]) -> str:
    """largest ÷ smallest, to two figures ("2.2", "32", "100")."""
    k = max(values) / min(values)
    return f"{k:.2g}" if k < 100 else f"{k:.0f}"


def plane_block() -> str:
    """docs/findings.md's test of "α, not η, is the lever" on the frontier: per complete task, each tuned LoRA rule's
    optimum (η chosen on validation) as its point (η_A, γ·η_B) of the Adam plane, with its test value, and how far
    the optima spread along each axis. A rule moves along a ray of the plane as η changes; if only γ·η_B mattered,
    every ray's optimum would share it, and η_A would spread by the rays' slopes."""
    tasks = stored_tasks()
    rows, spreads = [], []
    for name, t in tasks.items():
        if not t["complete"]:
            continue
        metric, rank = t["metrics"][0], P.spec(name).fixed["rank"]
        points = [(r, *adam_plane(r["rule"], rank, r["lr"])) for r in t["rows"]
                  if r["kind"] == "sweep" and r["rule"] in P.ORACLE_RULES and r.get("lr") is not None]
        for r, x, y in points:
            oracle = " (oracle)" if f"rule={r['rule']}" == t["oracle"] else ""
            rows.append(f"| {name} | {r['rule']}{oracle} | {x:.2g} | {y:.2g} | "
                        f"{bare(metric)} {value(r['test'][metric])} |")
        xs, ys = [x for _, x, _ in points], [y for _, _, y in points]
        if xs:
            spreads.append(f"{name}: γ·η_B ×{ratio(ys)}, η_A ×{ratio(xs)}")
    if not rows:
        return "No frontier task is complete yet (`make bench-frontier`)."
    return "\n".join([
        "Each tuned LoRA rule's optimum on the frontier ([BENCHMARKS.md §10](../BENCHMARKS.md#10-the-tuning-frontier-"
        "protocol-v2): η chosen on validation at seed 0, test at seeds 1–3) as its point of the plane:", "",
        "| task | rule | η_A | γ·η_B | test, mean [95%] |", "| --- | --- | --- | --- | --- |", *rows, "",
        "How far the rules' optima spread (largest ÷ smallest): " + "; ".join(spreads) + "."])

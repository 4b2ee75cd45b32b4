"""What the frontier's records say (BENCHMARKS.md §10), from the committed records alone: per task, every method's
tuning cost in target runs and its paired test gap to the oracle, with the verdict words of protocol v2; the budget
test; how complete the task is; the trial hours spent.

    python -m bench.frontier.analysis        # writes bench/results/frontier.json and each task's figure
"""

from __future__ import annotations

import math
from typing import Any

from bench.common import save
from bench.decisive.analysis import claim_word
from bench.frontier import plan as P
from bench.frontier.figures import draw
from loralpha.studies import bracket
from loralpha.studies.protocol import interval, verdict
from loralpha.studies.records import is_higher_better, metric_value
from loralpha.sweep import trial_id


def _value(rec: dict[str, Any] | None, metric: str) -> float | None:
    if not rec or rec["status"] != "done":
        return None
    v = metric_value(rec, metric)
    return v if v is not None and math.isfinite(v) else None


def _row(name: str, kind: str, cost: float | None, seeds: dict[str, dict[int, float | None]], **more: Any) -> dict:
    return {"method": name, "kind": kind, "cost_runs": cost, "seeds": seeds,
            "test": {m: interval(v.values()) for m, v in seeds.items()}, **more}


def untuned_v2(paper: dict, tuned: list[dict], metric: str, margin: float | None) -> dict[str, Any]:
    """The paper's claim 1 (LoRA-α at c = 256 and the full-FT η, untuned, ties or beats each tuned baseline) on
    test by `metric`: the paper's recipe − each tuned rule, paired over the reporting seeds, its v2 word, and the
    claim's word by §7's rule (`claim_word`)."""
    higher = is_higher_better(metric)
    pairs = [(r["rule"], verdict(paper["seeds"][metric], r["seeds"][metric], metric, higher, margin))
             for r in tuned]
    words = [p["verdict"] for _, p in pairs]
    sign = -1 if higher else 1
    rule, worst = max(pairs, key=lambda rp: sign * rp[1]["mean"] if rp[1]["mean"] is not None else -math.inf)
    return {"verdict": claim_word(words), "words": dict(zip((r for r, _ in pairs), words)),
            "largest": {"rule": rule, **worst}}


def summarize(task: str) -> dict[str, Any]:
    """The task's frontier from its records (see the module docstring)."""
    spec = P.spec(task)
    b = spec.bracket
    records = P.committed(task)
    summary = bracket.summarize(spec, records)
    groups = summary["groups"]
    by_rule = {g["values"]["rule"]: g for g in groups}
    metrics = list(b.report)
    steps = spec.fixed["steps"]

    rows = []
    for recipe in P.RECIPES:  # zero cost: the user trains once, at the recipe's setting
        seeds = {m: {s: _value(records.get(trial_id(P.recipe_config(task, recipe, s))), m) for s in P.REPORT_SEEDS}
                 for m in metrics}
        rows.append(_row(recipe.name, "recipe", 0, seeds, rule=recipe.rule, lr=recipe.eta(spec.task),
                         alpha=recipe.alpha, source=recipe.source))
    for runs in P.CALIBRATION_RUNS:  # loralpha calibrate: its probes' steps in target runs, then seeds 1–3
        found = P.calibrated(task, runs)
        name = f"loralpha calibrate ({P.budget_words(runs)} of probes)"
        if not found or "refused" in found or found.get("unknown"):
            empty = {m: {s: None for s in P.REPORT_SEEDS} for m in metrics}
            state = P.calibration_state(found, steps)
            rows.append(_row(name, "calibrator", None, empty, state=state, probe_runs=runs))
            continue
        seeds = {m: {s: _value(records.get(trial_id(P.calibration_config(task, found, s))), m)
                     for s in P.REPORT_SEEDS} for m in metrics}
        point = found["settings"]["lora-alpha"]
        rows.append(_row(name, "calibrator", found["cost_steps"] / steps, seeds, probe_runs=runs, rule="lora-alpha",
                         lr=point["lr"],
                         coef=point["coef"], state="calibrated"))
    for g in groups:  # a one-rule sweep: what it spent bracketing, and its chosen η at the reporting seeds
        rule = g["values"]["rule"]
        kind = "reference" if rule == P.REFERENCE else "sweep"
        rows.append(_row(f"{rule} η sweep", kind, P.sweep_cost(g), g["seeds"], rule=rule, lr=g["best"],
                         state=g["state"], users_sweep=rule in P.SWEEPS))
    best = P.oracle(groups)
    if best is not None:
        cost = sum(P.sweep_cost(by_rule[r]) for r in P.ORACLE_RULES)
        rows.append(_row(f"oracle ({best['values']['rule']})", "oracle", cost, best["seeds"],
                         rule=best["values"]["rule"], lr=best["best"]))
    oracle_seeds = best["seeds"] if best is not None else None
    for r in rows:  # every method against the oracle, paired by seed, on each report metric (not the oracle's own)
        own = r["kind"] == "oracle" or (r["kind"] == "sweep" and best is not None
                                        and r["rule"] == best["values"]["rule"])
        r["gap"] = {m: (verdict(r["seeds"][m], oracle_seeds[m], m, is_higher_better(m), b.margin.get(m))
                        if oracle_seeds is not None and not own else None) for m in metrics}

    recipes = [r for r in rows if r["kind"] == "recipe"]
    sweeps = [r for r in rows if r["kind"] == "sweep" and r.get("users_sweep")]
    for r in rows:  # the calibrator against each zero-cost recipe and each user's sweep, paired by seed
        if r["kind"] == "calibrator" and r["cost_runs"] is not None:
            r["vs_recipes"] = {q["method"]: {m: verdict(r["seeds"][m], q["seeds"][m], m, is_higher_better(m),
                                                        b.margin.get(m)) for m in metrics} for q in recipes}
            r["vs_sweeps"] = {q["method"]: {m: verdict(r["seeds"][m], q["seeds"][m], m, is_higher_better(m),
                                                       b.margin.get(m)) for m in metrics} for q in sweeps}
            m = metrics[0]  # the bar, on the declared metric, once the oracle is known
            if oracle_seeds is not None:
                r["meets"] = P.calibrator_meets(
                    r["gap"][m]["verdict"] == "ties",
                    [(r["cost_runs"], q["cost_runs"], r["vs_sweeps"][q["method"]][m]["verdict"]) for q in sweeps],
                    [r["vs_recipes"][q["method"]][m]["verdict"] for q in recipes])

    claims = {}
    paper = next((r for r in rows if r["method"] == P.PAPER), None)
    tuned = [r for r in rows if r["kind"] in ("sweep", "reference")]
    if paper is not None and tuned and summary["settled"]:  # claim 1 under v2: the paper's recipe, each tuned rule
        claims["untuned"] = {m: untuned_v2(paper, tuned, m, b.margin.get(m)) for m in metrics}

    judge = P.budget_group(groups)  # the budget test: the best-tuned baseline's validation curves
    curves = []
    if judge is not None:
        best_x = judge["best"]
        for rec in records.values():
            c = rec["config"]
            if c["rule"] == judge["values"]["rule"] and math.isclose(c["lr"], best_x) and rec["status"] == "done":
                curves.append({row["step"]: row[P.CHOOSE] for row in rec.get("curve", []) if P.CHOOSE in row})
    budget = P.budget_test(curves, steps, is_higher_better(P.CHOOSE)) if curves else {"holds": None}
    if judge is not None:
        budget["group"] = judge["group"]

    wanted = P.planned(task, records)
    done = [records[t.id] for t in wanted if t.id in records]
    hours = sum(r.get("wall_time_s") or 0 for r in records.values()) / 3600
    shares = sorted((r.get("eval_time_s") or 0) / r["wall_time_s"] for r in records.values()
                    if r.get("wall_time_s") and r["status"] == "done")  # a run diverged at step 3 is all evaluation
    return {"task": task, "steps": steps, "metrics": metrics, "margin": dict(b.margin), "rows": rows,
            "oracle": best["group"] if best else None, "budget": budget, "groups": groups,
            # complete: every sweep settled, every planned trial run, every calibration tried (its answer may be none)
            "complete": summary["settled"] and best is not None and len(done) == len(wanted)
            and all(P.calibrated(task, k) is not None for k in P.CALIBRATION_RUNS),
            "trials": {"done": len(done), "planned": len(wanted)}, "trial_hours": hours,
            "earlier_calibrations": P.earlier_calibrations(task), "claims": claims,
            "eval_share": {"max": shares[-1], "median": shares[len(shares) // 2]} if shares else None}


def write(tasks: tuple[str, ...] = P.ORDER, quick: bool = False) -> Any:
    """bench/results/frontier.json (results/quick/ for the smoke run), every task's frontier, and its figures."""
    summaries = {t: summarize(t) for t in tasks if P.folder(t).is_dir()}
    for name, t in summaries.items():
        draw(t, name)
    return save("frontier", {"tasks": summaries}, quick=quick)


if __name__ == "__main__":
    print(f"wrote {write()}")

"""Search cost: how many random-search trials each rule needs to get within 1% of the best result.

    python -m bench.suite.search_cost           # teacher-student (the paper's MLP), rank 8, 150 steps
                                                # (~3 min on 2 cores)
    python -m bench.suite.search_cost --quick   # a tiny MLP, 3 trials per rule: a smoke run

Random search, 12 trials per rule, seed 0, on held-out rel. MSE: η log-uniform in [5e-6, 5e-2]
(the span of quality.py's grid) for every rule, and the rule's α log-uniform in [1, 4096] where it
has one (`fixed`: α; `rslora`: α of α·√r; `loraplus`: α, B's η × 16). `lora-alpha` searches η only
at the paper's c = 256 (searching c too would make it `rslora` with α = c: the same family). Every
rule sees the same random numbers (trial i of every rule draws the same quantiles).

The best result is the lowest rel. MSE of any trial of any rule. A rule's hit rate is m/N, the
share of its trials within 1% of that best; a random search needs 1/(m/N) trials on average to
make a hit (geometric) and finds one within k trials with probability 1 − (1 − m/N)^k. With no hit
the count is reported as "> N". The same is reported against two looser targets: within 1% of the
best LoRA trial (any rule but `full`), and within 10% of the best of any trial.

Zero tuning: `lora-alpha` at η = the full-FT rate (5e-5) and c = 256, seeds 0–2: its regret is
rel. MSE / best − 1. With c from `loralpha calibrate` (rank 4, a 2000-step budget, successive
halving over c ∈ 1…4096, at the same η): the same, plus calibrate's cost in trial-equivalents
(its optimizer steps / 150).
"""

from __future__ import annotations

import math

import numpy as np

from bench.common import calibrated, mean_std, metric, quick_arg, save, sweep
from loralpha import TrainConfig
from loralpha.reporting import fmt
from loralpha.scaling import trains_full_weights

TASK, RANK, METRIC, TOL = "teacher-student", 8, "rel_mse", 0.01
LR_RANGE, ALPHA_RANGE = (5e-6, 5e-2), (1.0, 4096.0)
RULES = ["lora-alpha", "fixed", "rank", "2rank", "rslora", "loraplus", "full"]
HAS_ALPHA = {"fixed", "rslora", "loraplus"}


def setting(quick: bool) -> dict:
    if quick:
        return dict(steps=12, batch_size=32, task_options={"width": 32, "depth": 2, "n_eval": 64}, n=3,
                    rules=["lora-alpha", "fixed", "full"], calibrate=dict(rank=2, budget_steps=30,
                                                                          coefs=[16.0, 256.0, 4096.0]))
    return dict(steps=150, batch_size=None, task_options={}, n=12, rules=RULES,
                calibrate=dict(rank=4, budget_steps=2000))


def _log_uniform(u: float, lo: float, hi: float) -> float:
    return float(f"{math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))):.4g}")


def config(s: dict, rule: str, lr: float, seed: int = 0, **extra) -> TrainConfig:
    return TrainConfig(task=TASK, rule=rule, rank=RANK, lr=lr, steps=s["steps"], batch_size=s["batch_size"],
                       seed=seed, eval_every=s["steps"], task_options=dict(s["task_options"]), **extra)


def _hits(vals: list, target: float) -> dict:
    hits = sum(v is not None and v <= target for v in vals)
    p = hits / len(vals)
    return {"hits": hits, "trials": len(vals), "expected_trials": (1 / p) if p else None}


def run(quick: bool) -> dict:
    s = setting(quick)
    u = np.random.default_rng(0).random((s["n"], 2))
    plan = []
    for rule in s["rules"]:
        for i in range(s["n"]):
            lr = _log_uniform(u[i, 0], *LR_RANGE)
            extra = {"alpha": _log_uniform(u[i, 1], *ALPHA_RANGE)} if rule in HAS_ALPHA else {}
            plan.append((rule, lr, extra))
    full_ft = 5e-5
    cal = calibrated(quick, TASK, **s["calibrate"], batch_size=s["batch_size"], task_options=dict(s["task_options"]))
    zero = [config(s, "lora-alpha", full_ft, seed) for seed in (0, 1, 2)]
    tuned_c = [config(s, "lora-alpha", full_ft, seed, coef=float(cal["coef"])) for seed in (0, 1, 2)]
    configs = [config(s, rule, lr, 0, **extra) for rule, lr, extra in plan] + zero + tuned_c
    recs = sweep("search-cost", configs, quick)
    search, rest = recs[:len(plan)], recs[len(plan):]
    values = [metric(r, METRIC) for r in search]
    best_i = min((i for i, v in enumerate(values) if v is not None), key=lambda i: values[i])
    best = values[best_i]
    lora = [i for i, (rule, _, _) in enumerate(plan) if not trains_full_weights(rule) and values[i] is not None]
    best_lora = min(values[i] for i in lora) if lora else None
    targets = {"any_1pct": best * (1 + TOL), "lora_1pct": best_lora * (1 + TOL) if best_lora else None,
               "any_10pct": best * 1.10}
    rows = []
    for rule in s["rules"]:
        idx = [i for i, (r, _, _) in enumerate(plan) if r == rule]
        vals = [values[i] for i in idx]
        hits = sum(v is not None and v <= best * (1 + TOL) for v in vals)
        p = hits / len(idx)
        finite = [v for v in vals if v is not None]
        rows.append({"rule": rule, "searched": "η, α" if rule in HAS_ALPHA else "η", "trials": len(idx), "hits": hits,
                     "expected_trials": (1 / p) if p else None, "p_within_8": 1 - (1 - p) ** 8,
                     "best": min(finite) if finite else None,
                     "regret_of_rule_best": (min(finite) / best - 1) if finite else None,
                     "diverged": sum(search[i]["status"] == "diverged" for i in idx),
                     "targets": {name: _hits(vals, t) for name, t in targets.items() if t is not None},
                     "trials_detail": [{"lr": plan[i][1], **plan[i][2], "status": search[i]["status"],
                                        METRIC: values[i]} for i in idx]})
        print(f"{rule}: {hits}/{len(idx)} within 1% → expected trials {fmt(rows[-1]['expected_trials'], '.3g')}, "
              f"best {fmt(rows[-1]['best'])}", flush=True)
    zero_vals = [metric(r, METRIC) for r in rest[:3]]
    cal_vals = [metric(r, METRIC) for r in rest[3:]]
    zm, zs, _ = mean_std(zero_vals)
    cm, cs, _ = mean_std(cal_vals)
    zero_tuning = {
        "paper_c": {"coef": 256.0, "lr": full_ft, "values": zero_vals, "mean": zm, "std": zs,
                    "regret": None if zm is None else zm / best - 1, "cost_trials": 1},
        "calibrated_c": {"coef": cal["coef"], "lr": full_ft, "values": cal_vals, "mean": cm, "std": cs,
                         "regret": None if cm is None else cm / best - 1,
                         "cost_trials": 1 + cal["cost_steps"] / s["steps"], "calibrate_steps": cal["cost_steps"],
                         "calibrate_wall_s": cal["wall_time_s"], "calibrate_rank": cal["rank"], "edge": cal["edge"]},
    }
    print(f"zero tuning: c=256 regret {fmt(zero_tuning['paper_c']['regret'], '.1%')}, calibrated c={cal['coef']:.4g} "
          f"regret {fmt(zero_tuning['calibrated_c']['regret'], '.1%')}", flush=True)
    return {"task": TASK, "rank": RANK, "metric": METRIC, "tolerance": TOL, "steps": s["steps"],
            "lr_range": LR_RANGE, "alpha_range": ALPHA_RANGE, "trials_per_rule": s["n"],
            "best": {"value": best, "rule": plan[best_i][0], "lr": plan[best_i][1], **plan[best_i][2]},
            "best_lora": best_lora, "targets": targets,
            "rows": rows, "zero_tuning": zero_tuning,
            "calibration": {k: cal[k] for k in ("coef", "grid_coef", "edge", "rank", "cost_steps", "budget_steps",
                                                "wall_time_s", "stopped")}}


def main() -> None:
    quick = quick_arg(__doc__)
    print(f"wrote {save('search_cost', run(quick), quick)}")


if __name__ == "__main__":
    main()

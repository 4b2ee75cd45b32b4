"""The law: α* = c·r^p fitted per task from the sweep tools, and `calibrate`'s c against the sweep's α*.

    python -m bench.suite.law           # the example sweeps (teacher-student, tweets) + calibrate (~11 min alone;
                                  # finished trials in studies/ are reused)
    python -m bench.suite.law --quick   # a tiny MLP sweep and calibration: a smoke run

Sweeps: examples/teacher-student-sweep.yaml (rule `fixed`, η = 5e-5, 150 steps, ranks 4–32, 9 α,
2 seeds) and examples/tweets-sweep.yaml (η = 2e-5, 60 steps of 8 tweets, ranks 2, 8, 32, 10 α, 1
seed), run with `loralpha.sweep.run_sweep` into the same stores `loralpha sweep` uses
(studies/NAME/study.db, so trials already there are not rerun), fitted with `loralpha.studies.laws.fit`
(α* per rank by the parabola in log α; 95% bootstrap intervals; fixed exponents compared by
leave-one-rank-out error). `loralpha.studies.calibrate_c.calibrate` picks c at one small rank (teacher-
student: r = 4, 2000 steps, c ∈ 1, 2, 4, …, 4096; tweets: r = 2, 300 steps of 8 tweets,
c ∈ 1, 4, 16, …, 4096, to fit the time budget); its prediction c·√r is
compared with the sweep's α* at every rank.
"""

from __future__ import annotations

import math

from bench.common import ROOT, bench_parser, calibrated, save, work_dir
from loralpha.studies.laws import fit
from loralpha.sweep import Store, load, parse, run_sweep

FULL = [
    {"task": "teacher-student", "spec": "examples/teacher-student-sweep.yaml", "metrics": ["rel_mse", "final_loss"],
     "calibrate": dict(rank=4, budget_steps=2000, batch_size=None, task_options={})},  # = search_cost.py's
    {"task": "tweets", "spec": "examples/tweets-sweep.yaml", "metrics": ["eval_loss", "accuracy"],
     "calibrate": dict(rank=2, budget_steps=300, coefs=[4.0 ** k for k in range(7)], batch_size=8,
                       task_options={"n_eval": 50})},
]
QUICK_SPEC = {"study": "law-quick", "task": "teacher-student", "metric": "rel_mse",
              "fixed": {"rule": "fixed", "lr": 5e-4, "steps": 12, "batch_size": 32, "eval_every": 12,
                        "task_options": {"width": 32, "depth": 2, "n_eval": 64}},
              "grid": {"rank": [2, 4, 8], "alpha": {"log": [4, 4096], "num": 6}, "seed": [0, 1]}}
QUICK = [{"task": "teacher-student", "spec": QUICK_SPEC, "metrics": ["rel_mse"],
          "calibrate": dict(rank=2, budget_steps=30, coefs=[16.0, 256.0, 4096.0], batch_size=32, lr=5e-4,
                            task_options={"width": 32, "depth": 2, "n_eval": 64})}]


def run_one(item: dict, quick: bool, workers: int) -> dict:
    if quick:
        spec = parse(item["spec"])
        store = work_dir("law", quick) / "study.db"
    else:
        spec = load(ROOT / item["spec"])
        store = ROOT / "studies" / spec.name / "study.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    counts = run_sweep(spec, store, workers=workers, progress=False)
    ids = {t.id for t in spec.trials()}
    with Store(store) as s:
        records = [r for r in s.records() if r["id"] in ids]
    compute_s = sum(r["wall_time_s"] or 0 for r in records)
    cal = calibrated(quick, item["task"], wait=False, **item["calibrate"])  # None: another process is computing it
    fits = {}
    for name in item["metrics"]:
        study = fit(records, metric=name, source=str(store))
        d = study.to_dict()
        for row in d["optima"]:
            row["calibrated"] = cal["coef"] * math.sqrt(float(row["rank"])) if cal else None
            row["ratio_to_calibrated"] = (row["x_star"] / row["calibrated"]) if (cal and row.get("x_star")) else None
        fits[name] = d
        law = d["fit"]
        print(f"{item['task']} {name}: " + (f"c = {law['c']:.4g} {law['c_ci']}, p = {law['p']:.3g} {law['p_ci']}, "
                                            f"best model {law['best_model']}" if law else f"no law: {d['reason']}"),
              flush=True)
    return {"task": item["task"], "spec": item["spec"] if not quick else "inline (quick)", "store": str(store),
            "trials": counts, "trial_compute_s": compute_s, "fits": fits,
            "calibration": {k: cal[k] for k in ("coef", "grid_coef", "refined", "edge", "bound", "rank", "lr",
                                                 "cost_steps", "budget_steps", "wall_time_s", "stopped", "rounds")}
            if cal else None}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    items = QUICK if args.quick else FULL
    payload = {"tasks": {item["task"]: run_one(item, args.quick, args.workers) for item in items}}
    print(f"wrote {save('law', payload, args.quick)}")


if __name__ == "__main__":
    main()

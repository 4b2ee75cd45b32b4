"""Quality at equal budget: every rule at its best learning rate (log grid), and lora-alpha untuned.

    python -m bench.suite.quality                      # teacher-student, tweets, bbc-news (~22 min on 2 cores)
    python -m bench.suite.quality --tasks tweets       # one task
    python -m bench.suite.quality --quick              # a tiny teacher-student MLP: a smoke run

Per task: every rule at rank 8 on one log grid of η (≥ 5 values, half a decade apart, containing
the task's full-fine-tuning rate), seed 0 (where a rule's best η is at an end of the grid, its grid is
extended half a decade that way, at most twice); the best η of each rule is the grid point with the best
held-out loss (rel. MSE on teacher-student, eval cross-entropy on the text tasks) on seed 0; then
seeds 1 and 2 run at that η, and the table gives mean ± std over the 3 seeds. `lora-alpha` also
runs at its default η (the task's full-FT rate, c = 256: no tuning) on the same 3 seeds.
Rule `fixed` (α = 16) is `2rank` at rank 8 (α = 16 either way), so it is not run twice. On
bbc-news (the slowest task) only lora-alpha, 2rank and full run, on texts cut to 64 tokens, to fit
the time budget.
Trials go through `loralpha.sweep` (store: bench/work/), so a rerun skips finished trials.
"""

from __future__ import annotations

import math

from bench.common import by_task, mean_std, metric, save, sweep, task_args
from loralpha import TrainConfig
from loralpha.reporting import fmt
from loralpha.studies.records import effective_lr, is_higher_better

RULES = ["lora-alpha", "rank", "2rank", "rslora", "loraplus", "full"]
SEEDS = [0, 1, 2]
RANK = 8
EXTEND = 2  # half-decade steps a rule's η grid may grow by where its best η is at an end


def _grid(center: float, lo: int, hi: int) -> list[float]:
    return [float(f"{center * 10 ** (k / 2):.6g}") for k in range(lo, hi + 1)]


# per task: steps, batch size, task options, η grid, selection metric, reported metric
SETTINGS = {
    "teacher-student": dict(steps=150, batch_size=None, task_options={}, grid=_grid(5e-5, -2, 4),
                            select="rel_mse", report="rel_mse"),
    "tweets": dict(steps=60, batch_size=8, task_options={"n_eval": 200}, grid=_grid(2e-5, -1, 3),
                   select="eval_loss", report="accuracy"),
    "bbc-news": dict(steps=40, batch_size=8, task_options={"n_eval": 200, "max_length": 64}, grid=_grid(2e-5, -1, 3),
                     select="eval_loss", report="accuracy", rules=["lora-alpha", "2rank", "full"]),
}
QUICK = {"teacher-student": dict(steps=12, batch_size=32, task_options={"width": 32, "depth": 2, "n_eval": 64},
                                 grid=_grid(5e-5, -1, 3), select="rel_mse", report="rel_mse")}
QUICK_RULES = ["lora-alpha", "2rank", "full"]


def settings(task: str, quick: bool) -> dict:
    return (QUICK if quick else SETTINGS)[task]


def rules(quick: bool, task: str | None = None) -> list[str]:
    if quick:
        return QUICK_RULES
    return SETTINGS.get(task, {}).get("rules", RULES)


def config(task: str, rule: str, lr: float | None, seed: int, quick: bool) -> TrainConfig:
    s = settings(task, quick)
    return TrainConfig(task=task, rule=rule, rank=RANK, lr=lr, steps=s["steps"], batch_size=s["batch_size"],
                       seed=seed, eval_every=s["steps"], task_options=dict(s["task_options"]))


def _cost(rec: dict, name: str) -> float:
    v = metric(rec, name)
    if v is None:
        return math.inf
    return -v if is_higher_better(name) else v


def grid_records(task: str, quick: bool) -> dict[str, dict[float, dict]]:
    """Seed 0 of every rule at every grid η: rule -> η -> record (runs what is missing). Where a rule's best η
    is at an end of the grid, its grid is extended half a decade that way, up to EXTEND times."""
    s = settings(task, quick)
    pairs = [(rule, lr) for rule in rules(quick, task) for lr in s["grid"]]
    recs = sweep(f"quality-{task}", [config(task, rule, lr, 0, quick) for rule, lr in pairs], quick)
    out: dict[str, dict[float, dict]] = {}
    for (rule, lr), rec in zip(pairs, recs):
        out.setdefault(rule, {})[lr] = rec
    for _ in range(EXTEND):
        more = []
        for rule, by_lr in out.items():
            lrs = sorted(by_lr)
            costs = [_cost(by_lr[x], s["select"]) for x in lrs]
            if all(math.isinf(c) for c in costs):
                continue
            i = min(range(len(lrs)), key=lambda k: (costs[k], k))
            if i == len(lrs) - 1:
                more.append((rule, float(f"{lrs[-1] * 10 ** 0.5:.6g}")))
            elif i == 0:
                more.append((rule, float(f"{lrs[0] / 10 ** 0.5:.6g}")))
        if not more:
            break
        recs = sweep(f"quality-{task}", [config(task, rule, lr, 0, quick) for rule, lr in more], quick)
        for (rule, lr), rec in zip(more, recs):
            out[rule][lr] = rec
    return out


def run_task(task: str, quick: bool) -> dict:
    s = settings(task, quick)
    grid = grid_records(task, quick)
    best = {}
    for rule, by_lr in grid.items():
        lrs = sorted(by_lr)
        lr = min(lrs, key=lambda x: (_cost(by_lr[x], s["select"]), x))
        best[rule] = {"lr": lr, "edge": lr in (lrs[0], lrs[-1]), "lrs": lrs,
                      "all_diverged": all(math.isinf(_cost(r, s["select"])) for r in by_lr.values())}
    default_lr = effective_lr({"task": task, "rule": "lora-alpha"})
    wanted = [(rule, best[rule]["lr"]) for rule in grid] + [("lora-alpha (default η)", default_lr)]
    configs = [config(task, rule.split(" ")[0], lr, seed, quick) for rule, lr in wanted for seed in SEEDS]
    recs = sweep(f"quality-{task}", configs, quick)
    rows = []
    for i, (rule, lr) in enumerate(wanted):
        trio = recs[i * len(SEEDS):(i + 1) * len(SEEDS)]
        row = {"rule": rule, "lr": lr, "tuned": rule in grid, "seeds": SEEDS,
               "lrs_tried": best.get(rule, {}).get("lrs"), "statuses": [r["status"] for r in trio],
               "edge": best.get(rule, {}).get("edge"), "wall_time_s": [r["wall_time_s"] for r in trio]}
        for name in dict.fromkeys(["final_loss", s["select"], s["report"], "accuracy", "macro_f1", "rel_mse"]):
            values = [metric(r, name) for r in trio]
            if any(v is not None for v in values):
                m, sd, n = mean_std(values)
                row[name] = {"mean": m, "std": sd, "n": n, "values": values}
        rows.append(row)
        print(f"{task} | {rule} | η {lr:g} | loss {fmt(row.get('final_loss', {}).get('mean'))} | "
              f"{s['report']} {fmt(row.get(s['report'], {}).get('mean'))}", flush=True)
    curves = {rule: {f"{lr:g}": {"status": r["status"], "final_loss": r["final_loss"],
                                 s["select"]: metric(r, s["select"]), s["report"]: metric(r, s["report"])}
                     for lr, r in by_lr.items()} for rule, by_lr in grid.items()}
    return {"task": task, "rank": RANK, "steps": s["steps"], "batch_size": s["batch_size"],
            "task_options": s["task_options"], "lr_grid": s["grid"], "select": s["select"], "report": s["report"],
            "default_lr": default_lr, "rows": rows, "grid": curves}


def main() -> None:
    quick, tasks = task_args(__doc__)
    payload = {"rules": rules(quick), "seeds": SEEDS, "tasks": by_task("quality", tasks, run_task, quick)}
    print(f"wrote {save('quality', payload, quick)}")


if __name__ == "__main__":
    main()

"""Convergence speed: steps each rule needs to reach the `2rank` baseline's final loss at the same η.

    python -m bench.suite.convergence            # from quality.py's seed-0 grid runs (runs what is missing)
    python -m bench.suite.convergence --quick    # the tiny teacher-student grid of quality.py --quick

For each task and each η of quality.py's grid (seed 0, rank 8, same steps and batches), the
target is the final loss of `2rank` at that η (the mean train loss of its last 10 steps); a
rule reaches it at the first step s ≥ 10 where the mean of its train losses over steps s-9..s is
≤ the target. The ratio is steps(rule) / steps(full) at the same η ("—" when a rule, or full,
never gets there within the budget; then the bound is given). `start` is 2rank's mean loss over its
first 10 steps: where start and target are close (a short, noisy run), the step counts mostly
measure noise.
"""

from __future__ import annotations

from bench.common import by_task, losses, save, task_args
from bench.suite import quality

WINDOW = 10


def steps_to(curve: list[float], target: float) -> int | None:
    for s in range(WINDOW, len(curve) + 1):
        if sum(curve[s - WINDOW:s]) / WINDOW <= target:
            return s
    return None


def run_task(task: str, quick: bool) -> dict:
    grid = quality.grid_records(task, quick)
    s = quality.settings(task, quick)
    out = []
    for lr in s["grid"]:
        base = grid["2rank"][lr]
        if base["status"] != "done":
            out.append({"lr": lr, "target": None, "note": f"2rank {base['status']} at this η"})
            continue
        target = base["final_loss"]
        base_curve = losses(base)
        start = sum(base_curve[:WINDOW]) / WINDOW if len(base_curve) >= WINDOW else None
        reached = {}
        for rule, by_lr in grid.items():
            rec = by_lr[lr]
            curve = losses(rec) if rec["status"] == "done" else []
            reached[rule] = {"status": rec["status"], "steps": steps_to(curve, target) if curve else None}
        full = reached.get("full", {}).get("steps")
        for _rule, r in reached.items():
            r["ratio_to_full"] = r["steps"] / full if (r["steps"] and full) else None
            r["ratio_to_2rank"] = r["steps"] / reached["2rank"]["steps"] if r["steps"] else None
        out.append({"lr": lr, "target": target, "start": start, "rules": reached})
        print(f"{task} η {lr:g}: target {target:.4g}; " + ", ".join(
            f"{rule} {r['steps'] or '>' + str(s['steps'])}" for rule, r in reached.items()), flush=True)
    return {"task": task, "steps": s["steps"], "full_ft_lr": quality.effective_lr({"task": task, "rule": "full"}),
            "by_lr": out}


def main() -> None:
    quick, tasks = task_args(__doc__)
    payload = {"window": WINDOW, "rank": quality.RANK, "seed": 0,
               "tasks": by_task("convergence", tasks, run_task, quick)}
    print(f"wrote {save('convergence', payload, quick)}")


if __name__ == "__main__":
    main()

"""Cost of the Signal-Drift tracker on `tweets` (MiniLM-L6, LoRA r=8 on query/value, batch 32).

    python -m bench.suite.tracker_overhead           # 40 steps (~1 min on 2 cores)
    python -m bench.suite.tracker_overhead --quick   # teacher-student, small MLP: a smoke run

One run tracks every other step, so tracked and untracked steps alternate under the same
conditions. With t₁ and t₀ the median times of tracked and untracked steps, the overhead
of tracking every k steps is (t₁ − t₀) / (k · t₀).
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.common import quick_arg, save
from loralpha import adapters, tasks
from loralpha.adapters import AdapterSpec
from loralpha.diagnostics.signal_drift import SignalDriftTracker


def run(quick: bool) -> dict[str, object]:
    torch.manual_seed(0)
    if quick:
        task, steps = tasks.build("teacher-student", batch_size=64, width=64, depth=3, n_eval=64), 12
    else:
        task, steps = tasks.build("tweets", n_eval=10), 40
    spec = AdapterSpec(rule="lora-alpha", rank=8, targets=task.targets, heads=task.heads, task_type=task.task_type)
    model = adapters.adapt(task.model, spec)
    opt = adapters.optimizer(model, spec, lr=task.full_ft_lr, head_lr=task.head_lr)
    tracker = SignalDriftTracker(model, every=2)
    batches = iter(task.batches)
    times: dict[bool, list[float]] = {True: [], False: []}
    model.train()
    for step in range(1, steps + 1):
        batch = next(batches)
        start = time.perf_counter()
        tracker.begin(step)
        loss = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tracked = tracker.end(step) is not None
        if step > 2:  # the first steps warm caches up
            times[tracked].append(time.perf_counter() - start)
    t1, t0 = statistics.median(times[True]), statistics.median(times[False])
    overhead = {k: (t1 - t0) / (k * t0) for k in (1, 10, 100)}
    return {"task": task.name, "steps": steps, "layers": len(tracker.layers), "tracked_step_s": t1,
            "plain_step_s": t0, "overhead": overhead}


def main() -> None:
    quick = quick_arg(__doc__)
    result = run(quick)
    print(f"{result['task']}: plain step {result['plain_step_s']:.3f} s, tracked step {result['tracked_step_s']:.3f} s")
    print("| interval | overhead |\n| --- | --- |")
    for k, v in result["overhead"].items():
        print(f"| {k} | {100 * v:.1f}% |")
    print(f"wrote {save('tracker_overhead', result, quick)}")


if __name__ == "__main__":
    main()

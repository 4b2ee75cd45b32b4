"""loralpha's training step against plain PEFT with the same α: the ratio of step times.

    python -m bench.suite.peft_step           # teacher-student (paper MLP, batch 256) and tweets (batch 8), ~1 min
    python -m bench.suite.peft_step --quick   # a tiny MLP: a smoke run

Same base model (a fresh deep copy each time), same α (lora-alpha, c = 256, r = 8), same η, same
pre-built batches. "loralpha" is `loralpha.fit` (adapt, AdamW with the head group, cosine
schedule, divergence check, logging); "plain PEFT" is a hand loop: `peft.get_peft_model` with a
`LoraConfig(r, lora_alpha=α)` and `torch.optim.AdamW`, zero_grad / backward / step. The two
alternate (loralpha, plain, loralpha, …) `repeats` times; a step's time is the time between the
starts of two consecutive steps (stamped in the loss function both loops call), and the ratio is
the median step time of loralpha over that of plain PEFT, over all steps of all runs (model set-up
excluded; medians resist the load spikes of a shared machine). The losses of the two loops are
compared as a check that they compute the same thing.
"""

from __future__ import annotations

import copy
import statistics
import time

import peft
import torch

from bench.common import quick_arg, save
from loralpha import adapters, tasks
from loralpha.adapters import AdapterSpec
from loralpha.loop import FitOptions, fit


def plain(model, batches, loss, spec: AdapterSpec, lr: float, head_lr: float | None, seed: int):
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=spec.rank, lora_alpha=spec.lora_alpha(spec.rank), target_modules=list(spec.targets),
                             lora_dropout=0.0, modules_to_save=list(spec.heads) or None, task_type=spec.task_type)
    model = peft.get_peft_model(model, config)
    heads = adapters.head_parameters(model, spec) if head_lr else []
    ids = {id(p) for p in heads}
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in ids], "lr": lr}]
    if heads:
        groups.append({"params": heads, "lr": head_lr})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    model.train()
    start = time.perf_counter()
    for batch in batches:
        value = loss(model, batch)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
    return time.perf_counter() - start


def measure(task_name: str, steps: int, repeats: int, **build) -> dict:
    task = tasks.build(task_name, **build)
    it = iter(task.batches)
    batches = [next(it) for _ in range(steps)]
    spec = AdapterSpec(rule="lora-alpha", rank=8, targets=task.targets, heads=task.heads, task_type=task.task_type)
    lr = task.full_ft_lr
    times = {"loralpha": [], "plain": []}  # per run: loop time / steps
    steps_s = {"loralpha": [], "plain": []}  # every step: time between the starts of consecutive steps
    seen: dict[str, list] = {}
    stamps: dict[str, list] = {}

    def recorder(kind):
        def loss(model, batch):
            stamps[kind].append(time.perf_counter())
            value = task.loss(model, batch)
            seen[kind].append(float(value.detach()))
            return value
        return loss

    for _ in range(repeats):
        seen = {"loralpha": [], "plain": []}
        stamps = {"loralpha": [], "plain": []}
        result = fit(copy.deepcopy(task.model), batches, recorder("loralpha"), spec,
                     FitOptions(lr=lr, steps=steps, head_lr=task.head_lr, eval_every=10 ** 9))
        times["loralpha"].append(result.wall_time_s / steps)
        times["plain"].append(plain(copy.deepcopy(task.model), batches, recorder("plain"), spec, lr, task.head_lr,
                                    0) / steps)
        for kind in steps_s:
            steps_s[kind] += [b - a for a, b in zip(stamps[kind], stamps[kind][1:])]
    # fit uses a cosine schedule (η decays), the plain loop a constant η: the first step's loss must agree exactly
    first_loss_diff = abs(seen["loralpha"][0] - seen["plain"][0])
    t_l, t_p = statistics.median(steps_s["loralpha"]), statistics.median(steps_s["plain"])
    print(f"{task_name}: loralpha {t_l * 1e3:.1f} ms/step, plain PEFT {t_p * 1e3:.1f} ms/step, "
          f"ratio {t_l / t_p:.3f}", flush=True)
    return {"task": task_name, "steps": steps, "repeats": repeats, "build": build, "alpha": spec.lora_alpha(8),
            "loralpha_step_s": t_l, "plain_step_s": t_p, "ratio": t_l / t_p, "run_means": times,
            "step_samples": {k: len(v) for k, v in steps_s.items()},
            "ratio_of_run_medians": statistics.median(times["loralpha"]) / statistics.median(times["plain"]),
            "first_loss_abs_diff": first_loss_diff}


def run(quick: bool) -> dict:
    if quick:
        torch.set_num_threads(1)  # a tiny MLP: one thread avoids thread-pool stalls on a busy machine
        rows = [measure("teacher-student", 8, 2, batch_size=32, width=32, depth=2, n_eval=16)]
    else:
        rows = [measure("teacher-student", 40, 7, n_eval=16),
                measure("tweets", 10, 5, batch_size=8, n_eval=10)]
    return {"rows": rows, "threads": torch.get_num_threads()}


def main() -> None:
    quick = quick_arg(__doc__)
    print(f"wrote {save('peft_step', run(quick), quick)}")


if __name__ == "__main__":
    main()

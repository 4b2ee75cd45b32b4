"""Spectral suppression, measured: λ_max of the loss Hessian in adapter space and in
full-weight space, for several ranks and α rules, on one fixed batch of a task.

For each (rule, rank) the task's model is adapted (seeded), optionally trained for a
few steps under that rule, and then both spectra are taken at that point (see
`loralpha.hessian`). The result goes to `spectrum.json` and `spectrum.png`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from . import adapters, runs, scaling, tasks
from .adapters import AdapterSpec
from .hessian import top_eigenvalues
from .train import TrainConfig, fit


def measure(config: TrainConfig, k: int = 3, method: str = "lanczos") -> dict[str, Any]:
    """Top-k eigenvalues in both spaces for one config, after `config.steps` training steps
    (0: at initialisation, where B = 0)."""
    replace(config, steps=max(config.steps, 1)).check()  # 0 steps is allowed here: measure at init
    torch.manual_seed(config.seed)
    task = tasks.build(config.task, seed=config.seed, batch_size=config.batch_size, **config.task_options)
    spec = AdapterSpec(rule=config.rule, rank=config.rank, targets=list(config.targets or task.targets),
                       coef=config.coef, alpha=config.alpha, heads=task.heads, task_type=task.task_type)
    batches = iter(task.batches)
    probe = next(batches)  # the fixed batch the curvature is measured on
    if config.steps > 0:
        lr = config.lr if config.lr is not None else scaling.default_lr(config.rule, task.full_ft_lr)
        model = fit(task.model, batches, task.loss, spec, lr=lr, steps=config.steps, seed=config.seed,
                    head_lr=config.head_lr if config.head_lr is not None else task.head_lr).model
    else:
        torch.manual_seed(config.seed)
        model = adapters.adapt(task.model, spec)
    model.eval()  # no dropout: the loss must be one deterministic function of θ
    out: dict[str, Any] = {"task": config.task, "rule": config.rule, "rank": config.rank, "steps": config.steps,
                           "lora_alpha": spec.lora_alpha(spec.rank), "gamma": spec.lora_alpha(spec.rank) / spec.rank}
    for space in ("adapter", "full"):
        start = time.perf_counter()
        top = top_eigenvalues(model, lambda: task.loss(model, probe), space=space, k=k, method=method,
                              seed=config.seed)
        out[space] = {"eigenvalues": top["eigenvalues"], "params": top["size"], "hvp_calls": top["hvp_calls"],
                      "seconds": time.perf_counter() - start}
    full_max = out["full"]["eigenvalues"][0]
    out["suppression"] = out["adapter"]["eigenvalues"][0] / full_max if full_max != 0 else None
    return out


def sweep(base: TrainConfig, rules: list[str], ranks: list[int], out: str | Path, k: int = 3,
          method: str = "lanczos", on_result=None) -> list[dict[str, Any]]:
    """`measure` over rules × ranks; writes spectrum.json and spectrum.png into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for rule in rules:
        if rule == "full":
            continue  # no adapter space to compare
        for r in ranks:
            result = measure(replace(base, rule=rule, rank=r), k=k, method=method)
            results.append(result)
            if on_result:
                on_result(result)
            runs.write_json(out / "spectrum.json", {"config": base.__dict__, "results": results})
    plot(results, out / "spectrum.png")
    return results


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    rules = sorted({r["rule"] for r in results})
    for rule in rules:
        rows = sorted((r for r in results if r["rule"] == rule), key=lambda r: r["rank"])
        ax.plot([r["rank"] for r in rows], [r["adapter"]["eigenvalues"][0] for r in rows], "o-", label=f"adapter space, {rule}")
    full = sorted({(r["rank"], r["full"]["eigenvalues"][0]) for r in results})
    ax.plot([f[0] for f in full], [f[1] for f in full], "k--", label="full-weight space")
    ax.set_xscale("log", base=2)
    values = [r[s]["eigenvalues"][0] for r in results for s in ("adapter", "full")]
    if min(values) > 0:
        ax.set_yscale("log")
    else:  # a negative top eigenvalue (a saddle) needs a scale through zero
        ax.set_yscale("symlog", linthresh=min(abs(v) for v in values if v != 0) if any(values) else 1.0)
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("λ_max of the loss Hessian (loss units / param²)")
    first = results[0]
    ax.set_title(f"Curvature seen by LoRA: {first['task']}, after {first['steps']} steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

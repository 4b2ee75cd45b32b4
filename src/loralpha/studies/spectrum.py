"""Spectral suppression, measured: λ_max of the loss Hessian in adapter space and in
full-weight space, for several ranks and α rules, on one fixed batch of a task.

For each (rule, rank) the task's model is adapted (seeded), optionally trained for a
few steps under that rule, and then both spectra are taken at that point (see
`loralpha.diagnostics.hessian`). The result goes to `spectrum.json` and `spectrum.png`.

The optimization gap: from the same point, one AdamW step of the rule (its α, its η, a
fresh optimizer state, so the step is Adam's first, ≈ η·sign(g) per coordinate) is taken
on the probe batch and compared with the largest stable step along the top eigenvector u:

    η_eff = |⟨Δ, u⟩| / |⟨g, u⟩|        (the step the rule actually takes along u)
    gap   = (2 / λ_max) / η_eff          (> 1: the step stays that many times below the
                                           edge of stability; < 1: it overshoots along u)

in adapter space (Δ = the change of A and B, g their gradient) and in full-weight space
(Δ = the change of the merged update γ·B·A of every layer, g = ∂L/∂W, u from the full
Hessian) — the second is the criterion that matters for the function being learned.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .. import adapters, devices, runs, scaling, tasks
from ..adapters import AdapterSpec
from ..diagnostics.hessian import adapter_parameters, step_gap, top_eigenvalues
from ..diagnostics.signal_drift import lora_layers
from ..errors import UsageError
from ..loop import TrainConfig, fit


def measure(config: TrainConfig, k: int = 3, method: str = "lanczos",
            full_top: dict[str, Any] | None = None) -> dict[str, Any]:
    """Top-k eigenvalues in both spaces for one config, after `config.steps` training steps
    (0: at initialisation, where B = 0). The model and the probe batch go to `config.device`; the
    measurement is in float32 (a bfloat16 `config.dtype` is refused: its rounding would enter the curvature).

    At initialisation W0 + γ·B·A = W0 whatever the rule and rank, so the full-weight spectrum of
    the same task, seed, batch and targets is the same for every (rule, rank): pass the
    `result["full_top"]` of an earlier such measurement as `full_top` to reuse it (sweep does)."""
    checked = replace(config, steps=max(config.steps, 1)).check()  # 0 steps is allowed here: measure at init
    if checked.dtype != "float32":
        raise UsageError(f"the spectrum is measured in float32; dtype={checked.dtype!r} is not taken here")
    device = devices.resolve(checked.device)
    torch.manual_seed(config.seed)
    task = tasks.build(config.task, seed=config.seed, batch_size=config.batch_size, **config.task_options)
    spec = config.adapter_spec(task)
    options = checked.fit_options(task)
    batches = iter(task.batches)
    probe = devices.to_device(next(batches), device)  # the fixed batch the curvature is measured on
    if config.steps > 0:
        model = fit(task.model, batches, task.loss, spec, options).model  # trained on options.device
    else:
        torch.manual_seed(config.seed)
        model = adapters.adapt(task.model, spec).to(device)
    model.eval()  # no dropout: the loss must be one deterministic function of θ
    out: dict[str, Any] = {"task": config.task, "rule": config.rule, "rank": config.rank, "steps": config.steps,
                           "lora_alpha": spec.lora_alpha(spec.rank), "gamma": spec.lora_alpha(spec.rank) / spec.rank,
                           "device": str(device)}
    if full_top is not None and config.steps > 0:
        raise UsageError("full_top= can be reused only at initialisation (steps = 0)")
    tops = {}
    for space in ("adapter", "full"):
        start = time.perf_counter()
        reused = space == "full" and full_top is not None
        tops[space] = top = full_top if reused else top_eigenvalues(
            model, lambda: task.loss(model, probe), space=space, k=k, method=method, seed=config.seed)
        out[space] = {"eigenvalues": top["eigenvalues"], "params": top["size"], "reused": reused,
                      "hvp_calls": 0 if reused else top["hvp_calls"], "seconds": time.perf_counter() - start}
    out["full_top"] = tops["full"]
    steps = one_step(model, lambda: task.loss(model, probe), spec, options.lr, options.head_lr)
    out["lr"] = options.lr
    for space in ("adapter", "full"):
        out[space]["step_gap"] = step_gap(tops[space], steps[space])
    full_max = out["full"]["eigenvalues"][0]
    out["suppression"] = out["adapter"]["eigenvalues"][0] / full_max if full_max != 0 else None
    return out


def one_step(model: torch.nn.Module, loss, spec: AdapterSpec, lr: float,
             head_lr: float | None) -> dict[str, torch.Tensor]:
    """The change one fresh AdamW step of `spec`'s optimizer makes, flattened: of the adapter
    parameters (in `adapter_parameters` order) and of the merged update of every LoRA layer
    (in `full_parameters` order). The model is restored afterwards."""
    params = adapter_parameters(model)
    layers = list(lora_layers(model).values())
    before = [p.detach().clone() for p in params]
    with torch.no_grad():
        delta_before = [layer.get_delta_weight("default").detach().clone() for layer in layers]
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = adapters.optimizer(model, spec, lr, head_lr=head_lr)
    opt.zero_grad()
    loss().backward()
    opt.step()
    with torch.no_grad():
        adapter_step = torch.cat([(p - b).reshape(-1) for p, b in zip(params, before)]).double().cpu()
        full_step = torch.cat([(layer.get_delta_weight("default") - d).reshape(-1)
                               for layer, d in zip(layers, delta_before)]).double().cpu()
        for n, p in model.named_parameters():
            if n in state:
                p.copy_(state[n])
            p.grad = None
    return {"adapter": adapter_step, "full": full_step}


def sweep(base: TrainConfig, rules: list[str], ranks: list[int], out: str | Path, k: int = 3,
          method: str = "lanczos", on_result=None) -> list[dict[str, Any]]:
    """`measure` over rules × ranks; writes spectrum.json and spectrum.png into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    full_top = None  # at init the full-weight spectrum is one for every rule and rank
    for rule in rules:
        if scaling.trains_full_weights(rule):
            continue  # no adapter space to compare
        for r in ranks:
            result = measure(replace(base, rule=rule, rank=r), k=k, method=method, full_top=full_top)
            if base.steps == 0:
                full_top = result["full_top"]
            del result["full_top"]  # tensors: kept in memory only
            results.append(result)
            if on_result:
                on_result(result)
            runs.write_json(out / "spectrum.json", {"config": base.__dict__, "results": results})
    plot(results, out / "spectrum.png")
    return results


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Left: λ_max per rank in adapter space (one line per rule) and full-weight space.
    Right: the optimization gap (2/λ_max) / η_eff per rank, in full-weight space."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, gap_ax) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    rules = sorted({r["rule"] for r in results})
    for i, rule in enumerate(rules):
        rows = sorted((r for r in results if r["rule"] == rule), key=lambda r: r["rank"])
        ranks = [r["rank"] for r in rows]
        ax.plot(ranks, [r["adapter"]["eigenvalues"][0] for r in rows], "o-", color=f"C{i}",
                label=f"adapter space, {rule}")
        gaps = [(r["rank"], r["full"].get("step_gap", {}).get("gap")) for r in rows]
        gaps = [(x, g) for x, g in gaps if g is not None and g > 0 and math.isfinite(g)]
        if gaps:
            gap_ax.plot([x for x, _ in gaps], [g for _, g in gaps], "o-", color=f"C{i}",
                        label=f"{rule} (η={rows[0].get('lr', float('nan')):.2g})")
    full = sorted({(r["rank"], r["full"]["eigenvalues"][0]) for r in results})
    ax.plot([f[0] for f in full], [f[1] for f in full], "k--", label="full-weight space")
    values = [r[s]["eigenvalues"][0] for r in results for s in ("adapter", "full")]
    if min(values) > 0:
        ax.set_yscale("log")
    else:  # a negative top eigenvalue (a saddle) needs a scale through zero
        ax.set_yscale("symlog", linthresh=min(abs(v) for v in values if v != 0) if any(values) else 1.0)
    ax.set_ylabel("λ_max of the loss Hessian (loss units / param²)")
    first = results[0]
    ax.set_title(f"Curvature seen by LoRA: {first['task']}, after {first['steps']} steps", fontsize=10)
    gap_ax.axhline(1.0, color="k", lw=0.8, ls=":", label="edge of stability (gap = 1)")
    gap_ax.set_yscale("log")
    gap_ax.set_ylabel("gap (2/λ_max) / η_eff, full-weight space")
    gap_ax.set_title("How far one step stays below the stable step", fontsize=10)
    for a in (ax, gap_ax):
        a.set_xscale("log", base=2)
        a.set_xlabel("LoRA rank r")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

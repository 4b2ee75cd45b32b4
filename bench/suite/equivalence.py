"""α × k versus B's learning rate × k under AdamW: how exactly they agree, and what breaks it.

    python -m bench.suite.equivalence            # teacher-student MLP (width 64, depth 3), r = 4, k = 16, 50 steps
    python -m bench.suite.equivalence --quick    # 10 steps

Two runs from the same init on the same batches (float64): (a) γ·k with η_A = η_B = η,
(b) γ with η_B = k·η. The table gives the relative difference of the adapted weights
W = W0 + γ·B·A over the whole trajectory, ‖W_a − W_b‖ / ‖W_b − W0‖, for several ε and weight decays.
"""

from __future__ import annotations

import torch

from bench.common import quick_arg, save
from loralpha import adapters
from loralpha.adapters import AdapterSpec
from loralpha.diagnostics.signal_drift import lora_layers
from loralpha.tasks import teacher_student


def trajectory(k_gamma: float, k_b: float, eps: float, weight_decay: float, steps: int) -> torch.Tensor:
    task = teacher_student.build(width=64, depth=3, batch_size=64, n_eval=8)
    torch.manual_seed(0)
    model = adapters.adapt(task.model, AdapterSpec(rule="fixed", alpha=4.0 * k_gamma, rank=4, targets=task.targets))
    model = model.double()
    layers = list(lora_layers(model).values())
    opt = torch.optim.AdamW([{"params": [layer.lora_A["default"].weight for layer in layers], "lr": 1e-3},
                             {"params": [layer.lora_B["default"].weight for layer in layers], "lr": 1e-3 * k_b}],
                            eps=eps, weight_decay=weight_decay)
    batches = iter(task.batches)
    out = []
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad()
        task.loss(model, (x.double(), y.double())).backward()
        opt.step()
        out.append(torch.cat([layer.get_delta_weight("default").detach().reshape(-1) for layer in layers]))
    return torch.stack(out)


def run(quick: bool) -> dict[str, object]:
    k, steps = 16.0, 10 if quick else 50
    rows = []
    for eps, wd in ((1e-20, 0.0), (1e-8, 0.0), (1e-3, 0.0), (1e-20, 0.01), (1e-20, 0.1)):
        a = trajectory(k, 1.0, eps, wd, steps)
        b = trajectory(1.0, k, eps, wd, steps)
        rows.append({"eps": eps, "weight_decay": wd, "relative_difference": float((a - b).norm() / b.norm())})
    return {"k": k, "steps": steps, "rows": rows}


def main() -> None:
    quick = quick_arg(__doc__)
    result = run(quick)
    print(f"k = {result['k']:g}, {result['steps']} steps")
    print("| Adam ε | weight decay | ‖W_a − W_b‖ / ‖ΔW_b‖ |\n| --- | --- | --- |")
    for r in result["rows"]:
        print(f"| {r['eps']:g} | {r['weight_decay']:g} | {r['relative_difference']:.2e} |")
    print(f"wrote {save('equivalence', result, quick)}")


if __name__ == "__main__":
    main()

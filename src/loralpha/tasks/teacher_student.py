"""Synthetic teacher-student regression, the paper's controlled setting.

A frozen random MLP plays the pretrained model W0 (default: 5 linear layers of
width 400, ReLU between them, as in the paper's synthetic ablation). The
teacher is the same network with every weight perturbed,

    W_teacher = W0 + Δ,   ‖Δ‖_F = scale · ‖W0‖_F,

where Δ is low-rank (rank `teacher_rank`) or full-rank. The student is W0 plus
the adapter; the loss is the mean squared error to the teacher's output on
fresh Gaussian inputs x ~ N(0, I). The held-out metric `rel_mse` is the eval
MSE divided by the MSE of the untouched base (1 at the start, 0 = teacher).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from ..checks import positive_int
from ..devices import device_of
from ..errors import UsageError
from .base import Task


def mlp(width: int, depth: int, generator: torch.Generator) -> nn.Sequential:
    """`depth` bias-free linear layers fc1..fcN of `width`, ReLU between; He-scaled weights
    so activations keep unit scale through the depth."""
    layers: list[tuple[str, nn.Module]] = []
    for i in range(1, depth + 1):
        fc = nn.Linear(width, width, bias=False)
        gain = 2.0 if i < depth else 1.0
        with torch.no_grad():
            fc.weight.copy_(torch.randn(width, width, generator=generator) * (gain / width) ** 0.5)
        layers.append((f"fc{i}", fc))
        if i < depth:
            layers.append((f"act{i}", nn.ReLU()))
    return nn.Sequential(OrderedDict(layers))


def perturbation(weight: Tensor, rank: int | None, scale: float, generator: torch.Generator) -> Tensor:
    """Δ with ‖Δ‖_F = scale·‖W‖_F; rank `rank` (U·V) or full rank when rank is None."""
    d_out, d_in = weight.shape
    if rank is None:
        delta = torch.randn(d_out, d_in, generator=generator)
    else:
        delta = torch.randn(d_out, rank, generator=generator) @ torch.randn(rank, d_in, generator=generator)
    return delta * (scale * weight.norm() / delta.norm())


def build(seed: int = 0, batch_size: int = 256, width: int = 400, depth: int = 5,
          teacher: str = "low-rank", teacher_rank: int = 8, scale: float = 0.3,
          n_eval: int = 2048, base_seed: int = 0, n_test: int = 0, **unused: object) -> Task:
    """The teacher-student task; `base_seed` fixes W0, the teacher and the eval set. `n_test` > 0 adds a test
    set of its own inputs (`Task.test`), drawn after the eval set's; training inputs come from another stream,
    so no input is in two splits (coincidence has probability zero)."""
    if unused:
        raise UsageError(f"teacher-student does not take {', '.join(sorted(unused))}")
    if teacher not in ("low-rank", "full-rank"):
        raise UsageError(f"teacher must be 'low-rank' or 'full-rank', got {teacher!r}")
    width, depth = positive_int(width, "width"), positive_int(depth, "depth")
    teacher_rank = positive_int(teacher_rank, "teacher_rank")
    g = torch.Generator().manual_seed(base_seed)
    student = mlp(width, depth, g)
    teacher_net = mlp(width, depth, g)
    with torch.no_grad():
        for s, t in zip(student, teacher_net):
            if isinstance(s, nn.Linear):
                rank = teacher_rank if teacher == "low-rank" else None
                t.weight.copy_(s.weight + perturbation(s.weight, rank, scale, g))
    teacher_net.requires_grad_(False)
    x_eval = torch.randn(n_eval, width, generator=g)  # (N, width)
    with torch.no_grad():
        y_eval = teacher_net(x_eval)
        base_mse = nn.functional.mse_loss(student(x_eval), y_eval).item()
    n_test = positive_int(n_test, "n_test") if n_test else 0
    x_test = torch.randn(n_test, width, generator=g)  # (N_test, width), drawn after the eval set
    with torch.no_grad():
        y_test = teacher_net(x_test)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator().manual_seed(10_000 + seed)
        while True:
            x = torch.randn(batch_size, width, generator=gen)  # (B, width)
            with torch.no_grad():
                y = teacher_net(x)
            yield x, y  # outside no_grad: a suspended generator would hold grad mode off for the caller

    def loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    def evaluator(x: Tensor, y: Tensor) -> Callable[[nn.Module], dict[str, float]]:
        """MSE on (x, y), and relative to the untouched base's MSE on the same inputs."""
        with torch.no_grad():
            base = nn.functional.mse_loss(student(x), y).item()

        def evaluate(model: nn.Module) -> dict[str, float]:
            device = device_of(model)  # the held-out set goes where the model is
            with torch.no_grad():
                mse = nn.functional.mse_loss(model(x.to(device)), y.to(device)).item()
            return {"eval_loss": mse, "rel_mse": mse / base}

        return evaluate

    return Task(
        name="teacher-student", model=student, batches=batches(), loss=loss, evaluate=evaluator(x_eval, y_eval),
        targets=[f"fc{i}" for i in range(1, depth + 1)], test=evaluator(x_test, y_test) if n_test else None,
        info={"width": width, "depth": depth, "teacher": teacher, "teacher_rank": teacher_rank,
              "scale": scale, "n_eval": n_eval, "base_seed": base_seed, "base_eval_mse": base_mse,
              **({"n_test": n_test} if n_test else {})},
    )

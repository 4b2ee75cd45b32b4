"""Signal-Drift decomposition of LoRA updates, per adapted layer.

For one optimizer step on a layer W = W0 + γ·B·A, with A (r × d_in) and B (d_out × r)
before and A' = A + ΔA, B' = B + ΔB after, the weight update splits exactly as

    ΔW = γ(B'A' − BA) = γ(ΔB·A + B·ΔA)  +  γ·ΔB·ΔA
                        └ first order ┘     └ bilinear ┘

    bilinear drift ratio = ‖γ·ΔB·ΔA‖_F / ‖γ(ΔB·A + B·ΔA)‖_F.

Gradient view. G = ∂L/∂W is the full-weight gradient of the layer at the step,
G = Σ_n g_n x_nᵀ over the batch (x: the layer's input, g: the gradient of the loss
with respect to the layer's output), captured by hooks on the existing forward and
backward passes. With u = −G/‖G‖_F the descent direction,

    signal  s = ⟨ΔW, u⟩                        (a length, in weight units)
    drift   d = ‖ΔW − s·u‖_F                   (what the step does off the descent direction)
    drift ratio = d / |s|,    cos(ΔW, −G) = s / ‖ΔW‖_F,

and s·u + (ΔW − s·u) = ΔW exactly. Under Adam each coordinate of ΔA, ΔB moves by about
η, so the first-order part scales like γη and the bilinear one like γη²: the bilinear
ratio grows with η, not with γ.

Also logged: ‖γ·B·A‖_F, the accumulated update since the start (B starts at 0), and its
stable rank ‖M‖_F² / ‖M‖_2²; and each factor's motion since the tracker began (the start of
training): a_motion = ‖A − A₀‖_F / ‖A₀‖_F and b_norm = ‖B‖_F (B₀ = 0), which show whether a
large γ trains the update through B alone while A barely leaves its random init.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import runs
from ..checks import positive_int
from ..errors import UsageError


@dataclass
class Decomposition:
    first_order: Tensor  # γ(ΔB·A + B·ΔA), (d_out, d_in)
    bilinear: Tensor  # γ·ΔB·ΔA, (d_out, d_in)

    @property
    def delta(self) -> Tensor:
        return self.first_order + self.bilinear


def decompose(A: Tensor, B: Tensor, A_new: Tensor, B_new: Tensor, gamma: float) -> Decomposition:
    """Split γ(B'A' − BA) into its first-order and bilinear parts (exact, in float64)."""
    A, B, A_new, B_new = (t.detach().double() for t in (A, B, A_new, B_new))
    dA, dB = A_new - A, B_new - B  # (r, d_in), (d_out, r)
    return Decomposition(first_order=gamma * (dB @ A + B @ dA), bilinear=gamma * (dB @ dA))


def gradient_view(delta: Tensor, grad: Tensor) -> dict[str, Tensor | float]:
    """Signal along −G and the drift off it; `signal_part + drift_part == delta` exactly."""
    delta, grad = delta.double(), grad.double()
    g_norm = grad.norm()
    if g_norm == 0:
        return {"signal": 0.0, "drift": float(delta.norm()), "signal_part": torch.zeros_like(delta),
                "drift_part": delta, "cos": 0.0}
    u = -grad / g_norm
    s = float((delta * u).sum())
    signal_part = s * u
    drift_part = delta - signal_part
    d_norm = float(delta.norm())
    return {"signal": s, "drift": float(drift_part.norm()), "signal_part": signal_part, "drift_part": drift_part,
            "cos": s / d_norm if d_norm > 0 else 0.0}


def stable_rank(B: Tensor, A: Tensor) -> float:
    """Stable rank ‖M‖_F² / ‖M‖_2² of M = B·A (1 for rank one, up to r for a flat spectrum),
    from the r × r core: with B = Q_B·R_B and Aᵀ = Q_A·R_A, σ(B·A) = σ(R_B·R_Aᵀ)."""
    r_b = torch.linalg.qr(B.detach().double())[1]  # (r, r)
    r_a = torch.linalg.qr(A.detach().double().T)[1]  # (r, r)
    sv = torch.linalg.svdvals(r_b @ r_a.T)
    return float((sv**2).sum() / sv[0] ** 2) if sv[0] > 0 else 0.0


def layer_metrics(A: Tensor, B: Tensor, A_new: Tensor, B_new: Tensor, gamma: float,
                  grad: Tensor | None) -> dict[str, float]:
    """All per-layer numbers for one step (see the module docstring)."""
    parts = decompose(A, B, A_new, B_new, gamma)
    first, bilinear = float(parts.first_order.norm()), float(parts.bilinear.norm())
    accumulated = gamma * (B_new.detach().double() @ A_new.detach().double())
    out = {"update_norm": float(parts.delta.norm()), "first_order_norm": first, "bilinear_norm": bilinear,
           "bilinear_ratio": bilinear / first if first > 0 else math.inf,
           "accumulated_norm": float(accumulated.norm()), "accumulated_stable_rank": stable_rank(B_new, A_new)}
    if grad is not None:
        view = gradient_view(parts.delta, grad)
        s = view["signal"]
        out.update(grad_norm=float(grad.double().norm()), signal=s, drift=view["drift"], cos=view["cos"],
                   drift_ratio=view["drift"] / abs(s) if s != 0 else math.inf)
    return out


def factor_motion(A0: Tensor, A: Tensor, B: Tensor) -> dict[str, float]:
    """How far each factor has moved since A₀ (B₀ = 0): ‖A − A₀‖/‖A₀‖ and ‖B‖."""
    a0 = float(A0.double().norm())
    moved = float((A.detach().double() - A0.double()).norm())
    return {"a_motion": moved / a0 if a0 > 0 else math.inf, "b_norm": float(B.detach().double().norm())}


def lora_layers(model: nn.Module, adapter: str = "default") -> dict[str, nn.Module]:
    """The PEFT LoRA layers on nn.Linear of `model` that carry `adapter`, by module name (the metrics here
    treat a layer as a matrix W = W0 + γ·B·A; LoRA layers on convolutions are left out)."""
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules()
            if isinstance(m, LoraLayer) and adapter in getattr(m, "lora_A", {})
            and isinstance(m.get_base_layer(), nn.Linear)}


RATIOS = {"bilinear_ratio": ("bilinear_norm", "first_order_norm"), "drift_ratio": ("drift", "abs_signal")}


def aggregate(layers: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean over layers of every metric, and norm-weighted ratios (Σ numerator / Σ denominator)."""
    rows = list(layers.values())
    for row in rows:
        if "signal" in row:
            row.setdefault("abs_signal", abs(row["signal"]))
    keys = sorted(set.intersection(*(set(r) for r in rows))) if rows else []
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    weighted = {}
    for ratio, (num, den) in RATIOS.items():
        if num in keys and den in keys:
            total = sum(r[den] for r in rows)
            weighted[ratio] = sum(r[num] for r in rows) / total if total > 0 else math.inf
    return {"mean": mean, "weighted": weighted}


class SignalDriftTracker:
    """Per-layer Signal-Drift metrics every `every` optimizer steps (and at step 1).

    Call `begin(step)` before the step's forward pass and `end(step)` after the optimizer
    step. On a tracked step, `begin` snapshots A and B and hooks every LoRA layer so the
    forward pass keeps the layer input x and the backward pass gives the output gradient g;
    G = Σ gᵀx is accumulated over micro-batches (gradient accumulation sums them too).
    No extra forward or backward pass is run. Each record is appended to `path` (JSON lines) and,
    with `tensorboard` (a directory; skipped when tensorboard is not installed), written there as
    the scalars of `tensorboard_scalars`.
    """

    def __init__(self, model: nn.Module, every: int = 10, path: str | Path | None = None,
                 adapter: str = "default", tensorboard: str | Path | None = None):
        every = positive_int(every, "every")
        self.layers = lora_layers(model, adapter)
        if not self.layers:
            raise UsageError("the model has no LoRA layers to track; adapt it with a LoRA rule first")
        self.every, self.adapter = every, adapter
        self.path = Path(path) if path is not None else None
        self.writer = _tensorboard(tensorboard)
        self.records: list[dict[str, Any]] = []
        self._armed = False
        self._handles: list[Any] = []
        self._before: dict[str, tuple[Tensor, Tensor]] = {}
        self._grads: dict[str, Tensor] = {}
        self._initial_A = {name: layer.lora_A[adapter].weight.detach().clone() for name, layer in self.layers.items()}

    def tracks(self, step: int) -> bool:
        return step == 1 or step % self.every == 0

    def begin(self, step: int) -> None:
        if self._armed or not self.tracks(step):
            return
        self._armed = True
        for name, layer in self.layers.items():
            self._before[name] = (layer.lora_A[self.adapter].weight.detach().clone(),
                                  layer.lora_B[self.adapter].weight.detach().clone())
            self._grads[name] = torch.zeros_like(layer.base_layer.weight, dtype=torch.float64)
            self._handles.append(layer.register_forward_hook(self._capture(name)))

    def _capture(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if not (torch.is_grad_enabled() and output.requires_grad):
                return  # an evaluation pass, not the training step
            x = inputs[0].detach()

            def on_grad(g: Tensor) -> None:
                d_in, d_out = x.shape[-1], g.shape[-1]
                # G = Σ_n g_n x_nᵀ over every position of the batch: (d_out, d_in)
                self._grads[name] += g.reshape(-1, d_out).double().T @ x.reshape(-1, d_in).double()

            output.register_hook(on_grad)
        return hook

    def end(self, step: int) -> dict[str, Any] | None:
        if not self._armed:
            return None
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._armed = False
        per_layer = {}
        for name, layer in self.layers.items():
            A, B = self._before.pop(name)
            grad = self._grads.pop(name)
            per_layer[name] = layer_metrics(A, B, layer.lora_A[self.adapter].weight, layer.lora_B[self.adapter].weight,
                                            float(layer.scaling[self.adapter]), grad if grad.any() else None)
            per_layer[name].update(factor_motion(self._initial_A[name], layer.lora_A[self.adapter].weight,
                                                 layer.lora_B[self.adapter].weight))
        record = {"step": step, **aggregate(per_layer), "layers": per_layer}
        self.records.append(record)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(runs.clean(record)) + "\n")
        if self.writer is not None:
            for tag, value in tensorboard_scalars(record).items():
                self.writer.add_scalar(tag, value, step)
        return record

    def close(self) -> None:
        """Remove any hooks left by a step that never ended (a diverged or interrupted run)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._armed = False
        if self.writer is not None:
            self.writer.close()


def tensorboard_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one tracker record: `signal_drift/{mean,weighted}/<metric>`, the finite ones
    (a ratio over a zero denominator is inf in the record and left out here)."""
    return {f"signal_drift/{group}/{k}": v for group in ("mean", "weighted") for k, v in record[group].items()
            if math.isfinite(v)}


def _tensorboard(directory: str | Path | None):
    if directory is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(directory))

"""The curvature LoRA sees: Hessian eigenvalues in adapter space and in full-weight space.

For a fixed batch and loss L, the Hessian-vector product is computed by double
backprop, H·v = ∂/∂θ ⟨∂L/∂θ, v⟩, with the first gradient's graph built once and
reused for every product. Two parameter spaces, for the same adapted layers:

    adapter  θ = (A, B) of every LoRA layer, at the current point
    full     θ = the layers' full weights W (their base weights, made trainable for the
             measurement); with A, B fixed, ∂²L/∂W0² = ∂²L/∂W², W = W0 + γ·B·A

The top eigenvalues come from power iteration (λ of largest magnitude) or from Lanczos
(scipy's ARPACK `eigsh`, the k largest algebraic). `hessian-eigenthings`, when
installed, is an optional third backend.

The optimization gap: gradient descent is stable along the top eigendirection u only for
steps η_eff < 2/λ_max. A step Δθ actually taken has an effective step along u of
η_eff = |⟨Δθ, u⟩| / |⟨∇L, u⟩|; gap = (2/λ_max) / η_eff (> 1: more cautious than stability needs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import UsageError
from .signal_drift import lora_layers


def adapter_parameters(model: nn.Module, adapter: str = "default") -> list[nn.Parameter]:
    """A and B of every LoRA layer, in module order."""
    out: list[nn.Parameter] = []
    for layer in lora_layers(model, adapter).values():
        out += [layer.lora_A[adapter].weight, layer.lora_B[adapter].weight]
    return out


def full_parameters(model: nn.Module, adapter: str = "default") -> list[nn.Parameter]:
    """The full (base) weight of every LoRA layer, in module order."""
    return [layer.base_layer.weight for layer in lora_layers(model, adapter).values()]


@contextmanager
def differentiable(params: list[nn.Parameter]) -> Iterator[None]:
    """Make `params` (and only them) require grad for the block; restore the flags after."""
    model_flags = [(p, p.requires_grad) for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in model_flags:
            p.requires_grad_(flag)


class HVP:
    """v ↦ H·v for `loss()` over `params` (flat float64 vectors on the CPU in and out; the products run
    where the parameters are, a GPU included)."""

    def __init__(self, loss: Callable[[], Tensor], params: list[nn.Parameter]):
        self.params = params
        self.size = sum(p.numel() for p in params)
        # The fused attention kernels have no double backward on CPU; the math one is plain ops.
        with sdpa_kernel(SDPBackend.MATH):
            value = loss()
            self.grads = torch.autograd.grad(value, params, create_graph=True)
        self.calls = 0

    def gradient(self) -> Tensor:
        return torch.cat([g.detach().reshape(-1).double().cpu() for g in self.grads])

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        parts, k = [], 0
        for p in self.params:
            parts.append(v[k:k + p.numel()].reshape(p.shape).to(device=p.device, dtype=p.dtype))
            k += p.numel()
        hv = torch.autograd.grad(self.grads, self.params, grad_outputs=parts, retain_graph=True)
        return torch.cat([h.reshape(-1).double().cpu() for h in hv])


def power_iteration(hvp: Callable[[Tensor], Tensor], size: int, iters: int = 200, tol: float = 1e-6,
                    seed: int = 0) -> tuple[float, Tensor]:
    """(λ, u): the eigenvalue of largest magnitude and its unit eigenvector."""
    v = torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v /= v.norm()
    lam = 0.0
    for _ in range(iters):
        hv = hvp(v)
        new = float(v @ hv)
        norm = hv.norm()
        if norm == 0:
            return 0.0, v
        v = hv / norm
        if abs(new - lam) <= tol * max(abs(new), 1e-30):
            lam = new
            break
        lam = new
    return lam, v


def lanczos(hvp: Callable[[Tensor], Tensor], size: int, k: int = 5, tol: float = 1e-6,
            seed: int = 0) -> tuple[list[float], Tensor]:
    """The k largest (algebraic) eigenvalues, descending, and their eigenvectors (size × k)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    k = min(k, size - 1) if size > 1 else 1
    if size <= 2:  # ARPACK needs k < size; a tiny problem is solved densely
        dense = torch.stack([hvp(e) for e in torch.eye(size, dtype=torch.float64)])
        vals, vecs = torch.linalg.eigh((dense + dense.T) / 2)
        return vals.flip(0)[:k].tolist(), vecs.flip(1)[:, :k]
    op = LinearOperator((size, size),
                        matvec=lambda x: hvp(torch.from_numpy(np.asarray(x, dtype=np.float64).ravel())).numpy(),
                        dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(size)
    vals, vecs = eigsh(op, k=k, which="LA", tol=tol, v0=v0)
    order = np.argsort(vals)[::-1]
    return [float(vals[i]) for i in order], torch.from_numpy(vecs[:, order].copy())


def top_eigenvalues(model: nn.Module, loss: Callable[[], Tensor], space: str = "adapter", k: int = 5,
                    method: str = "lanczos", seed: int = 0) -> dict[str, Any]:
    """Top-k Hessian eigenvalues of `loss()` (a closure over a fixed batch) in `space`."""
    if space not in ("adapter", "full"):
        raise UsageError(f"space must be 'adapter' or 'full', got {space!r}")
    params = adapter_parameters(model) if space == "adapter" else full_parameters(model)
    if not params:
        raise UsageError("the model has no LoRA layers; wrap it with loralpha.adapt first")
    frozen = [p for p in model.parameters() if all(p is not q for q in params)]
    flags = [p.requires_grad for p in frozen]
    for p in frozen:  # only θ is differentiated: no graph through other trainable parts
        p.requires_grad_(False)
    try:
        with differentiable(params):
            hvp = HVP(loss, params)
            if method == "power":
                lam, u = power_iteration(hvp, hvp.size, seed=seed)
                values, vectors = [lam], u[:, None]
            elif method == "lanczos":
                values, vectors = lanczos(hvp, hvp.size, k=k, seed=seed)
            elif method == "eigenthings":
                values, vectors = _eigenthings(hvp, hvp.size, k)
            else:
                raise UsageError(f"method must be lanczos, power or eigenthings, got {method!r}")
            gradient = hvp.gradient()
    finally:
        for p, flag in zip(frozen, flags):
            p.requires_grad_(flag)
    return {"space": space, "method": method, "eigenvalues": values, "size": hvp.size, "hvp_calls": hvp.calls,
            "top_vector": vectors[:, 0], "gradient": gradient}


def step_gap(top: dict[str, Any], step: Tensor) -> dict[str, float]:
    """Compare the stable step 2/λ_max with the effective step η_eff a real update took along u."""
    lam, u, g = top["eigenvalues"][0], top["top_vector"], top["gradient"]
    along_g, along_step = float(g @ u), float(step.double() @ u)
    eta_eff = abs(along_step) / abs(along_g) if along_g != 0 else math.inf
    stable = 2 / lam if lam > 0 else math.inf
    return {"lambda_max": lam, "stable_step": stable, "effective_step": eta_eff,
            "gap": stable / eta_eff if eta_eff > 0 else math.inf}


def _eigenthings(hvp: HVP, size: int, k: int) -> tuple[list[float], Tensor]:
    """Lanczos of the optional package hessian-eigenthings (≥ 1.0) on the same HVP."""
    try:
        from hessian_eigenthings import LambdaOperator
        from hessian_eigenthings import lanczos as eig_lanczos
    except ImportError:
        raise UsageError("method 'eigenthings' needs the optional package hessian-eigenthings>=1.0") from None
    k = min(k, size - 1)
    result = eig_lanczos(LambdaOperator(hvp, size, dtype=torch.float64), k=k, which="LA", seed=0,
                         max_iter=min(max(4 * k, 40), size - 1))
    return [float(v) for v in result.eigenvalues], result.eigenvectors.T.contiguous()

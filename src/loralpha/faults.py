"""Faults during training: Ctrl-C that lets the step in progress finish, and finding where a
NaN/inf first appeared (the first module output or parameter gradient that is not finite)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class StopRequest:
    """Ctrl-C during training: the step in progress finishes, then the loop stops (`requested`).
    A second Ctrl-C raises KeyboardInterrupt at once. Only where Python's own SIGINT handler is
    installed (the main thread, not a sweep's trial process, which ignores SIGINT)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def finite_grads(params: list[torch.Tensor]) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _display_name(name: str) -> str:
    return name.removeprefix("base_model.model.")


def _finite_tensors(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(_finite_tensors(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_tensors(v) for v in value)
    return True


def locate_fault(model: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor], batch: Any,
                  named: list[tuple[str, nn.Parameter]]) -> tuple[str | None, str]:
    """Rerun the faulty step's forward and backward with hooks and name where the first non-finite
    value appeared: (layer or parameter name, description). Forward hooks fire in execution order,
    gradient hooks in the order backward reaches each parameter, so the first hit is the source."""
    found: dict[str, tuple[str, str]] = {}
    value = None
    names = {module: _display_name(n) for n, module in model.named_modules() if n}

    def forward_hook(module, inputs, output):
        if "forward" in found or _finite_tensors(output):
            return
        name = names[module]
        found["forward"] = (name, f"output of {name}") if _finite_tensors(inputs) else \
            (name, f"input of {name} (the batch, or code outside any module)")

    def grad_hook(name):
        def hook(param):
            if "backward" not in found and param.grad is not None and not bool(torch.isfinite(param.grad).all()):
                found["backward"] = (name, f"gradient of {name}")
        return hook

    handles = [m.register_forward_hook(forward_hook) for m in names]
    handles += [p.register_post_accumulate_grad_hook(grad_hook(_display_name(n))) for n, p in named]
    try:
        for _, p in named:
            p.grad = None
        value = loss(model, batch)
        if "forward" not in found and torch.isfinite(value).all():
            value.backward()
    except RuntimeError:
        pass  # the rerun is a diagnosis: whatever it finds before failing is reported
    finally:
        for h in handles:
            h.remove()
        for _, p in named:
            p.grad = None
    if "forward" in found:
        return found["forward"]
    if "backward" in found:
        return found["backward"]
    if value is not None and not torch.isfinite(value.detach()).all():
        return None, "the loss function (every module's output is finite)"
    return None, "not found (the step did not fail again when rerun)"

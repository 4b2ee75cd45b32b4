"""Where a run computes and in what precision: the `device` and `dtype` of a run config, resolved.

    device  auto | cpu | cuda | cuda:N | mps    auto: CUDA when available, else MPS, else the CPU
    dtype   float32 | bfloat16                  of the frozen base weights only

With bfloat16 the frozen weights are stored in bfloat16 and forward passes run under
`torch.autocast(device_type, dtype=torch.bfloat16)`; every trainable parameter (LoRA's A and B, heads,
the weights a full-fine-tuning rule trains) stays float32, so its gradient and the optimizer state are
float32 too. A device or a precision this machine cannot give is a `UsageError` naming what it can.
The names are checked without torch (`check_name`, `check_dtype`: configs are plain data); `resolve`,
`available` and the rest import it.
"""

from __future__ import annotations

import contextlib
import platform
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICE_NAMES = "auto | cpu | cuda | cuda:N | mps"
DTYPES = ("float32", "bfloat16")
_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_name(name: object) -> str:
    """`name` when it is a device name this module knows, else a UsageError (no torch needed)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"unknown device {name!r}; choose one of: {DEVICE_NAMES.replace(' |', ',')}")
    return name


def check_dtype(name: object) -> str:
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r} for the frozen base weights; choose float32 or bfloat16")
    return name  # type: ignore[return-value]


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available() -> list[str]:
    """The devices a run may name here, most capable first: cuda:0 … cuda:N-1, mps, cpu."""
    import torch

    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        names.append("mps")
    return names + ["cpu"]


def _unavailable(name: str, why: str) -> UsageError:
    return UsageError(f"device {name!r} is not available here ({why}); available: {', '.join(available())}")


def resolve(name: str = "auto") -> torch.device:
    """The torch device `name` stands for on this machine; one it does not have is a one-line UsageError.
    `auto` (and a bare `cuda`) takes CUDA device 0 as torch numbers them: a process given one GPU (a Ray
    trial with gpus_per_trial > 0, or CUDA_VISIBLE_DEVICES) sees that GPU as device 0."""
    import torch

    name = check_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            built = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_built()
            raise _unavailable(name, f"torch {torch.__version__} " + ("sees no MPS device" if built else "has no MPS"))
        return torch.device("mps")
    if torch.version.cuda is None:
        raise _unavailable(name, f"torch {torch.__version__} has no CUDA")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise _unavailable(name, f"torch {torch.__version__} sees no CUDA device")
    index = int(name.partition(":")[2] or 0)
    if index >= count:
        raise _unavailable(name, f"{count} CUDA device{'s' if count > 1 else ''}: "
                                 + ", ".join(f"cuda:{i}" for i in range(count)))
    return torch.device("cuda", index)


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[check_dtype(name)]


def autocast_dtype(device: torch.device, dtype: str) -> torch.dtype | None:
    """The autocast precision of forward passes: None for float32 (no autocast), bfloat16 where `device`
    supports it; a device that cannot compute in bfloat16 is a UsageError."""
    import torch

    if check_dtype(dtype) == "float32":
        return None
    if not torch.amp.is_autocast_available(device.type) or \
            (device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False)):
        raise UsageError(f"dtype bfloat16 needs bfloat16 autocast, which device {str(device)!r} does not support "
                         "here; use dtype float32")
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """A context under which forward passes run at `dtype` (None: as they are, a no-op)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_precision(model: nn.Module, frozen: torch.dtype) -> None:
    """Store every frozen floating-point parameter of `model` in `frozen` and every trainable one in
    float32 (buffers keep theirs). A parameter keeps its identity: only its data is replaced."""
    import torch

    for p in model.parameters():
        if p.is_floating_point():
            want = torch.float32 if p.requires_grad else frozen
            if p.dtype != want:
                p.data = p.data.to(want)


def to_device(batch: Any, device: torch.device) -> Any:
    """`batch` with every tensor in it on `device`: tensors inside dicts (and other mappings, such as a
    tokenizer's BatchEncoding), lists and tuples (named ones too), recursively; anything else as it is.
    A tensor already there is returned itself, not copied."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        moved = {k: to_device(v, device) for k, v in batch.items()}
        return moved if type(batch) is dict else _rebuild(batch, moved)
    if isinstance(batch, tuple):
        items = [to_device(v, device) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else tuple(items)
    if isinstance(batch, list):
        return [to_device(v, device) for v in batch]
    return batch


def _rebuild(original: Mapping, moved: dict) -> Any:
    try:
        return type(original)(moved)
    except Exception:  # noqa: BLE001 — a mapping type that cannot be built from a dict is given as a dict
        return moved


def device_of(model: nn.Module) -> torch.device:
    """The device of `model`'s first parameter (where a task's evaluation puts its inputs); CPU without any."""
    import torch

    return next((p.device for p in model.parameters()), torch.device("cpu"))


def device_name(device: torch.device) -> str:
    """The hardware behind `device`: the GPU's name, or the CPU's model."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def runtime(model: nn.Module, device: torch.device, autocast_to: torch.dtype | None) -> dict[str, Any]:
    """What a run computed on, read off the model: the device and its hardware, the dtypes of the frozen
    and of the trainable parameters (None when there are none), the autocast precision, and torch's CPU
    threads (what a sweep worker was given, which its parent process need not share)."""
    import torch

    def dtypes(params: list) -> str | None:
        names = sorted({str(p.dtype).removeprefix("torch.") for p in params})
        return ",".join(names) or None

    params = list(model.parameters())
    return {"device": str(device), "device_name": device_name(device),
            "base_dtype": dtypes([p for p in params if not p.requires_grad]),
            "trainable_dtype": dtypes([p for p in params if p.requires_grad]),
            "autocast": None if autocast_to is None else str(autocast_to).removeprefix("torch."),
            "threads": torch.get_num_threads()}

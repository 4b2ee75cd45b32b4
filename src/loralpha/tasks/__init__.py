"""Tasks: a model, a stream of batches, a loss and an evaluation, with fixed splits.

A task is plain data (`Task`); `build` makes one by name. Every task keeps its
data split and its "pretrained" model fixed (they do not depend on the trial
seed); the trial seed drives the adapter's initialisation and the batch order.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..checks import positive_int
from .base import TASKS, Task, TaskFacts, TaskFlags, check_model_source, facts


def build(name: str, seed: int = 0, batch_size: int | None = None, **options: Any) -> Task:
    """Build task `name` ("classify" = your own --data, with --model optional; "sft" = causal-LM
    instruction tuning on your --data, "sft-gemma" = the embedded Gemma-3-270M on embedded data)."""
    known = facts(name)
    batch_size = known.batch_size if batch_size is None else positive_int(batch_size, "batch size")
    module, function = known.build.split(":")
    make = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    if known.named:
        options["which"] = name
    return make(seed=seed, batch_size=batch_size, **options)


__all__ = ["TASKS", "Task", "TaskFacts", "TaskFlags", "build", "check_model_source", "facts"]

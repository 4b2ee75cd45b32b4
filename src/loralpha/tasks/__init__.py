"""Tasks: a model, a stream of batches, a loss and an evaluation, with fixed splits.

A task is plain data (`Task`); `build` makes one by name. Every task keeps its
data split and its "pretrained" model fixed (they do not depend on the trial
seed); the trial seed drives the adapter's initialisation and the batch order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from torch import Tensor, nn

from ..errors import UsageError


@dataclass
class Task:
    name: str
    model: nn.Module  # the base model, frozen or not: the adapter spec decides
    batches: Iterable[Any]  # re-iterable (one pass = one epoch) or an endless iterator
    loss: Callable[[nn.Module, Any], Tensor]  # (model, batch) -> scalar loss
    evaluate: Callable[[nn.Module], dict[str, float]] | None  # held-out metrics, model in eval mode
    targets: list[str]  # default modules to adapt
    full_ft_lr: float  # the task's full-fine-tuning learning rate (default η of lora-alpha and full)
    metric: str = "eval_loss"  # the headline held-out metric
    higher_is_better: bool = False
    heads: list[str] = field(default_factory=list)  # modules trained fully under every rule
    head_lr: float | None = None  # the heads' learning rate under every rule (None: the rule's η)
    task_type: str | None = None  # PEFT task type of the saved adapter
    info: dict[str, Any] = field(default_factory=dict)  # model, data, sizes: goes into config.json


TASKS = ("teacher-student", "tweets", "bbc-news", "classify", "sft", "sft-gemma")
DEFAULT_BATCH = {"teacher-student": 256, "tweets": 32, "bbc-news": 16, "classify": 32, "sft": 8, "sft-gemma": 4}


def check_model_source(source: str, kind: str) -> None:
    """Refuse a local model path that is not a saved model, in words, before transformers tries it.
    A name that is not on disk and could be a hub id (`name` or `org/name`) is left to the hub."""
    path = Path(source).expanduser()
    if not path.exists():
        if source.startswith((".", "/", "~")) or source.count("/") > 1:
            raise UsageError(f"cannot load a {kind} from {source!r}: there is no such file or folder; give a folder "
                             "written by save_pretrained, or a hub id")
        return
    if not path.is_dir():
        raise UsageError(f"cannot load a {kind} from {source!r}: it is a file; give the folder written by "
                         "save_pretrained (config.json and the weights)")
    if not (path / "config.json").is_file():
        raise UsageError(f"cannot load a {kind} from {source!r}: the folder has no config.json, so it is not a saved "
                         "model; give a folder written by save_pretrained, or a hub id")


def build(name: str, seed: int = 0, batch_size: int | None = None, **options: Any) -> Task:
    """Build task `name` ("classify" = your own --data, with --model optional; "sft" = causal-LM
    instruction tuning on your --data, "sft-gemma" = the embedded Gemma-3-270M on embedded data)."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    batch_size = batch_size or DEFAULT_BATCH[name]
    if batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size}")
    if name == "teacher-student":
        from .teacher_student import build as make
    elif name in ("sft", "sft-gemma"):
        from .sft import build as make
        options["which"] = name
    else:
        from .text_classification import build_named as make
        options["which"] = name
    return make(seed=seed, batch_size=batch_size, **options)

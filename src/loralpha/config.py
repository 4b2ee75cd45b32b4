"""A run, declared once: the fields of `TrainConfig` (a named task trained under a rule), grouped as
`TaskOptions` (what to train), `AdapterOptions` (how a rule adapts a layer; the `AdapterSpec` that
`fit` and PEFT take shares them) and `FitOptions` (how the loop trains; what `fit` takes). Each field
carries its default and one line of help (`loralpha.options.option`); the `loralpha train` options,
the run record (config.json), the sweep spec's keys and the report's rerun command all derive from
these fields. Configs are plain data: nothing here needs torch or PEFT.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from . import devices, scaling
from .checks import positive, positive_int
from .errors import UsageError
from .options import CSV, DEFAULT_TRACK_EVERY, RANK_PATTERN, TASK_OPTIONS, TRACK, command_line, option, show_options
from .tasks.base import TASKS, TaskFlags, facts

if TYPE_CHECKING:
    from .tasks.base import Task

# adapter init -> PEFT's init_lora_weights
INITS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}
SCHEDULES = ("cosine", "constant")


@dataclass
class AdapterOptions:
    """How a rule adapts a layer: the fields a run config (`TrainConfig`) and an `AdapterSpec` share."""

    rule: str = option("lora-alpha", "α rule: " + " | ".join(scaling.RULES))
    rank: int = option(8, "LoRA rank r")
    coef: float = option(scaling.PAPER_COEF, "c of lora-alpha: α = c·√r")
    alpha: float = option(scaling.DEFAULT_ALPHA, "α of fixed, rslora and loraplus")
    rank_pattern: dict[str, int] = option({}, "per-layer ranks, NAME=RANK,... (α follows the rule)",
                                          text=RANK_PATTERN)
    init: str = option("default", "adapter init: " + " | ".join(INITS))
    dora: bool = option(False, "use DoRA (weight-decomposed LoRA)")
    loraplus_ratio: float = option(scaling.LORAPLUS_RATIO, "η_B/η_A of the loraplus rule")

    def check_adapter(self) -> None:
        """Check (and normalise) the adapter fields; targets are checked by `AdapterSpec.check`."""
        scaling.check_rule(self.rule)
        self.rank = scaling.check_rank(self.rank)
        self.coef = positive(self.coef, "coef c")
        self.alpha = positive(self.alpha, "alpha")
        self.loraplus_ratio = positive(self.loraplus_ratio, "loraplus ratio")
        self.rank_pattern = {k: scaling.check_rank(v, f"rank for pattern {k!r}")
                             for k, v in self.rank_pattern.items()}
        if self.init not in INITS:
            raise UsageError(f"unknown init {self.init!r}; choose one of: {', '.join(INITS)}")

    def lora_alpha(self, r: int) -> float:
        return scaling.lora_alpha(self.rule, r, self.coef, self.alpha)


@dataclass
class AdapterSpec(AdapterOptions):
    """What to adapt and how: everything between a rule name and a trainable model."""

    targets: list[str] = field(default_factory=list)  # module names (suffixes) to adapt
    dropout: float = 0.0  # LoRA dropout
    heads: list[str] = field(default_factory=list)  # modules trained fully under every rule
    task_type: str | None = None  # PEFT task type, e.g. "SEQ_CLS", for loaders of the adapter

    def check(self) -> AdapterSpec:
        self.check_adapter()
        if not self.targets:
            raise UsageError("no target modules given; name the linear layers to adapt, e.g. targets=['query', "
                             "'value']")
        return self

    @property
    def full(self) -> bool:
        """The rule trains the targeted weights directly (no adapter)."""
        return scaling.trains_full_weights(self.rule)


@dataclass
class FitOptions:
    """How the loop trains: everything `fit` takes besides the model, the data and the adapter spec."""

    lr: float | None = option(None, "learning rate (default: the task's full-FT rate for lora-alpha and full, "
                                    "2e-4 for the others; see `loralpha rules`)")
    head_lr: float | None = option(None, "learning rate of a new classifier head, the same under every rule "
                                         "(default: the task's)")
    steps: int = option(200, "optimizer steps")
    seed: int = option(0, "seed of adapter init, head init and batch order")
    weight_decay: float = option(0.0, "AdamW weight decay")
    schedule: str = option("cosine", "cosine | constant (after the warm-up)")
    warmup: float = option(0.0, "warm-up, as a fraction of the steps")
    grad_clip: float | None = option(None, "clip the gradient norm to this")
    eval_every: int = option(50, "steps between held-out evaluations (plus one at 0 and at the end)")
    diverge_ratio: float = option(10.0, "a loss above this × the first loss counts as divergence")
    track_every: int | None = option(None, "signal-drift[:K]: Signal-Drift metrics every K steps (default K: "
                                           f"{DEFAULT_TRACK_EVERY}) into signal_drift.jsonl", text=TRACK)
    device: str = option("auto", f"{devices.DEVICE_NAMES} (auto: CUDA when available, else MPS, else the CPU)")
    dtype: str = option("float32", "float32 | bfloat16: precision of the frozen base weights (bfloat16: forward "
                                   "passes under bfloat16 autocast); adapters, heads, every trained weight and the "
                                   "optimizer state stay float32")

    def check_fit(self, need_lr: bool = False) -> None:
        """Reject bad loop values; the one check of the learning rates on their way to AdamW. An unset lr is
        allowed unless `need_lr` (`train` resolves it to the rule's default, `fit` needs it given)."""
        if self.lr is None and need_lr:
            raise UsageError("fit needs a learning rate: pass lr= in its options (train() takes the rule's default)")
        if self.lr is not None:
            positive(self.lr, "learning rate")
        if self.head_lr is not None:
            positive(self.head_lr, "head learning rate")
        self.steps = positive_int(self.steps, "steps")
        self.eval_every = positive_int(self.eval_every, "eval_every")
        if self.track_every is not None:
            self.track_every = positive_int(self.track_every, "track_every")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise UsageError(f"weight decay must be a finite number ≥ 0, got {self.weight_decay}")
        if self.grad_clip is not None:
            positive(self.grad_clip, "gradient clipping norm")
        positive(self.diverge_ratio, "divergence ratio")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        if not 0 <= self.warmup < 1:
            raise UsageError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        devices.check_name(self.device)  # whether this machine has it is known only at training (devices.resolve)
        devices.check_dtype(self.dtype)


@dataclass
class TaskOptions:
    """What to train: the task and its data."""

    task: str = option("teacher-student", " | ".join(f"{name} ({facts.about})" if facts.about else name
                                                      for name, facts in TASKS.items()))
    batch_size: int | None = option(None, "batch size (default: the task's)")
    targets: list[str] | None = option(None, "modules to adapt, comma-separated (default: the task's)", text=CSV)
    task_options: dict[str, Any] = option({}, "more task settings KEY=VALUE,... (e.g. packing=true, n_eval=200, "
                                              "width=64; see the task's build())", text=TASK_OPTIONS)


@dataclass
class TrainConfig(FitOptions, AdapterOptions, TaskOptions):
    """A run of a named task: everything `loralpha train` takes. Each field is one option of the
    command, one key of the run record (config.json) and one key a sweep spec may set."""

    def check(self) -> TrainConfig:
        """Reject bad values before any model or data is loaded."""
        facts(self.task)
        self.check_adapter()
        self.check_fit()
        if self.batch_size is not None:
            self.batch_size = positive_int(self.batch_size, "batch size")
        if self.targets is not None and not self.targets:
            raise UsageError("targets is empty; name the modules to adapt or leave it unset for the task's default")
        return self

    def adapter_spec(self, task: Task) -> AdapterSpec:
        """The one mapping from a run config to the `AdapterSpec` of `task`'s model."""
        shared = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(AdapterOptions)}
        return AdapterSpec(**shared, targets=list(self.targets or task.targets), heads=list(task.heads),
                           task_type=task.task_type)

    def fit_options(self, task: Task) -> FitOptions:
        """The loop's options for `task`: an unset lr is the rule's default η, an unset head_lr the task's."""
        shared = {f.name: getattr(self, f.name) for f in fields(FitOptions)}
        shared["lr"] = self.lr if self.lr is not None else scaling.default_lr(self.rule, task.full_ft_lr)
        shared["head_lr"] = self.head_lr if self.head_lr is not None else task.head_lr
        return FitOptions(**shared)


def train_command(config: dict[str, Any], command: str = "loralpha train", always: tuple[str, ...] = ("task",)) -> str:
    """The `loralpha train` command line of a TrainConfig dict (only what differs from the defaults, and the fields
    in `always`); `command` names another command that takes the same flags (`loralpha compare`). The task options
    that have flags of their own (`TaskFlags`: --data, --model, …) are said as those flags."""
    parts = command_line(command, TrainConfig, {k: v for k, v in config.items() if k != "task_options"},
                         first=("task", "rule", "rank"), always=always)
    options = {k: v for k, v in (config.get("task_options") or {}).items() if v is not None}
    flags = {f.name: f for f in fields(TaskFlags)}
    parts += command_line("", TaskFlags, {k: options.pop(k) for k in list(options) if k in flags})[1:]
    if options:
        parts.append(f"--task-options {show_options(options)}")
    return " ".join(p for p in parts if p)

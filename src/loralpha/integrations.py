"""loralpha inside Hugging Face `Trainer` / TRL `SFTTrainer`.

    from loralpha.integrations import SignalDriftCallback
    trainer = Trainer(model=peft_model, args=args, train_dataset=ds,
                      callbacks=[SignalDriftCallback(every=10)])

The callback writes `signal_drift.jsonl` into `args.output_dir` (and TensorBoard
scalars there when tensorboard is installed). A calibrated point (`loralpha.calibrate`) becomes a
`Trainer`'s adapter, learning rates, batch, steps and schedule with `trainer_settings`:

    found = loralpha.calibrate("tweets", steps=1000)
    settings = trainer_settings(found, targets=["query", "value"], task_type="SEQ_CLS")
    model = get_peft_model(base, settings.peft_config)     # the classifier head stays trainable (modules_to_save)
    args = TrainingArguments(output_dir="out", **settings.training_arguments())
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      optimizers=(settings.optimizer(model), None))   # the head at its own rate (1e-3), A and B at η

Your own model and dataset, calibrated with their collator and the model's own loss (`calibrate_for_trainer`):

    settings = calibrate_for_trainer(model, train_ds, collator, steps=1000, batch_size=8, targets=["q_proj", "v_proj"])
    model = get_peft_model(model, settings.peft_config)
    args = TrainingArguments(output_dir="out", **settings.training_arguments())
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from .adapters import lora_config
from .config import AdapterSpec
from .diagnostics.signal_drift import SignalDriftTracker
from .errors import UsageError
from .studies.calibrate import calibrate_fit
from .tasks.base import facts


class SignalDriftCallback(TrainerCallback):
    """Signal-Drift metrics every `every` optimizer steps of a `Trainer` run."""

    def __init__(self, every: int = 10, filename: str = "signal_drift.jsonl", tensorboard: bool = True):
        self.every, self.filename, self.tensorboard = every, filename, tensorboard
        self.tracker: SignalDriftTracker | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.tracker = SignalDriftTracker(model, every=self.every, path=out / self.filename,
                                          tensorboard=out / "runs" if self.tensorboard else None)

    def on_step_begin(self, args, state, control, **kwargs):
        self.tracker.begin(state.global_step + 1)  # global_step counts finished optimizer steps

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.tracker.end(state.global_step + 1)

    def on_train_end(self, args, state, control, **kwargs):
        if self.tracker is not None:
            self.tracker.close()


@dataclass
class TrainerSettings:
    """Everything a calibrated run used that a Hugging Face `Trainer` needs. It unpacks as
    `peft_config, learning_rate = trainer_settings(...)` (and `[0]`, `[1]`), as it always did."""

    peft_config: Any  # PEFT's LoraConfig: r, lora_alpha = c·√r, the targets, the task type
    learning_rate: float  # η of A and B: TrainingArguments(learning_rate=...)
    head_learning_rate: float | None  # η of a new head (a classifier), the same under every rule; None: none
    batch_size: int  # examples per optimizer step (per-device batch × accumulation × devices)
    max_steps: int  # the calibrated budget: the point is the optimum for this many steps
    lr_scheduler_type: str  # cosine | constant, after a linear warm-up of warmup_ratio × max_steps
    warmup_ratio: float
    weight_decay: float
    max_length: int | None  # tokens per text the probes used; None: the task's default (a run's task info says it)
    calibration: dict[str, Any] | None = None  # what `calibrate_for_trainer` found (calibrate.json's fields)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.peft_config, self.learning_rate))

    def __getitem__(self, i: int) -> Any:
        return (self.peft_config, self.learning_rate)[i]

    def training_arguments(self) -> dict[str, Any]:
        """Keyword arguments of `TrainingArguments` (one device, no gradient accumulation): the rate, the batch,
        the steps and the schedule the probes trained on."""
        schedule = {"cosine": "cosine", "constant": "constant_with_warmup"}[self.lr_scheduler_type]
        return {"learning_rate": self.learning_rate, "per_device_train_batch_size": self.batch_size,
                "max_steps": self.max_steps, "lr_scheduler_type": schedule,
                "warmup_steps": int(self.warmup_ratio * self.max_steps),  # as loralpha's loop counts them
                "weight_decay": self.weight_decay}

    def optimizer(self, model: Any) -> torch.optim.AdamW:
        """AdamW over the PEFT model's trainable parameters: A and B at `learning_rate`, the rest (a head's
        modules_to_save copy) at `head_learning_rate`. Without it a `Trainer` gives a new head the LoRA η, which
        is not what the probes trained. Pass it as `Trainer(..., optimizers=(settings.optimizer(model), None))`;
        the Trainer's schedule then scales both groups."""
        lora, head = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (lora if "lora_" in name else head).append(p)
        groups = [{"params": lora, "lr": self.learning_rate}]
        if head:
            groups.append({"params": head, "lr": self.head_learning_rate or self.learning_rate})
        return torch.optim.AdamW(groups, lr=self.learning_rate, weight_decay=self.weight_decay)


def trainer_settings(calibration: Any, targets: list[str], **spec: Any) -> TrainerSettings:
    """The calibrated point as PEFT's `LoraConfig` (rule lora-alpha: r = the calibration's rank, lora_alpha =
    c·√r), its learning rate for `TrainingArguments(learning_rate=...)`, which A and B share, and the rest of what
    the probes trained with: the new head's rate, the batch, the steps, the schedule and the max length.

    `calibration`: what `loralpha.calibrate` returned, or its dict (calibrate.json). `spec`: further `AdapterSpec`
    fields (task_type, dropout, heads, …); a classifier (task_type="SEQ_CLS") keeps its head trainable through
    PEFT's modules_to_save. The probes trained on the calibration's schedule (cosine by default, no warm-up, no
    weight decay) at its batch size for its steps, and a new head at the task's head rate; train the same way
    (`TrainingArguments(**settings.training_arguments())` and `optimizers=(settings.optimizer(model), None)`) for
    the point to mean what it meant there.
    """
    cal = calibration if isinstance(calibration, dict) else calibration.to_dict()
    chosen, config = cal["settings"]["lora-alpha"], cal.get("config") or {}
    task = facts(cal["task"]) if cal.get("task") else None  # None: calibrate_fit's model of one's own
    adapter = AdapterSpec(rule="lora-alpha", rank=cal["rank"], targets=list(targets), coef=chosen["coef"], **spec)
    head_lr = config.get("head_lr") or (task.head_lr if task else None)
    return TrainerSettings(
        peft_config=lora_config(adapter), learning_rate=chosen["lr"], head_learning_rate=head_lr,
        batch_size=config.get("batch_size") or (task.batch_size if task else None), max_steps=cal["steps"],
        lr_scheduler_type=config.get("schedule", "cosine"), warmup_ratio=config.get("warmup", 0.0),
        weight_decay=config.get("weight_decay", 0.0), max_length=(config.get("task_options") or {}).get("max_length"))


def calibrate_for_trainer(model: Any, train_dataset: Any, data_collator: Callable[[list[Any]], Any] | None = None, *,
                          steps: int, batch_size: int, targets: Sequence[str], rank: int = 8,
                          budget_steps: int | None = None, task_type: str | None = None, heads: Sequence[str] = (),
                          head_lr: float | None = None, seeds: Sequence[int] = (0,), device: str = "auto",
                          dtype: str = "float32", **options: Any) -> TrainerSettings:
    """Calibrate LoRA's point (η_A, γ·η_B) for a `Trainer` run of `steps` steps of `batch_size` on `model` and
    `train_dataset`, and return it as `trainer_settings` does (the `LoraConfig`, `TrainingArguments` keywords, the
    head's rate and `optimizer(model)` for it), with the calibration in `.calibration`.

    The probes (`loralpha.calibrate_fit`, by default one target run of optimizer steps in all) draw batches of
    `train_dataset` through `data_collator` in a seeded shuffle, the same order for every probe, and score each by the
    model's own loss output (`model(**batch).loss`: the collator must give the labels); columns the model's forward
    does not take are dropped first, as `Trainer` does. `heads`: new modules trained fully (a classifier: ["score"]
    or ["classifier"]), at `head_lr`. `options`: `calibrate_fit`'s (xs, ys, full_ft_lr, schedule, warmup, …). The
    model comes back as it was given (no adapter on it). Raises `UsageError` for bad input.
    """
    data = _model_columns(model, train_dataset)

    def batches(seed: int) -> DataLoader:
        return DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=data_collator,
                          generator=torch.Generator().manual_seed(seed))

    def loss(net: Any, batch: Any) -> torch.Tensor:
        out = net(**batch)
        value = out.get("loss") if isinstance(out, dict) else getattr(out, "loss", None)
        if value is None:
            raise UsageError("the model returned no loss: give a data_collator whose batches carry labels")
        return value

    found = calibrate_fit(model, batches, loss, steps=steps, targets=targets, rank=rank, budget_steps=budget_steps,
                          seeds=seeds, heads=heads, task_type=task_type, batch_size=batch_size, head_lr=head_lr,
                          device=device, dtype=dtype, **options)
    settings = trainer_settings(found, targets=list(targets), task_type=task_type, heads=list(heads))
    settings.calibration = found.to_dict()
    return settings


def _model_columns(model: Any, dataset: Any) -> Any:
    """A `datasets.Dataset` without the columns the model's forward does not take (`Trainer`'s
    remove_unused_columns); anything else as given."""
    if not (hasattr(dataset, "column_names") and hasattr(dataset, "remove_columns")):
        return dataset
    takes = set(inspect.signature(model.forward).parameters) | {"label", "labels", "label_ids"}
    unused = [c for c in dataset.column_names if c not in takes]
    return dataset.remove_columns(unused) if unused else dataset

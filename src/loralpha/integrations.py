"""loralpha inside Hugging Face `Trainer` / TRL `SFTTrainer`.

    from loralpha.integrations import SignalDriftCallback
    trainer = Trainer(model=peft_model, args=args, train_dataset=ds,
                      callbacks=[SignalDriftCallback(every=10)])

The callback writes `signal_drift.jsonl` into `args.output_dir` (and TensorBoard
scalars there when tensorboard is installed). A calibrated point (`loralpha.calibrate`) becomes a
`Trainer`'s adapter and learning rate with `trainer_settings`:

    found = loralpha.calibrate("tweets", steps=1000)
    peft_config, lr = trainer_settings(found, targets=["query", "value"], task_type="SEQ_CLS")
    args = TrainingArguments(learning_rate=lr, max_steps=1000, lr_scheduler_type="cosine", ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .diagnostics.signal_drift import SignalDriftTracker


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


def trainer_settings(calibration: Any, targets: list[str], **spec: Any) -> tuple[Any, float]:
    """The calibrated point as PEFT's `LoraConfig` (rule lora-alpha: r = the calibration's rank, lora_alpha =
    c·√r) and the learning rate for `TrainingArguments(learning_rate=...)`, which A and B share.

    `calibration`: what `loralpha.calibrate` returned, or its dict (calibrate.json). `spec`: further `AdapterSpec`
    fields (task_type, dropout, …). The probes trained on the calibration's schedule (cosine by default, no
    warm-up, no weight decay) at its batch size for its steps; train the same way (`lr_scheduler_type="cosine"`,
    `max_steps`) for the point to mean what it meant there.
    """
    from .adapters import lora_config
    from .config import AdapterSpec

    cal = calibration if isinstance(calibration, dict) else calibration.to_dict()
    chosen = cal["settings"]["lora-alpha"]
    spec = AdapterSpec(rule="lora-alpha", rank=cal["rank"], targets=list(targets), coef=chosen["coef"], **spec)
    return lora_config(spec), chosen["lr"]

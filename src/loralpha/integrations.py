"""loralpha inside Hugging Face `Trainer` / TRL `SFTTrainer`.

    from loralpha.integrations import SignalDriftCallback
    trainer = Trainer(model=peft_model, args=args, train_dataset=ds,
                      callbacks=[SignalDriftCallback(every=10)])

The callback writes `signal_drift.jsonl` into `args.output_dir` (and TensorBoard
scalars there when tensorboard is installed).
"""

from __future__ import annotations

from pathlib import Path

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

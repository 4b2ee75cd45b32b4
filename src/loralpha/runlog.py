"""Everything a run writes, in one place. `RunOutput` holds the output arguments of `fit` and `train`;
`preflight` checks them with the device once, where a run enters the library, and gives the loop a
`Run` it trusts; `RunLog` is the run's one recorder:

    run directory   config.json and adapter-init/ at the start, metrics.jsonl one row per step,
                    signal_drift.jsonl (the tracker's records), checkpoint.pt, then the adapter and
                    summary.json at the end (see `loralpha.runs`)
    TensorBoard     `train/loss` and `train/lr` every step, `eval/<metric>`, `signal_drift/{mean,weighted}/...`
    terminal        a progress bar with the loss and the headline held-out metrics

A resumed run truncates metrics.jsonl and signal_drift.jsonl to its checkpoint's step and asks TensorBoard
to hide the events logged after it (`purge_step`), since those steps are trained again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import adapters, checkpoints, devices, runs
from .adapters import AdapterSpec
from .checkpoints import CHECKPOINT
from .checks import positive_int
from .config import FitOptions
from .diagnostics.signal_drift import SignalDriftTracker, tensorboard_scalars
from .errors import UsageError

IN_PROCESS = ("model", "signal_drift", "losses")  # RunResult fields summary.json leaves out (metrics.jsonl has losses)
TIMINGS = ("wall_time_s", "load_time_s", "train_time_s", "eval_time_s")  # the summary's clock readings


@dataclass
class RunResult:
    status: str  # done, diverged or interrupted
    steps: int  # optimizer steps taken
    final_loss: float | None  # mean train loss over the last loop.FINAL_WINDOW steps (None if diverged)
    eval: dict[str, float]  # held-out metrics at the end
    wall_time_s: float  # the loop's wall time: training steps plus the held-out evaluations in it
    diverged_at: int | None = None
    reason: str | None = None
    run_dir: str | None = None
    diverged_layer: str | None = None  # first module with a non-finite output (or parameter with a non-finite gradient)
    resumed_from: int | None = None  # the checkpoint step this run continued from
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # the trained model, in-process
    signal_drift: list[dict[str, Any]] = field(default_factory=list, repr=False)  # tracker records, in-process
    eval_time_s: float = 0.0  # of wall_time_s, the part spent in held-out evaluations
    load_time_s: float | None = None  # building the model and data before the loop (train() measures it)
    losses: list[float] = field(default_factory=list, repr=False)  # the train loss of every step, in-process
    # the test split's metrics, read once after the last step of a finished run (empty for a task without one)
    test: dict[str, float] = field(default_factory=dict)

    @property
    def train_time_s(self) -> float:
        """Of wall_time_s, the part spent training (steps, tracking, logging)."""
        return self.wall_time_s - self.eval_time_s

    def summary(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in IN_PROCESS}
        if not self.test:  # a run without a test split writes what it always wrote
            del out["test"]
        return {**out, "train_time_s": self.train_time_s}



@dataclass
class RunOutput:
    """What a run writes and where: the output arguments of `fit` and `train`."""

    out: str | Path | None = None  # the run directory (None: nothing is written)
    overwrite: bool = False  # replace a run directory that is not empty
    resume: bool = False  # continue the run in `out` from its checkpoint (or start it, when `out` holds none)
    checkpoint_every: int | None = None  # rewrite out/checkpoint.pt every this many steps (and on Ctrl-C)
    progress: bool = False  # a progress bar on the terminal
    tensorboard: str | Path | None = None  # a directory for TensorBoard event files
    record: dict[str, Any] | None = None  # more for config.json (train: the config and the task's facts)

    @property
    def run_dir(self) -> Path | None:
        return Path(self.out) if self.out is not None else None


@dataclass
class Run:
    """A run's settings once `preflight` has checked them: what the loop trusts."""

    options: FitOptions
    device: torch.device
    amp: torch.dtype | None  # the autocast precision of forward passes (None: float32, no autocast)
    output: RunOutput
    load_time_s: float | None = None  # the caller's time building the model and data


def preflight(options: FitOptions, output: RunOutput, expected: dict[str, Any]) -> Run:
    """Every check that needs no model, done once where a run enters the library (`fit`, `train`) before
    anything is built: the output arguments that cannot go together, the TensorBoard package, a device this
    machine has, and the run directory (a taken one is refused unless `overwrite`; with `resume`, a run there
    must match `expected`, a part of its config.json, and be unfinished). `options` are checked already."""
    if output.checkpoint_every is not None:
        output.checkpoint_every = positive_int(output.checkpoint_every, "checkpoint_every")
    if (output.checkpoint_every is not None or output.resume) and output.out is None:
        raise UsageError("checkpoints and resuming need a run directory; give one with out=")
    if output.resume and output.overwrite:
        raise UsageError("resume=True continues a run and overwrite=True replaces it; choose one")
    if output.tensorboard is not None:  # refuse a missing package before making the run directory
        _summary_writer()
    device = devices.resolve(options.device)
    amp = devices.autocast_dtype(device, options.dtype)
    run_dir = output.run_dir
    if run_dir is not None and not (output.resume and runs.resumable(run_dir, expected)):
        runs.prepare(run_dir, output.overwrite)
    return Run(options, device, amp, output)


class RunLog:
    """The one recorder of a run: `open` writes config.json and returns the checkpoint to resume from,
    `start` shows the progress bar, `begin`/`stepped` bracket an optimizer step for the Signal-Drift
    tracker, `row` logs a metrics row, `checkpoint` saves the state, `stop` closes the streams whatever
    ended the run, and `close` saves the adapter and summary.json."""

    def __init__(self, run: Run):
        self.run, self.output, self.dir = run, run.output, run.output.run_dir
        self.tracker: SignalDriftTracker | None = None
        self.board = None  # a TensorBoard SummaryWriter
        self.metrics = None  # metrics.jsonl
        self.bar: _Bar | None = None
        self.state: tuple = ()  # what a checkpoint saves: trainable parameters, optimizer and schedule

    def open(self, model: nn.Module, spec: AdapterSpec, named: list[tuple[str, nn.Parameter]],
             opt: torch.optim.Optimizer, sched: Any) -> dict[str, Any] | None:
        """Start the run's outputs; with `resume`, the checkpoint's state, already loaded into `named`, `opt`
        and `sched`, to continue from (None: the run starts at step 0)."""
        options = self.run.options
        self.spec, self.state = spec, (named, opt, sched)
        if options.track_every is not None:  # made before a checkpoint is loaded: it keeps the initial A (seeded)
            if spec.full:
                raise UsageError(f"Signal-Drift tracking (track_every=) needs LoRA layers; rule {spec.rule!r} has none")
            self.tracker = SignalDriftTracker(model, every=options.track_every,
                                              path=self.dir / "signal_drift.jsonl" if self.dir else None)
        state = None
        if self.dir is not None:
            state = self._open_dir(model, named, opt, sched)
        if state:  # the rows after the checkpoint are about to be trained again
            for name in ("metrics.jsonl", "signal_drift.jsonl"):
                checkpoints.truncate_rows(self.dir / name, state["step"])
        if self.output.tensorboard is not None:  # on resuming, the steps about to be trained again are purged
            purge = (state["step"] + 1 if state else 0) if self.output.resume else None
            self.board = _open_board(self.output.tensorboard, purge_step=purge)
        if self.dir is not None:  # line-buffered: a killed run keeps its rows
            self.metrics = open(self.dir / "metrics.jsonl", "a" if state else "w", buffering=1)
        return state

    def _open_dir(self, model: nn.Module, named: list[tuple[str, nn.Parameter]], opt: torch.optim.Optimizer,
                  sched: Any) -> dict[str, Any] | None:
        """Write config.json (and the initial adapter PiSSA/OLoRA need) into the run directory; with
        `resume`, the checkpoint's state to continue from (None: start at step 0). The runtime (the device
        and dtypes, `devices.runtime`) is recorded but not compared on resuming: a run may continue elsewhere."""
        spec, options, run_dir = self.spec, self.run.options, self.dir
        trainable = [p for _, p in named]
        record = {**(self.output.record or {}), "spec": asdict(spec), **asdict(options),
                  "trainable_params": sum(p.numel() for p in trainable)}
        if not spec.full:
            record.update(lora_alpha=spec.lora_alpha(spec.rank), gamma=spec.lora_alpha(spec.rank) / spec.rank)
        state = None
        if self.output.resume and runs.resumable(run_dir, record):
            state = checkpoints.load(run_dir / CHECKPOINT, named, opt, sched)
            if state is None:  # an unfinished run without a checkpoint starts again from step 0
                runs.prepare(run_dir, overwrite=True)
        weights = sum(p.numel() * p.element_size() for p in trainable)
        # the adapter, and a checkpoint (weights + Adam's two moments) twice while it is replaced
        checkpointed = self.output.checkpoint_every is not None
        runs.check_space(run_dir, weights * (7 if checkpointed else 1) + 200 * options.steps + 2**20,
                         "adapter, metrics and checkpoints" if checkpointed else "adapter and metrics")
        adapters.save_initial(model, spec, run_dir / "adapter-init")
        runtime = devices.runtime(model, self.run.device, self.run.amp)
        runs.write_json(run_dir / "config.json", {**record, "runtime": runtime, "versions": runs.versions()})
        return state

    def start(self) -> None:
        """The progress bar, shown once the evaluation at step 0 is done."""
        self.bar = _Bar(self.run.options.steps) if self.output.progress else None

    def begin(self, step: int) -> None:
        """Before the forward pass of `step`: the tracker snapshots A and B and hooks the LoRA layers."""
        if self.tracker:
            self.tracker.begin(step)

    def stepped(self, step: int) -> None:
        """After the optimizer step: the tracker's record of it (signal_drift.jsonl, TensorBoard)."""
        drift = self.tracker.end(step) if self.tracker else None
        if self.board and drift:
            for tag, value in tensorboard_scalars(drift).items():
                self.board.add_scalar(tag, value, step)

    def row(self, row: dict[str, Any], metrics: dict[str, float]) -> None:
        """One metrics.jsonl row (step, loss, lr, and the held-out metrics when measured), as TensorBoard
        scalars too; the progress bar shows its loss beside the latest `metrics`."""
        if self.metrics:
            _write(self.metrics, json.dumps(runs.clean(row)) + "\n")
        if self.board:
            _to_board(self.board, row)
        if self.bar:
            self.bar.update(row["step"], row["loss"], metrics)

    def checkpoint_due(self, step: int) -> bool:
        every = self.output.checkpoint_every
        return bool(every) and step % every == 0 and step < self.run.options.steps

    def checkpoint(self, step: int, losses: list[float], metrics: dict[str, float]) -> None:
        """Save checkpoint.pt at `step`, when checkpoints are on."""
        if self.output.checkpoint_every:
            checkpoints.save(self.dir / CHECKPOINT, step, *self.state, losses, metrics, self.run.device)

    @property
    def drift(self) -> list[dict[str, Any]]:
        """The tracker's records, in-process."""
        return self.tracker.records if self.tracker else []

    def stop(self) -> None:
        """Close the streams (the tracker's hooks, the bar, metrics.jsonl, TensorBoard), whatever ended the run."""
        for stream in (self.tracker, self.bar, self.metrics, self.board):
            if stream:
                stream.close()

    def close(self, model: nn.Module, result: RunResult) -> None:
        """Save the adapter (or weights) and summary.json; a finished run drops its checkpoint."""
        if self.dir is None:
            return
        try:
            adapters.save(model, self.spec, self.dir / "adapter", self.dir / "adapter-init")
            runs.write_json(self.dir / "summary.json", result.summary())
        except OSError as e:
            raise UsageError(f"cannot save the run into {self.dir}: {e.strerror or e}"
                             + ("; free some space and rerun with resume=True" if self.output.checkpoint_every
                                else "")) from None
        if result.status != "interrupted":
            (self.dir / CHECKPOINT).unlink(missing_ok=True)  # finished: nothing is left to resume


def _summary_writer() -> type:
    """torch's SummaryWriter; tensorboard is an optional extra (loralpha[tensorboard])."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError("tensorboard= needs the package tensorboard: pip install tensorboard") from None
    return SummaryWriter


def _open_board(directory: str | Path, purge_step: int | None):
    """A SummaryWriter into `directory`; with `purge_step`, TensorBoard hides the events logged there
    at that step and after (a resumed run logs them again)."""
    try:
        return _summary_writer()(str(directory), purge_step=purge_step)
    except OSError as e:
        raise UsageError(f"cannot write TensorBoard events into {directory}: {e.strerror or e}; "
                         "give another tensorboard= directory") from None


def _to_board(board, row: dict[str, Any]) -> None:
    """One metrics.jsonl row as TensorBoard scalars: loss and lr as train/<key>, the held-out metrics as eval/<key>."""
    for key, value in row.items():
        if key != "step":
            board.add_scalar(f"train/{key}" if key in ("loss", "lr") else f"eval/{key}", value, row["step"])


def _write(log, text: str) -> None:
    try:
        log.write(text)
    except OSError as e:
        raise UsageError(f"cannot write {log.name}: {e.strerror or e}; free some space and rerun") from None


class _Bar:
    """Progress with the loss and the headline held-out metrics: a rich bar on a terminal; elsewhere (a log, a
    pipe, a batch job), where a rich bar prints nothing until the run ends, a plain line every tenth of the steps
    with the time left: `train: step 40/200 (20%)  loss 0.41  accuracy 0.62  · 12 s, ~48 s left`."""

    SHARE = 10

    def __init__(self, steps: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.steps, self.began, self.first, self.next = steps, time.perf_counter(), None, 1
        self.progress = None
        if Console().is_terminal:
            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}"), transient=False)
            self.task = self.progress.add_task("train", total=steps, info="")
            self.progress.start()

    def update(self, step: int, loss: float, metrics: dict[str, float]) -> None:
        info = f"loss {loss:.4g}" + "".join(f"  {k} {v:.4g}" for k, v in list(metrics.items())[:2])
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=info)
            return
        now = time.perf_counter()
        if self.first is None:
            self.first = (step, now)
        if step * self.SHARE < self.next * self.steps:
            return
        while self.next * self.steps <= step * self.SHARE:
            self.next += 1
        first_step, first_time = self.first
        left = (f", ~{runs.duration((now - first_time) / (step - first_step) * (self.steps - step))} left"
                if first_step < step < self.steps else "")
        print(f"train: step {step}/{self.steps} ({100 * step // self.steps}%)  {info}  · "
              f"{runs.duration(now - self.began)}{left}", flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()

"""The training loop: AdamW, warm-up + cosine (or constant) schedule, optional
clipping, periodic evaluation, divergence detection and the run directory.

`fit` trains any `torch.nn.Module` under an `AdapterSpec` given batches and a
loss; `train` does the same for a named task from a `TrainConfig`. Both return
a `RunResult` and never raise for a run that diverges: a NaN/inf loss or
gradient, or a loss above `diverge_ratio` × the first step's loss, ends the run
with status `diverged`, the step it happened at and, for a NaN/inf, the first
layer whose output (or parameter whose gradient) was not finite. Nothing is
stepped with a non-finite gradient. Ctrl-C lets the step in progress finish,
then ends the run as `interrupted`; what was trained so far is saved either way.

Checkpoints (`checkpoint_every`) keep the trainable weights, the optimizer and
schedule state, the losses so far and the RNG state in `checkpoint.pt`, written
atomically every that many steps and when the run is interrupted. `resume=True`
continues a run directory from its checkpoint: the batches before it are drawn
again (batch order is seeded) and skipped, so a resumed run ends with the same
numbers, bit for bit on one machine, as one that was never interrupted.

`tensorboard=DIR` also writes TensorBoard event files into DIR: `train/loss` and `train/lr` every
step, the held-out metrics as `eval/<name>`, and the Signal-Drift series (`signal_drift/...`).

Device and precision (`device`, `dtype` of the options; see `loralpha.devices`): the adapted model is
moved to the device and every batch with it (tensors inside dicts, lists and tuples); with dtype
bfloat16 the frozen weights are stored in bfloat16 and the loss and the evaluations run under bfloat16
autocast, while every trainable parameter, its gradient and the optimizer state stay float32.
config.json's `runtime` states what the run computed on, read off the model.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import adapters, checkpoints, devices, runs, tasks
from .adapters import AdapterSpec
from .checkpoints import CHECKPOINT
from .checks import positive_int
from .config import FitOptions, TrainConfig
from .diagnostics.signal_drift import SignalDriftTracker, tensorboard_scalars
from .errors import UsageError
from .faults import StopRequest, finite_grads, locate_fault

__all__ = ["FitOptions", "RunResult", "TrainConfig", "fit", "train"]

FINAL_WINDOW = 10  # final_loss = mean train loss over the last this-many steps
IN_PROCESS = ("model", "signal_drift", "losses")  # RunResult fields summary.json leaves out (metrics.jsonl has losses)
TIMINGS = ("wall_time_s", "load_time_s", "train_time_s", "eval_time_s")  # the summary's clock readings


@dataclass
class RunResult:
    status: str  # done, diverged or interrupted
    steps: int  # optimizer steps taken
    final_loss: float | None  # mean train loss over the last FINAL_WINDOW steps (None if diverged)
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

    @property
    def train_time_s(self) -> float:
        """Of wall_time_s, the part spent training (steps, tracking, logging)."""
        return self.wall_time_s - self.eval_time_s

    def summary(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in IN_PROCESS}
        return {**out, "train_time_s": self.train_time_s}


def _schedule(opt: torch.optim.Optimizer, kind: str, warmup: float, steps: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    n_warm = int(warmup * steps)  # warmup and kind are checked by FitOptions.check_fit
    if kind == "cosine":
        return get_cosine_schedule_with_warmup(opt, n_warm, steps)
    return get_constant_schedule_with_warmup(opt, n_warm)


def _batches(source: Iterable[Any]):
    """Endless batches: an iterator is consumed once, a re-iterable source restarts each epoch."""
    while True:
        empty = True
        for batch in source:
            empty = False
            yield batch
        if empty or iter(source) is source:
            return


def fit(model: nn.Module, batches: Iterable[Any], loss: Callable[[nn.Module, Any], torch.Tensor],
        spec: AdapterSpec, options: FitOptions, *, evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        out: str | Path | None = None, overwrite: bool = False, resume: bool = False,
        checkpoint_every: int | None = None, progress: bool = False, record: dict[str, Any] | None = None,
        tensorboard: str | Path | None = None, load_time_s: float | None = None) -> RunResult:
    """Adapt `model` under `spec` and train it for `options.steps` AdamW steps on `loss(model, batch)`.

    `options.lr` must be set here (`train` resolves an unset one to the rule's default η for the
    task). `evaluate(model)` returns held-out metrics; it runs at step 0, every `eval_every` steps
    and at the end. With `track_every`, Signal-Drift metrics are taken every that many steps.
    With `out`, writes the run directory (see `loralpha.runs`): `record` adds to its config.json.
    With `checkpoint_every`, `out/checkpoint.pt` is rewritten every that many steps; `resume`
    continues the run in `out` from it (or starts it, when `out` holds no run yet).
    With `tensorboard`, writes TensorBoard event files into that directory: every metrics.jsonl value
    (`train/loss`, `train/lr`, `eval/<metric>`) and the tracker's `signal_drift/{mean,weighted}/<metric>`;
    a resumed run appends to it and hides the steps after its checkpoint that the first try had logged.
    The result splits the loop's wall time into training and evaluation; `load_time_s`, the caller's time
    spent building the model and data, is recorded beside them.
    The adapted model trains on `options.device` (`loss` receives batches already moved there; `evaluate`
    must put what it builds itself on the model's device) with its frozen weights in `options.dtype`.
    """
    options = copy.copy(options)
    options.check_fit()
    if options.lr is None:
        raise UsageError("fit needs a learning rate: pass lr= in its options (train() takes the rule's default)")
    device = devices.resolve(options.device)
    amp = devices.autocast_dtype(device, options.dtype)
    if tensorboard is not None:
        _summary_writer()
    if checkpoint_every is not None:
        checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
    run_dir = Path(out) if out is not None else None
    check_run_directory(run_dir, overwrite, resume, checkpoint_every)
    if run_dir is not None and not (resume and runs.resumable(run_dir, {})):
        runs.prepare(run_dir, overwrite)
    steps = options.steps
    torch.manual_seed(options.seed)
    model = adapters.adapt(model, spec)
    devices.set_precision(model, devices.torch_dtype(options.dtype))
    model.to(device)
    opt = adapters.optimizer(model, spec, options.lr, options.weight_decay, options.head_lr)
    sched = _schedule(opt, options.schedule, options.warmup, steps)
    named = adapters.trainable_parameters(model)
    tracker = None  # made before a checkpoint is loaded: it keeps the initial A (seeded) to measure A's motion
    if options.track_every is not None:
        if spec.full:
            raise UsageError(f"Signal-Drift tracking (track_every=) needs LoRA layers; rule {spec.rule!r} has none")
        tracker = SignalDriftTracker(model, every=options.track_every,
                                     path=run_dir / "signal_drift.jsonl" if run_dir else None)
    trainable = [p for _, p in named]
    state = None
    if run_dir is not None:
        state = _open_run(run_dir, model, spec, options, named, opt, sched, record, overwrite, resume, checkpoint_every,
                          devices.runtime(model, device, amp))
    start_step = state["step"] if state else 0
    if state:  # the rows after the checkpoint are about to be trained again
        for name in ("metrics.jsonl", "signal_drift.jsonl"):
            checkpoints.truncate_rows(run_dir / name, start_step)
    board = None
    if tensorboard is not None:  # on resuming, the steps about to be trained again are purged from the view
        board = _open_board(tensorboard, purge_step=(start_step + 1 if state else 0) if resume else None)
    # line-buffered: a killed run keeps its rows
    log = open(run_dir / "metrics.jsonl", "a" if state else "w", buffering=1) if run_dir is not None else None

    eval_time = 0.0

    def forward_loss(net: nn.Module, batch: Any) -> torch.Tensor:
        with devices.autocast(device, amp):  # the backward pass runs outside autocast, as torch advises
            return loss(net, batch)

    def evaluation() -> dict[str, float]:
        nonlocal eval_time
        if evaluate is None:
            return {}
        began = time.perf_counter()
        model.eval()
        with devices.autocast(device, amp):
            metrics = evaluate(model)
        model.train()
        eval_time += time.perf_counter() - began
        return metrics

    status, reason, diverged_at, diverged_layer, completed = "done", None, None, None, start_step
    stream = _batches(batches)
    losses: list[float] = list(state["losses"]) if state else []
    metrics: dict[str, float] = dict(state["metrics"]) if state else {}
    start = time.perf_counter()
    bar = None
    stop = StopRequest()
    try:
        with stop:
            if state:
                for _ in range(start_step):  # the batches the checkpointed steps trained on (batch order is seeded)
                    next(stream, None)
                torch.set_rng_state(state["rng"])
                if "cuda_rng" in state and device.type == "cuda":
                    torch.cuda.set_rng_state(state["cuda_rng"], device)
            else:
                metrics = evaluation()
                if log:
                    _write(log, json.dumps(runs.clean({"step": 0, **metrics})) + "\n")
                if board:
                    _to_board(board, {"step": 0, **metrics})
            bar = _progress(progress, steps)
            model.train()
            for step in range(start_step + 1, steps + 1):
                if stop.requested:  # Ctrl-C came during the last step, which finished: the state is whole
                    break
                batch = next(stream, None)
                if batch is None:  # a finite iterator ran out
                    break
                batch = devices.to_device(batch, device)
                if tracker:
                    tracker.begin(step)
                current, fault = _forward_backward(model, forward_loss, batch, step, opt, named, losses,
                                                   options.diverge_ratio)
                if fault:
                    status, diverged_at, (reason, diverged_layer) = "diverged", step, fault
                    break
                losses.append(current)
                if options.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, options.grad_clip)
                row: dict[str, Any] = {"step": step, "loss": current, "lr": sched.get_last_lr()[0]}
                opt.step()
                sched.step()
                completed = step
                drift = tracker.end(step) if tracker else None
                if board and drift:
                    for tag, value in tensorboard_scalars(drift).items():
                        board.add_scalar(tag, value, step)
                if step % options.eval_every == 0 or step == steps:
                    metrics = evaluation()
                    row.update(metrics)
                    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
                    if bad:
                        status, diverged_at, reason = "diverged", step, f"eval {bad[0]} is not finite at step {step}"
                if log:
                    _write(log, json.dumps(runs.clean(row)) + "\n")
                if board:
                    _to_board(board, row)
                if bar:
                    bar.update(step, current, metrics)
                if status == "diverged":
                    break
                if checkpoint_every and step % checkpoint_every == 0 and step < steps:
                    checkpoints.save(run_dir / CHECKPOINT, step, named, opt, sched, losses, metrics, device)
        if stop.requested and status == "done" and completed < steps:
            status, reason = "interrupted", f"interrupted by the user after step {completed}"
            if checkpoint_every and completed > start_step:  # stopped between steps: the state is whole
                checkpoints.save(run_dir / CHECKPOINT, completed, named, opt, sched, losses, metrics, device)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: stop at once, mid-step maybe
        status, reason = "interrupted", f"interrupted by the user after step {completed}"
    finally:
        if tracker:
            tracker.close()
        if bar:
            bar.close()
        if log:
            log.close()
        if board:
            board.close()
    wall = time.perf_counter() - start
    final = sum(losses[-FINAL_WINDOW:]) / len(losses[-FINAL_WINDOW:]) if losses and status != "diverged" else None
    result = RunResult(status=status, steps=completed, final_loss=final,
                       eval=metrics if status != "diverged" else {}, wall_time_s=wall, diverged_at=diverged_at,
                       reason=reason, run_dir=str(run_dir) if run_dir else None, model=model,
                       signal_drift=tracker.records if tracker else [], diverged_layer=diverged_layer,
                       resumed_from=start_step if state else None, eval_time_s=eval_time, load_time_s=load_time_s,
                       losses=list(losses))
    if run_dir is not None:
        _close_run(run_dir, model, spec, result, checkpoint_every)
    return result


def _forward_backward(model: nn.Module, loss: Callable[[nn.Module, Any], torch.Tensor], batch: Any, step: int,
                      opt: torch.optim.Optimizer, named: list[tuple[str, nn.Parameter]], losses: list[float],
                      diverge_ratio: float) -> tuple[float, tuple[str, str | None] | None]:
    """The loss and gradients of one step: (loss, None) when the step may be taken, else (loss, (reason,
    first non-finite layer)). A NaN/inf loss or gradient, or a loss above diverge_ratio × the first one,
    stops the run before the optimizer steps, so the weights stay finite."""
    value = loss(model, batch)
    current = float(value.detach())
    if not math.isfinite(current):
        layer, where = locate_fault(model, loss, batch, named)
        return current, (f"loss is {current} at step {step}; first non-finite value: {where}", layer)
    if losses and current > diverge_ratio * losses[0]:
        return current, (f"loss {current:.4g} at step {step} exceeds {diverge_ratio:g}× the first loss "
                         f"{losses[0]:.4g}", None)
    opt.zero_grad(set_to_none=True)
    value.backward()
    if not finite_grads([p for _, p in named]):
        layer, where = locate_fault(model, loss, batch, named)
        return current, (f"gradient is not finite at step {step} (loss {current:.4g}); first non-finite value: "
                         f"{where}", layer)
    return current, None


def _close_run(run_dir: Path, model: nn.Module, spec: AdapterSpec, result: RunResult,
               checkpoint_every: int | None) -> None:
    """Save the adapter (or weights) and summary.json; a finished run drops its checkpoint."""
    try:
        adapters.save(model, spec, run_dir / "adapter", run_dir / "adapter-init")
        runs.write_json(run_dir / "summary.json", result.summary())
    except OSError as e:
        raise UsageError(f"cannot save the run into {run_dir}: {e.strerror or e}"
                         + ("; free some space and rerun with resume=True" if checkpoint_every else "")) from None
    if result.status != "interrupted":
        (run_dir / CHECKPOINT).unlink(missing_ok=True)  # finished: nothing is left to resume


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


def check_run_directory(out: Path | None, overwrite: bool, resume: bool, checkpoint_every: int | None) -> None:
    """The run-directory arguments that cannot go together."""
    if (checkpoint_every is not None or resume) and out is None:
        raise UsageError("checkpoints and resuming need a run directory; give one with out=")
    if resume and overwrite:
        raise UsageError("resume=True continues a run and overwrite=True replaces it; choose one")


def _open_run(run_dir: Path, model: nn.Module, spec: AdapterSpec, options: FitOptions, named, opt, sched,
              record: dict[str, Any] | None, overwrite: bool, resume: bool,
              checkpoint_every: int | None, runtime: dict[str, Any]) -> dict[str, Any] | None:
    """Write config.json (and the initial adapter PiSSA/OLoRA need) into the run directory; with
    `resume`, the checkpoint's state to continue from (None: start at step 0). `runtime` (the device and
    dtypes, `devices.runtime`) is recorded but not compared on resuming: a run may continue elsewhere."""
    trainable = [p for _, p in named]
    record = {**(record or {}), "spec": asdict(spec), **asdict(options),
              "trainable_params": sum(p.numel() for p in trainable)}
    if not spec.full:
        record.update(lora_alpha=spec.lora_alpha(spec.rank), gamma=spec.lora_alpha(spec.rank) / spec.rank)
    state = None
    if resume and runs.resumable(run_dir, record):
        state = checkpoints.load(run_dir / CHECKPOINT, named, opt, sched)
        if state is None:  # an unfinished run without a checkpoint starts again from step 0
            runs.prepare(run_dir, overwrite=True)
    weights = sum(p.numel() * p.element_size() for p in trainable)
    # the adapter, and a checkpoint (weights + Adam's two moments) twice while it is replaced
    runs.check_space(run_dir, weights * (7 if checkpoint_every else 1) + 200 * options.steps + 2**20,
                     "adapter, metrics and checkpoints" if checkpoint_every else "adapter and metrics")
    adapters.save_initial(model, spec, run_dir / "adapter-init")
    runs.write_json(run_dir / "config.json", {**record, "runtime": runtime, "versions": runs.versions()})
    return state


def train(config: TrainConfig, out: str | Path | None = None, overwrite: bool = False,
          progress: bool = False, checkpoint_every: int | None = None, resume: bool = False,
          evaluate: bool = True, tensorboard: str | Path | None = None) -> RunResult:
    """Train `config.task` under `config.rule`; see `fit` for the loop, the run directory,
    checkpoints, resuming and `tensorboard`. `evaluate=False` skips the held-out evaluations (for
    probes scored by their train loss, as in `calibrate`)."""
    config.check()
    if tensorboard is not None:  # refuse a missing package before making the run directory
        _summary_writer()
    check_run_directory(Path(out) if out is not None else None, overwrite, resume, checkpoint_every)
    devices.autocast_dtype(devices.resolve(config.device), config.dtype)  # a device this machine lacks, before all
    if out is not None and resume:  # refuse another run's directory, or a finished one, before building the task
        runs.resumable(Path(out), {"config": asdict(config)})
    elif out is not None:  # refuse a taken directory before spending time on the task
        runs.prepare(out, overwrite)
        overwrite = True
    torch.manual_seed(config.seed)
    began = time.perf_counter()
    task = tasks.build(config.task, seed=config.seed, batch_size=config.batch_size, **config.task_options)
    load_time = time.perf_counter() - began
    record = {"config": asdict(config), "task_info": task.info, "metric": task.metric,
              "higher_is_better": task.higher_is_better}
    return fit(task.model, task.batches, task.loss, config.adapter_spec(task), config.fit_options(task),
               evaluate=task.evaluate if evaluate else None, out=out, overwrite=overwrite, resume=resume,
               checkpoint_every=checkpoint_every, progress=progress, record=record, tensorboard=tensorboard,
               load_time_s=load_time)


class _Bar:
    """A rich progress bar showing the loss and the headline eval metric."""

    def __init__(self, steps: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), transient=False)
        self.task = self.progress.add_task("train", total=steps, info="")
        self.progress.start()

    def update(self, step: int, loss: float, metrics: dict[str, float]) -> None:
        info = f"loss {loss:.4g}" + "".join(f"  {k} {v:.4g}" for k, v in list(metrics.items())[:2])
        self.progress.update(self.task, completed=step, info=info)

    def close(self) -> None:
        self.progress.stop()


def _progress(enabled: bool, steps: int) -> _Bar | None:
    return _Bar(steps) if enabled else None

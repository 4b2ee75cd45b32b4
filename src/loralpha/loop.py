"""The training loop: AdamW, warm-up + cosine (or constant) schedule, optional
clipping, periodic evaluation and divergence detection; what a run writes goes to
its one recorder (`loralpha.runlog`).

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
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import adapters, devices, tasks
from .adapters import AdapterSpec
from .config import FitOptions, TrainConfig
from .faults import StopRequest, finite_grads, locate_fault
from .runlog import Run, RunLog, RunOutput, RunResult, preflight

__all__ = ["FitOptions", "RunResult", "TrainConfig", "fit", "train"]

Loss = Callable[[nn.Module, Any], torch.Tensor]  # loss(model, batch): a scalar
Evaluate = Callable[[nn.Module], dict[str, float]]  # evaluate(model): held-out metrics by name
FINAL_WINDOW = 10  # final_loss = mean train loss over the last this-many steps


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


def fit(model: nn.Module, batches: Iterable[Any], loss: Loss,
        spec: AdapterSpec, options: FitOptions, *, evaluate: Evaluate | None = None,
        load_time_s: float | None = None, **output: Any) -> RunResult:
    """Adapt `model` under `spec` and train it for `options.steps` AdamW steps on `loss(model, batch)`.

    `options.lr` must be set here (`train` resolves an unset one to the rule's default η for the
    task). `evaluate(model)` returns held-out metrics; it runs at step 0, every `eval_every` steps
    and at the end. With `track_every`, Signal-Drift metrics are taken every that many steps.
    `output` takes the keywords of `RunOutput`: with `out`, writes the run directory (see
    `loralpha.runs`; `record` adds to its config.json, `overwrite` replaces a taken one). With
    `checkpoint_every`, `out/checkpoint.pt` is rewritten every that many steps; `resume` continues the
    run in `out` from it (or starts it, when `out` holds no run yet). With `tensorboard`, writes
    TensorBoard event files into that directory: every metrics.jsonl value (`train/loss`, `train/lr`,
    `eval/<metric>`) and the tracker's `signal_drift/{mean,weighted}/<metric>`; a resumed run appends to
    it and hides the steps after its checkpoint that the first try had logged. `progress` shows a bar.
    The result splits the loop's wall time into training and evaluation; `load_time_s`, the caller's time
    spent building the model and data, is recorded beside them.
    The adapted model trains on `options.device` (`loss` receives batches already moved there; `evaluate`
    must put what it builds itself on the model's device) with its frozen weights in `options.dtype`.
    """
    options = copy.copy(options)
    options.check_fit(need_lr=True)
    run = preflight(options, RunOutput(**output), expected={})
    run.load_time_s = load_time_s
    return _fit(model, batches, loss, spec, run, evaluate)


def _fit(model: nn.Module, batches: Iterable[Any], loss: Loss,
         spec: AdapterSpec, run: Run, evaluate: Evaluate | None, test: Evaluate | None = None) -> RunResult:
    """The loop of `fit` and `train`, on a `run` that `preflight` checked; `test` is read once, after the last
    step of a finished run, and by nothing in the loop."""
    options, device, log = run.options, run.device, RunLog(run)
    model, opt, sched, named = _setup(model, spec, run)
    state = log.open(model, spec, named, opt, sched)
    start_step = state["step"] if state else 0
    result = RunResult(status="done", steps=start_step, final_loss=None, eval={}, wall_time_s=0.0,
                       run_dir=str(log.dir) if log.dir else None, resumed_from=start_step if state else None,
                       load_time_s=run.load_time_s)
    held_out, forward_loss = _Evaluation(model, evaluate, run), _under_autocast(loss, run)
    stream, trainable = _batches(batches), [p for _, p in named]
    losses: list[float] = list(state["losses"]) if state else []
    metrics: dict[str, float] = dict(state["metrics"]) if state else {}
    start, stop = time.perf_counter(), StopRequest()
    try:
        with stop:
            if state:
                _restore(state, stream, device)
            else:
                metrics = held_out()
                log.row({"step": 0, **metrics}, metrics)
            log.start()
            model.train()
            for step in range(start_step + 1, options.steps + 1):
                # Ctrl-C came during the last step, which finished (the state is whole), or a finite iterator ran out
                batch = None if stop.requested else next(stream, None)
                if batch is None:
                    break
                log.begin(step)
                current, fault = _forward_backward(model, forward_loss, devices.to_device(batch, device), step, opt,
                                                   named, losses, options.diverge_ratio)
                if fault:
                    result.status, result.diverged_at, (result.reason, result.diverged_layer) = "diverged", step, fault
                    break
                losses.append(current)
                if options.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, options.grad_clip)
                row: dict[str, Any] = {"step": step, "loss": current, "lr": sched.get_last_lr()[0]}
                opt.step()
                sched.step()
                result.steps = step
                log.stepped(step)
                if step % options.eval_every == 0 or step == options.steps:
                    metrics = held_out()
                    row.update(metrics)
                    _check_finite(result, metrics, step)
                log.row(row, metrics)
                if result.status == "diverged":
                    break
                if log.checkpoint_due(step):
                    log.checkpoint(step, losses, metrics)
        if stop.requested and result.status == "done" and result.steps < options.steps:
            result.status, result.reason = "interrupted", f"interrupted by the user after step {result.steps}"
            if result.steps > start_step:  # stopped between steps: the state is whole
                log.checkpoint(result.steps, losses, metrics)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: stop at once, mid-step maybe
        result.status, result.reason = "interrupted", f"interrupted by the user after step {result.steps}"
    finally:
        log.stop()
    if test is not None and result.status == "done" and result.steps == options.steps:
        tested = _Evaluation(model, test, run)
        result.test = tested()
        held_out.seconds += tested.seconds
    _finish(result, time.perf_counter() - start, held_out.seconds, losses, metrics, model, log.drift)
    log.close(model, result)
    return result


def _setup(model: nn.Module, spec: AdapterSpec, run: Run):
    """The adapted model (seeded) on the run's device with its frozen weights in the run's dtype, its AdamW
    optimizer and schedule, and its trainable parameters by name."""
    options = run.options
    torch.manual_seed(options.seed)
    model = adapters.adapt(model, spec)
    devices.set_precision(model, devices.torch_dtype(options.dtype))
    model.to(run.device)
    opt = adapters.optimizer(model, spec, options.lr, options.weight_decay, options.head_lr)
    sched = _schedule(opt, options.schedule, options.warmup, options.steps)
    return model, opt, sched, adapters.trainable_parameters(model)


def _restore(state: dict[str, Any], stream, device: torch.device) -> None:
    """Continue from a checkpoint: skip the batches its steps trained on (batch order is seeded) and put
    the RNG back as it was."""
    for _ in range(state["step"]):
        next(stream, None)
    torch.set_rng_state(state["rng"])
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)


class _Evaluation:
    """The held-out evaluation: the model in eval mode, under the run's autocast; `seconds` adds up its time."""

    def __init__(self, model: nn.Module, evaluate: Evaluate | None, run: Run):
        self.model, self.evaluate, self.run, self.seconds = model, evaluate, run, 0.0

    def __call__(self) -> dict[str, float]:
        if self.evaluate is None:
            return {}
        began = time.perf_counter()
        self.model.eval()
        with devices.autocast(self.run.device, self.run.amp):
            metrics = self.evaluate(self.model)
        self.model.train()
        self.seconds += time.perf_counter() - began
        return metrics


def _under_autocast(loss: Loss, run: Run) -> Loss:
    def forward_loss(net: nn.Module, batch: Any) -> torch.Tensor:
        with devices.autocast(run.device, run.amp):  # the backward pass runs outside autocast, as torch advises
            return loss(net, batch)
    return forward_loss


def _check_finite(result: RunResult, metrics: dict[str, float], step: int) -> None:
    """A held-out metric that is not finite ends the run as diverged."""
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        result.status, result.diverged_at = "diverged", step
        result.reason = f"eval {bad[0]} is not finite at step {step}"


def _finish(result: RunResult, wall: float, eval_time: float, losses: list[float], metrics: dict[str, float],
            model: nn.Module, drift: list[dict[str, Any]]) -> None:
    """Fill in what the result knows only at the end (a diverged run has no final loss or metrics)."""
    last = losses[-FINAL_WINDOW:]
    result.final_loss = sum(last) / len(last) if last and result.status != "diverged" else None
    result.eval = metrics if result.status != "diverged" else {}
    result.wall_time_s, result.eval_time_s = wall, eval_time
    result.model, result.signal_drift, result.losses = model, drift, list(losses)


def _forward_backward(model: nn.Module, loss: Loss, batch: Any, step: int,
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



def train(config: TrainConfig, out: str | Path | None = None, overwrite: bool = False,
          progress: bool = False, checkpoint_every: int | None = None, resume: bool = False,
          evaluate: bool = True, tensorboard: str | Path | None = None) -> RunResult:
    """Train `config.task` under `config.rule`; see `fit` for the loop, the run directory,
    checkpoints, resuming and `tensorboard`. `evaluate=False` skips the held-out evaluations (for
    probes scored by their train loss, as in `calibrate`)."""
    config.check()
    output = RunOutput(out, overwrite, resume, checkpoint_every, progress, tensorboard)
    # a taken directory, another run's or a finished one, and a device this machine lacks, before the task is built
    run = preflight(config, output, expected={"config": asdict(config)})
    torch.manual_seed(config.seed)
    began = time.perf_counter()
    task = tasks.build(config.task, seed=config.seed, batch_size=config.batch_size, **config.task_options)
    run.load_time_s = time.perf_counter() - began
    run.options = config.fit_options(task)
    output.record = {"config": asdict(config), "task_info": task.info, "metric": task.metric,
                     "higher_is_better": task.higher_is_better}
    return _fit(task.model, task.batches, task.loss, config.adapter_spec(task), run,
                task.evaluate if evaluate else None, task.test if evaluate else None)

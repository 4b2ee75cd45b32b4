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
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from . import adapters, checkpoints, runs, scaling
from .adapters import AdapterSpec
from .checkpoints import CHECKPOINT
from .errors import UsageError
from .faults import StopRequest, finite_grads, locate_fault

FINAL_WINDOW = 10  # final_loss = mean train loss over the last this-many steps


@dataclass
class TrainConfig:
    """A run of a named task: everything `loralpha train` takes."""

    task: str = "teacher-student"  # teacher-student, tweets, bbc-news, classify or sft (your --data), sft-gemma
    rule: str = "lora-alpha"  # an α rule of loralpha.scaling
    rank: int = 8  # LoRA rank r
    coef: float = scaling.PAPER_COEF  # c of lora-alpha (α = c·√r)
    alpha: float = scaling.DEFAULT_ALPHA  # α of fixed, rslora, loraplus
    lr: float | None = None  # None: the rule's default (task full-FT rate, or 2e-4)
    head_lr: float | None = None  # rate of a new head (classifier) under every rule; None: the task's
    steps: int = 200  # optimizer steps
    batch_size: int | None = None  # None: the task's default
    seed: int = 0  # adapter init, head init and batch order
    targets: list[str] | None = None  # None: the task's default modules
    rank_pattern: dict[str, int] = field(default_factory=dict)  # module regex -> rank
    init: str = "default"  # default, gaussian, pissa, olora
    dora: bool = False  # DoRA
    loraplus_ratio: float = scaling.LORAPLUS_RATIO  # η_B / η_A under loraplus
    weight_decay: float = 0.0  # AdamW weight decay
    schedule: str = "cosine"  # cosine (decays to 0) or constant, after the warm-up
    warmup: float = 0.0  # warm-up length as a fraction of the steps
    grad_clip: float | None = None  # clip the gradient norm to this, if set
    eval_every: int = 50  # steps between held-out evaluations (plus one at 0 and at the end)
    diverge_ratio: float = 10.0  # a loss above this × the first loss counts as divergence
    track_every: int | None = None  # Signal-Drift metrics every this many steps (None: off)
    task_options: dict[str, Any] = field(default_factory=dict)  # model, data, width, ... of the task


    def check(self) -> "TrainConfig":
        """Reject bad values before any model or data is loaded."""
        from .tasks import TASKS

        if self.task not in TASKS:
            raise UsageError(f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}")
        scaling.check_rule(self.rule)
        AdapterSpec(rule=self.rule, rank=self.rank, targets=["-"], coef=self.coef, alpha=self.alpha,
                    rank_pattern=dict(self.rank_pattern), init=self.init, loraplus_ratio=self.loraplus_ratio).check()
        if self.lr is not None:
            scaling.check_positive(self.lr, "learning rate")
        if self.head_lr is not None:
            scaling.check_positive(self.head_lr, "head learning rate")
        for name in ("steps", "eval_every", "track_every"):
            value = getattr(self, name)
            if name == "track_every" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch size must be a positive integer, got {self.batch_size}")
        if self.targets is not None and not self.targets:
            raise UsageError("targets is empty; name the modules to adapt or leave it unset for the task's default")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise UsageError(f"weight decay must be a finite number ≥ 0, got {self.weight_decay}")
        if self.grad_clip is not None:
            scaling.check_positive(self.grad_clip, "gradient clipping norm")
        scaling.check_positive(self.diverge_ratio, "divergence ratio")
        if self.schedule not in ("cosine", "constant"):
            raise UsageError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        if not 0 <= self.warmup < 1:
            raise UsageError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        return self


@dataclass
class RunResult:
    status: str  # done, diverged or interrupted
    steps: int  # optimizer steps taken
    final_loss: float | None  # mean train loss over the last FINAL_WINDOW steps (None if diverged)
    eval: dict[str, float]  # held-out metrics at the end
    wall_time_s: float
    diverged_at: int | None = None
    reason: str | None = None
    run_dir: str | None = None
    diverged_layer: str | None = None  # first module with a non-finite output (or parameter with a non-finite gradient)
    resumed_from: int | None = None  # the checkpoint step this run continued from
    model: nn.Module | None = field(default=None, repr=False, compare=False)  # the trained model, in-process
    signal_drift: list[dict[str, Any]] = field(default_factory=list, repr=False)  # tracker records, in-process

    def summary(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("model", "signal_drift")}


def _schedule(opt: torch.optim.Optimizer, kind: str, warmup: float, steps: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    if not 0 <= warmup < 1:
        raise UsageError(f"warmup is a fraction of the steps in [0, 1), got {warmup}")
    n_warm = int(warmup * steps)
    if kind == "cosine":
        return get_cosine_schedule_with_warmup(opt, n_warm, steps)
    if kind == "constant":
        return get_constant_schedule_with_warmup(opt, n_warm)
    raise UsageError(f"unknown schedule {kind!r}; choose cosine or constant")


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
        spec: AdapterSpec, *, lr: float, steps: int, head_lr: float | None = None, evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        seed: int = 0, weight_decay: float = 0.0, schedule: str = "cosine", warmup: float = 0.0,
        grad_clip: float | None = None, eval_every: int = 50, diverge_ratio: float = 10.0,
        track_every: int | None = None, out: str | Path | None = None, overwrite: bool = False, progress: bool = False,
        config: dict[str, Any] | None = None, checkpoint_every: int | None = None, resume: bool = False) -> RunResult:
    """Adapt `model` under `spec` and train it for `steps` AdamW steps on `loss(model, batch)`.

    With `out`, writes the run directory (see `loralpha.runs`). `evaluate(model)` returns
    held-out metrics; it runs at step 0, every `eval_every` steps and at the end. With
    `track_every`, Signal-Drift metrics are taken every that many steps (`signal_drift.jsonl`).
    With `checkpoint_every`, `out/checkpoint.pt` is rewritten every that many steps; `resume`
    continues the run in `out` from it (or starts it, when `out` holds no run yet).
    """
    lr = scaling.check_positive(lr, "learning rate")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a positive integer, got {steps!r}")
    if eval_every < 1:
        raise UsageError(f"eval_every must be a positive integer, got {eval_every}")
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise UsageError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if (checkpoint_every is not None or resume) and out is None:
        raise UsageError("checkpoints and resuming need a run directory; give one with --out")
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite replaces it; choose one")
    run_dir = Path(out) if out is not None else None
    if run_dir is not None and not (resume and runs.resumable(run_dir, {})):
        runs.prepare(run_dir, overwrite)
    torch.manual_seed(seed)
    model = adapters.adapt(model, spec)
    opt = adapters.optimizer(model, spec, lr, weight_decay, head_lr)
    sched = _schedule(opt, schedule, warmup, steps)
    named = adapters.trainable_parameters(model)
    trainable = [p for _, p in named]
    state = None
    if run_dir is not None:
        record = dict(config or {})
        record.update(spec=asdict(spec), lr=lr, head_lr=head_lr, steps=steps, seed=seed, weight_decay=weight_decay,
                      schedule=schedule, warmup=warmup, grad_clip=grad_clip, eval_every=eval_every,
                      diverge_ratio=diverge_ratio, track_every=track_every, trainable_params=sum(p.numel() for p in trainable))
        if spec.rule != "full":
            record.update(lora_alpha=spec.lora_alpha(spec.rank), gamma=spec.lora_alpha(spec.rank) / spec.rank)
        if resume and runs.resumable(run_dir, record):
            state = checkpoints.load(run_dir / CHECKPOINT, named, opt, sched)
            if state is None:  # an unfinished run without a checkpoint starts again from step 0
                runs.prepare(run_dir, overwrite=True)
        weights = sum(p.numel() * p.element_size() for p in trainable)
        # the adapter, and a checkpoint (weights + Adam's two moments) twice while it is replaced
        runs.check_space(run_dir, weights * (7 if checkpoint_every else 1) + 200 * steps + 2**20,
                         "adapter, metrics and checkpoints" if checkpoint_every else "adapter and metrics")
        adapters.save_initial(model, spec, run_dir / "adapter-init")
        runs.write_json(run_dir / "config.json", {**record, "versions": runs.versions()})
    start_step = state["step"] if state else 0
    if state:  # the rows after the checkpoint are about to be trained again
        for name in ("metrics.jsonl", "signal_drift.jsonl"):
            checkpoints.truncate_rows(run_dir / name, start_step)
    tracker = None
    if track_every is not None:
        if spec.rule == "full":
            raise UsageError("Signal-Drift tracking needs LoRA layers; rule 'full' has none")
        from .signal_drift import SignalDriftTracker
        tracker = SignalDriftTracker(model, every=track_every, path=run_dir / "signal_drift.jsonl" if run_dir else None)
    # line-buffered: a killed run keeps its rows
    log = open(run_dir / "metrics.jsonl", "a" if state else "w", buffering=1) if run_dir is not None else None

    def evaluation() -> dict[str, float]:
        if evaluate is None:
            return {}
        model.eval()
        metrics = evaluate(model)
        model.train()
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
            else:
                metrics = evaluation()
                if log:
                    _write(log, json.dumps(runs.clean({"step": 0, **metrics})) + "\n")
            bar = _progress(progress, steps)
            model.train()
            for step in range(start_step + 1, steps + 1):
                if stop.requested:  # Ctrl-C came during the last step, which finished: the state is whole
                    break
                batch = next(stream, None)
                if batch is None:  # a finite iterator ran out
                    break
                if tracker:
                    tracker.begin(step)
                value = loss(model, batch)
                current = float(value.detach())
                if not math.isfinite(current):
                    diverged_layer, where = locate_fault(model, loss, batch, named)
                    status, diverged_at = "diverged", step
                    reason = f"loss is {current} at step {step}; first non-finite value: {where}"
                    break
                if losses and current > diverge_ratio * losses[0]:
                    status, diverged_at = "diverged", step
                    reason = (f"loss {current:.4g} at step {step} exceeds {diverge_ratio:g}× the first loss "
                              f"{losses[0]:.4g}")
                    break
                opt.zero_grad(set_to_none=True)
                value.backward()
                if not finite_grads(trainable):  # checked before the step: the weights stay finite
                    diverged_layer, where = locate_fault(model, loss, batch, named)
                    status, diverged_at = "diverged", step
                    reason = f"gradient is not finite at step {step} (loss {current:.4g}); first non-finite value: {where}"
                    break
                losses.append(current)
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
                row: dict[str, Any] = {"step": step, "loss": current, "lr": sched.get_last_lr()[0]}
                opt.step()
                sched.step()
                completed = step
                if tracker:
                    tracker.end(step)
                if step % eval_every == 0 or step == steps:
                    metrics = evaluation()
                    row.update(metrics)
                    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
                    if bad:
                        status, diverged_at, reason = "diverged", step, f"eval {bad[0]} is not finite at step {step}"
                if log:
                    _write(log, json.dumps(runs.clean(row)) + "\n")
                if bar:
                    bar.update(step, current, metrics)
                if status == "diverged":
                    break
                if checkpoint_every and step % checkpoint_every == 0 and step < steps:
                    checkpoints.save(run_dir / CHECKPOINT, step, named, opt, sched, losses, metrics)
        if stop.requested and status == "done" and completed < steps:
            status, reason = "interrupted", f"interrupted by the user after step {completed}"
            if checkpoint_every and completed > start_step:  # stopped between steps: the state is whole
                checkpoints.save(run_dir / CHECKPOINT, completed, named, opt, sched, losses, metrics)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the main thread: stop at once, mid-step maybe
        status, reason = "interrupted", f"interrupted by the user after step {completed}"
    finally:
        if tracker:
            tracker.close()
        if bar:
            bar.close()
        if log:
            log.close()
    wall = time.perf_counter() - start
    final = sum(losses[-FINAL_WINDOW:]) / len(losses[-FINAL_WINDOW:]) if losses and status != "diverged" else None
    result = RunResult(status=status, steps=completed, final_loss=final,
                       eval=metrics if status != "diverged" else {}, wall_time_s=wall, diverged_at=diverged_at,
                       reason=reason, run_dir=str(run_dir) if run_dir else None, model=model,
                       signal_drift=tracker.records if tracker else [], diverged_layer=diverged_layer,
                       resumed_from=start_step if state else None)
    if run_dir is not None:
        try:
            adapters.save(model, spec, run_dir / "adapter", run_dir / "adapter-init")
            runs.write_json(run_dir / "summary.json", result.summary())
        except OSError as e:
            raise UsageError(f"cannot save the run into {run_dir}: {e.strerror or e}"
                             + ("; free some space and rerun with --resume" if checkpoint_every else "")) from None
        if status != "interrupted":
            (run_dir / CHECKPOINT).unlink(missing_ok=True)  # finished: nothing is left to resume
    return result


def _write(log, text: str) -> None:
    try:
        log.write(text)
    except OSError as e:
        raise UsageError(f"cannot write {log.name}: {e.strerror or e}; free some space and rerun") from None


def train(config: TrainConfig, out: str | Path | None = None, overwrite: bool = False,
          progress: bool = False, checkpoint_every: int | None = None, resume: bool = False,
          evaluate: bool = True) -> RunResult:
    """Train `config.task` under `config.rule`; see `fit` for the loop, the run directory,
    checkpoints and resuming. `evaluate=False` skips the held-out evaluations (for probes
    scored by their train loss, as in `calibrate`)."""
    from . import tasks

    config.check()
    if out is not None and resume:  # refuse another run's directory, or a finished one, before building the task
        if overwrite:
            raise UsageError("--resume continues a run and --overwrite replaces it; choose one")
        runs.resumable(Path(out), {"config": asdict(config)})
    elif out is not None:  # refuse a taken directory before spending time on the task
        runs.prepare(out, overwrite)
        overwrite = True
    torch.manual_seed(config.seed)
    task = tasks.build(config.task, seed=config.seed, batch_size=config.batch_size, **config.task_options)
    spec = AdapterSpec(rule=config.rule, rank=config.rank, targets=list(config.targets or task.targets),
                       coef=config.coef, alpha=config.alpha, rank_pattern=dict(config.rank_pattern),
                       init=config.init, dora=config.dora, loraplus_ratio=config.loraplus_ratio,
                       heads=task.heads, task_type=task.task_type)
    lr = config.lr if config.lr is not None else scaling.default_lr(config.rule, task.full_ft_lr)
    record = {"config": asdict(config), "task_info": task.info, "metric": task.metric,
              "higher_is_better": task.higher_is_better}
    head_lr = config.head_lr if config.head_lr is not None else task.head_lr
    return fit(task.model, task.batches, task.loss, spec, lr=lr, head_lr=head_lr, steps=config.steps,
               evaluate=task.evaluate if evaluate else None, seed=config.seed, weight_decay=config.weight_decay,
               schedule=config.schedule, warmup=config.warmup, grad_clip=config.grad_clip,
               eval_every=config.eval_every, diverge_ratio=config.diverge_ratio, track_every=config.track_every,
               out=out, overwrite=overwrite, progress=progress, config=record,
               checkpoint_every=checkpoint_every, resume=resume)


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

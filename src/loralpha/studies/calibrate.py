"""Calibrate a LoRA run from short probes: the point (η_A, γ·η_B) of the Adam plane for a model + task + budget.

Under Adam with B = 0 at init, α and B's learning rate are one knob (`scaling.adam_plane`): choosing LoRA's α and
η is choosing a point (x, y) = (η_A, γ·η_B), and every rule (LoRA-α, plain LoRA, LoRA+) reaches every point. A probe
at (x, y) trains rule lora-alpha at η = x with c = y·√r / x for a few steps, on the target run's schedule compressed
to the probe's length, and is scored by its own train loss on batches it has not trained on
(`loralpha.studies.calibrate_method`: the map, the check, the carry to the target and how sure, within a budget of
optimizer steps that is by default one target run).

`calibrate` probes a named task (`loralpha train`'s tasks, each probe a `train` run); `calibrate_fit` probes any
`torch.nn.Module` the way `loralpha.fit` trains one (the model built once, its weights restored after each probe);
`loralpha.integrations.calibrate_for_trainer` does it for a Hugging Face `Trainer`'s model, dataset and collator.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from .. import devices, scaling
from ..checks import positive_int
from ..config import AdapterSpec, FitOptions, train_command
from ..errors import UsageError
from ..loop import TrainConfig, fit, train
from ..tasks.base import facts
from .calibrate_c import check_fields
from .calibrate_method import (  # noqa: F401  (the method's pieces, part of this module's API)
    CHECK_PROBES,
    CHECK_RATIO,
    FLAT,
    HALF_DECADE,
    PROBE_FLOOR,
    WALK_PROBES,
    WIDEN_PROBES,
    carry,
    check_seeds,
    horizons,
    lattice,
    least_budget,
    long_optimum,
    quadratic_fit,
    search,
    short_optimum,
    vertex,
)
from .calibrate_method import default_lattice as lattice_around
from .calibrate_words import carry_words, summary_line  # noqa: F401  (part of this module's API)

SET_BY_CALIBRATE = ("task", "rule", "rank", "coef", "lr", "steps", "seed", "eval_every", "alpha", "loraplus_ratio")
SET_BY_CALIBRATE_FIT = ("lr", "steps", "seed", "eval_every")
FIT_FULL_FT_LR = 2e-5  # calibrate_fit's lattice centre without a task: the usual full-fine-tuning η of an LLM


def default_lattice(task: str, rank: int) -> tuple[list[float], list[float]]:
    """The map's x (η_A) and y (γ·η_B) by default: x around 10 × the task's full-FT η, y around the paper's point."""
    return lattice_around(facts(task).full_ft_lr, rank)


def coef_of(x: float, y: float, rank: int) -> float:
    """c of lora-alpha that puts a run at η = x on the point (x, y): γ = c/√r = y/x."""
    return y / x * math.sqrt(rank)


def settings(x: float, y: float, rank: int) -> dict[str, dict[str, float]]:
    """The point (x, y) as each rule writes it: LoRA-α (c, η), plain LoRA (lora_alpha, η), LoRA+ (α = 16, η, ratio)."""
    gamma = y / x
    return {"lora-alpha": {"coef": coef_of(x, y, rank), "alpha": gamma * rank, "lr": x},
            "lora": {"alpha": gamma * rank, "lr": x},
            "loraplus": {"alpha": scaling.DEFAULT_ALPHA, "lr": x,
                         "loraplus_ratio": gamma * rank / scaling.DEFAULT_ALPHA}}


@dataclass
class PlaneCalibration:
    """The chosen point, every probe, how sure, and what it cost."""

    task: str | None  # None: a model of the caller's own (`calibrate_fit`)
    rank: int
    steps: int  # T: the target run's optimizer steps
    eta_A: float  # the chosen point (with `unknown`: the best probe's, no calibrated point)
    gamma_eta_B: float
    unknown: bool  # the optimum was bracketed along neither axis: the point is a best probe, not an answer
    settings: dict[str, dict[str, float]]  # the point as LoRA-α, plain LoRA and LoRA+ write it
    command: str  # the `loralpha train` command (a `loralpha.fit` call for a model of one's own) of the point
    horizons: dict[str, int | None]  # short (T_s), long (T_l; None: no check), target (T)
    xs: list[float]  # the map's lattice as given (as widened: short["lattice"])
    ys: list[float]
    probes: list[dict[str, Any]]  # stage, x, y, coef, steps, seed, status, score, curve
    short: dict[str, Any]  # p_s: x, y, how ("quadratic", "parabolas", "best point"), best lattice point, edge
    long: dict[str, Any]  # p_l: x, y, how per axis, flat widths, bracketed per axis
    carried: dict[str, Any]  # per axis: slope (clamped), decades moved T_s→T_l and T_l→T
    certainty: dict[str, Any]  # per axis: bracketed, flat width, horizon moves; edge; unknown; one-line summary
    seeds: list[int]
    budget_steps: int
    cost_steps: int  # optimizer steps actually taken (a diverged probe stops early)
    wall_time_s: float
    config: dict[str, Any]  # the target run's TrainConfig (the command's), or calibrate_fit's options

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _point(found: dict[str, Any], rank: int) -> tuple[float, float]:
    """A point one can type: η to 3 digits, c to 4 (y follows from them)."""
    x = float(f"{found['x']:.3g}")
    return x, float(f"{coef_of(x, found['y'], rank):.4g}") * x / math.sqrt(rank)


def _checked_budget(budget_steps: int | None, steps: int) -> int:
    return positive_int(steps if budget_steps is None else budget_steps, "probe budget (budget_steps=)")


def calibrate(task: str = "teacher-student", steps: int = 200, rank: int = 8, budget_steps: int | None = None,
              xs: Sequence[float] | None = None, ys: Sequence[float] | None = None, seeds: Sequence[int] = (0,),
              on_probe: Callable[[dict[str, Any]], None] | None = None,
              known: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
              progress: bool = False, on_progress: Callable[[dict[str, Any]], None] | None = None,
              **config_fields: Any) -> PlaneCalibration:
    """Pick the point (η_A, γ·η_B) of a `steps`-step run of `task` at rank `rank` from short probes (see
    `calibrate_method`).

    `budget_steps`: optimizer steps over all probes, never exceeded (default: `steps`, one target run). `xs`, `ys`:
    the map's lattice (default: `default_lattice`). `config_fields` are further `TrainConfig` fields of the target run
    and of every probe (batch_size, targets, task_options, schedule, warmup, …). `on_probe` is called with each
    finished probe; `known` may return a probe's result from an earlier, interrupted calibration (given the probe's
    key: stage, x, y, steps, seed), so that a calibration resumes without training it again. `on_progress` is called
    after every probe, trained or known, with where the calibration stands (`Clock.state`); `progress` prints that
    as a line per probe (`progress_line`). Raises `UsageError` for bad input, a budget too small for the map, or a map
    on which every probe diverged.
    """
    start = time.perf_counter()
    check_fields(config_fields, SET_BY_CALIBRATE)
    steps = _steps(steps)
    rank = scaling.check_rank(rank)
    base = TrainConfig(task=task, rule="lora-alpha", rank=rank, steps=steps, **config_fields).check()
    devices.autocast_dtype(devices.resolve(base.device), base.dtype)  # a device this machine lacks, before all
    dx, dy = default_lattice(task, rank)
    xs, ys = lattice(xs, dx, "η_A (xs=)"), lattice(ys, dy, "γ·η_B (ys=)")
    seeds = check_seeds(seeds)
    budget = _checked_budget(budget_steps, steps)

    def probe(x: float, y: float, n: int, seed: int) -> dict[str, Any]:
        config = TrainConfig(**{**asdict(base), "coef": coef_of(x, y, rank), "lr": x, "steps": n, "seed": seed,
                                "eval_every": n})
        result = train(config, evaluate=False)
        return {"coef": config.coef, "status": result.status, "steps_taken": result.steps, "losses": result.losses,
                "wall_time_s": result.wall_time_s}

    found = search(probe, steps=steps, budget_steps=budget, xs=xs, ys=ys, seeds=seeds, on_probe=on_probe,
                   known=known, progress=progress, on_progress=on_progress)
    x, y = _point(found, rank)
    target = {**asdict(base), "coef": coef_of(x, y, rank), "lr": x}
    return _calibration(found, task, rank, steps, x, y, train_command(target), xs, ys, seeds, budget, start, target)


def _steps(steps: int) -> int:
    return positive_int(steps, "steps of the target run")


def _calibration(found: dict[str, Any], task: str | None, rank: int, steps: int, x: float, y: float, command: str,
                 xs: list[float], ys: list[float], seeds: list[int], budget: int, start: float,
                 config: dict[str, Any]) -> PlaneCalibration:
    return PlaneCalibration(
        task=task, rank=rank, steps=steps, eta_A=x, gamma_eta_B=y, unknown=found["unknown"],
        settings=settings(x, y, rank), command=command, horizons=found["horizons"], xs=xs, ys=ys,
        probes=found["probes"], short=found["short"], long=found["long"], carried=found["carried"],
        certainty=found["certainty"], seeds=seeds, budget_steps=budget, cost_steps=found["cost_steps"],
        wall_time_s=time.perf_counter() - start, config=config)


Batches = Iterable[Any] | Callable[[int], Iterable[Any]]


def calibrate_fit(model: nn.Module | Callable[[], nn.Module], batches: Batches,
                  loss: Callable[[nn.Module, Any], Any], *, steps: int, targets: Sequence[str], rank: int = 8,
                  budget_steps: int | None = None, full_ft_lr: float = FIT_FULL_FT_LR,
                  xs: Sequence[float] | None = None, ys: Sequence[float] | None = None, seeds: Sequence[int] = (0,),
                  heads: Sequence[str] = (), task_type: str | None = None, batch_size: int | None = None,
                  on_probe: Callable[[dict[str, Any]], None] | None = None,
                  known: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
                  progress: bool = False, on_progress: Callable[[dict[str, Any]], None] | None = None,
                  **options: Any) -> PlaneCalibration:
    """`calibrate` for any module, trained the way `loralpha.fit` trains it: the point (η_A, γ·η_B) of a `steps`-step
    run of `model` (or of what the factory `model()` builds, once) adapted at `targets` under rule lora-alpha.

    `batches`: a re-iterable that yields the same batches in the same order each time (a list, a DataLoader without
    shuffling), or `batches(seed)` giving a fresh one per probe (a seeded shuffle); every probe of a seed sees the
    same order, and each is scored by its own `loss(model, batch)` on the batches it has not trained on yet (no
    held-out data is read). `full_ft_lr`: the full-fine-tuning η the default lattice centres on. `heads`: modules
    trained fully (a new classifier; at `head_lr` of `options`), `task_type` PEFT's. `batch_size` is recorded for
    `trainer_settings` only. `options`: further `FitOptions` fields (schedule, warmup, weight_decay, head_lr,
    grad_clip, device, dtype, …). The model's weights are copied once (to the CPU) and restored after every probe
    and at the end: it comes back as it was given. The rest is `calibrate`'s.
    """
    start = time.perf_counter()
    check_fields(options, SET_BY_CALIBRATE_FIT, FitOptions, "calibrate_fit")
    steps = _steps(steps)
    rank = scaling.check_rank(rank)
    spec = AdapterSpec(rule="lora-alpha", rank=rank, targets=list(targets), heads=list(heads),
                       task_type=task_type).check()
    base = FitOptions(steps=steps, lr=full_ft_lr, **options)
    base.check_fit()
    devices.autocast_dtype(devices.resolve(base.device), base.dtype)
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    if not callable(loss):
        raise UsageError(f"loss must be a function loss(model, batch) -> scalar tensor, got {type(loss).__name__}")
    dx, dy = lattice_around(base.lr, rank)
    xs, ys = lattice(xs, dx, "η_A (xs=)"), lattice(ys, dy, "γ·η_B (ys=)")
    seeds = check_seeds(seeds)
    budget = _checked_budget(budget_steps, steps)
    if isinstance(batches, nn.Module) or not (callable(batches) or isinstance(batches, Iterable)):
        raise UsageError(f"batches must be a re-iterable of batches or a function of the seed, got "
                         f"{type(batches).__name__}")
    module = model if isinstance(model, nn.Module) else model() if callable(model) else None
    if not isinstance(module, nn.Module):
        raise UsageError(f"model must be a torch.nn.Module or a function that builds one, got {type(model).__name__}")
    saved = _Saved(module)

    def probe(x: float, y: float, n: int, seed: int) -> dict[str, Any]:
        coef = coef_of(x, y, rank)
        options_n = FitOptions(**{**asdict(base), "lr": x, "steps": n, "seed": seed, "eval_every": n})
        data = batches(seed) if callable(batches) else batches
        try:
            result = fit(module, data, loss, replace_coef(spec, coef), options_n)
        finally:
            saved.restore()
        return {"coef": coef, "status": result.status, "steps_taken": result.steps, "losses": result.losses,
                "wall_time_s": result.wall_time_s}

    try:
        found = search(probe, steps=steps, budget_steps=budget, xs=xs, ys=ys, seeds=seeds, on_probe=on_probe,
                       known=known, progress=progress, on_progress=on_progress)
    finally:
        saved.restore(exactly=True)
    x, y = _point(found, rank)
    config = {**asdict(base), "lr": x, "coef": coef_of(x, y, rank), "targets": list(targets), "heads": list(heads),
              "task_type": task_type, "batch_size": batch_size}
    command = (f"loralpha.fit(model, batches, loss, AdapterSpec(rule='lora-alpha', rank={rank}, "
               f"coef={config['coef']:.4g}, targets={list(targets)!r}), FitOptions(lr={x:g}, steps={steps}))")
    return _calibration(found, None, rank, steps, x, y, command, xs, ys, seeds, budget, start, config)


def replace_coef(spec: AdapterSpec, coef: float) -> AdapterSpec:
    out = copy.deepcopy(spec)
    out.coef = coef
    return out


class _Saved:
    """A module's weights and buffers, copied once to the CPU: `restore()` takes a probe's adapters off (PEFT's
    unload, which puts a trained head's original module back) and loads them back; `exactly` also puts back each
    tensor's dtype, device and requires_grad, as the caller gave them."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        self.where = {k: (v.device, v.dtype) for k, v in module.state_dict().items()}
        self.grad = {k: p.requires_grad for k, p in module.named_parameters()}

    def restore(self, exactly: bool = False) -> None:
        self._unload()
        if not exactly:
            self.module.load_state_dict(self.state)
            return
        tensors = dict(self.module.named_parameters()) | dict(self.module.named_buffers())
        for name, t in tensors.items():
            if name not in self.state:  # a non-persistent buffer (rotary frequencies): no probe changes it
                continue
            device, dtype = self.where[name]
            t.data = self.state[name].to(device=device, dtype=dtype)
        for name, p in self.module.named_parameters():
            p.requires_grad_(self.grad[name])

    def _unload(self) -> None:
        """Replace each PEFT-wrapped layer by its base layer (what `get_peft_model` changed in place)."""
        from peft.tuners.lora import LoraLayer
        from peft.utils import ModulesToSaveWrapper

        for child in list(self.module.modules()):
            for attr, sub in list(child.named_children()):
                if isinstance(sub, LoraLayer):
                    setattr(child, attr, sub.get_base_layer())
                elif isinstance(sub, ModulesToSaveWrapper):
                    setattr(child, attr, sub.original_module)


def plot(cal: dict[str, Any], path: Any, marks: Sequence[dict[str, Any]] = (), title: str | None = None) -> None:
    """The calibration on the Adam plane (left: the map's probes coloured by score, the check's plus, p_s → p_l →
    the chosen point; `marks`: other points to show, each {"label", "x", "y"}) and its probe curves (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, curves) = plt.subplots(1, 2, figsize=(11, 5.6), dpi=110)
    found = [p for p in cal["probes"] if p["stage"] == "map" and p["score"] is not None]
    lost = [p for p in cal["probes"] if p["stage"] == "map" and p["score"] is None]
    if found:
        dots = ax.scatter([p["x"] for p in found], [p["y"] for p in found], c=[p["score"] for p in found], s=70,
                          cmap="viridis_r", edgecolors="none", zorder=2)
        fig.colorbar(dots, ax=ax, label=f"map score: train loss ({cal['horizons']['short']} steps)")
    if lost:
        ax.scatter([p["x"] for p in lost], [p["y"] for p in lost], marker="x", color="0.4", label="diverged")
    check = [p for p in cal["probes"] if p["stage"] == "check"]
    if check:
        ax.scatter([p["x"] for p in check], [p["y"] for p in check], marker="+", s=90, color="k", zorder=3,
                   label=f"check ({cal['horizons']['long']} steps)")
    path_pts = [(cal["short"]["x"], cal["short"]["y"]), (cal["long"]["x"], cal["long"]["y"]),
                (cal["eta_A"], cal["gamma_eta_B"])]
    ax.plot(*zip(*path_pts), "-", color="C3", zorder=3)
    labels = [f"p_s ({cal['horizons']['short']} steps)", f"p_l ({cal['horizons']['long']})",
              f"chosen ({cal['horizons']['target']})"]
    if math.isclose(path_pts[1][0], path_pts[2][0], rel_tol=0.01) and math.isclose(path_pts[1][1], path_pts[2][1],
                                                                                  rel_tol=0.01):
        path_pts, labels = path_pts[:2], [labels[0], f"p_l = chosen ({cal['horizons']['long']} → "
                                                     f"{cal['horizons']['target']})"]
    for (x, y), label in zip(path_pts, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7, color="C3")
    ax.plot([cal["eta_A"]], [cal["gamma_eta_B"]], "*", ms=15, color="C3", zorder=4, label="chosen point")
    for i, m in enumerate(marks):
        ax.plot([m["x"]], [m["y"]], "D", ms=6, color=f"C{(i + 4) % 10}", mfc="none",
                label=m["label"], zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("η_A: learning rate of A")
    ax.set_ylabel("γ·η_B: learning rate of B × γ = α/r")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    ax.set_title(title or f"{cal['task'] or 'your model'}: calibration on the Adam plane", fontsize=9)
    for p in cal["probes"]:
        if not p["curve"]:
            continue
        steps, losses = zip(*p["curve"])
        mapped = p["stage"] == "map"
        curves.plot(steps, losses, color="0.7" if mapped else "C0", lw=0.7 if mapped else 1.2, alpha=0.8)
    curves.plot([], [], color="0.7", label="map probes")
    curves.plot([], [], color="C0", label="check probes")
    curves.set_xlabel("step")
    curves.set_ylabel("train loss")
    curves.set_title("probe curves", fontsize=10)
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

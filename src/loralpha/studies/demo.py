"""`loralpha demo`: the paper's three findings, measured on this machine, in one report.

Four parts, all on embedded data and models (no network):

1. head-to-head on `tweets` (MiniLM-L6): lora-alpha with the paper's c = 256 and at the point (c, η)
   that `calibrate` picks for this model within one run of probe steps (its probes counted), fixed
   α = 16, 2rank, rslora, loraplus and full fine-tuning, at one step budget, each rule at its default η (the
   task's full-FT rate for lora-alpha and full, the usual LoRA rate 2e-4 for the others);
2. α vs η on teacher-student: α × k against η × k from one base, with Signal-Drift tracked;
3. spectral suppression: λ_max of the loss Hessian in adapter and full-weight space at init;
4. the α*(r) law: a teacher-student sweep of α over ranks, fitted as α* = c·r^p.

Every training run is a trial in one sweep store (OUT/demo.db) and the calibration and the
spectrum are JSON files keyed by their settings, so an interrupted demo reruns only what was
not finished. `demo.json` names what each part ran; `loralpha report OUT` renders it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import devices, runs, scaling
from ..config import TrainConfig
from ..errors import UsageError
from ..sweep import Trial, run_sweep, trial_id
from ..tasks import TASKS
from . import spectrum as sp
from .calibrate import calibrate
from .records import effective_alpha, effective_lr

MANIFEST = "demo.json"
STORE = "demo.db"
HEAD_RULES = ("lora-alpha", "lora-alpha-calibrated", "fixed", "2rank", "rslora", "loraplus", "full")


@dataclass
class Plan:
    """The sizes of every part; `full()` is the default demo, `quick()` the smoke run."""

    quick: bool
    # 1. head-to-head on tweets (rank 16: at r = 8, fixed α = 16 would be α = 2r, the same run twice)
    rank: int = 16
    steps: int = 100
    batch_size: int = 16
    eval_every: int = 50
    n_eval: int = 500
    calib_budget: int | None = None  # probe steps of the calibration (None: one run, `steps`)
    calib_batch: int = 8
    # 2. α vs η
    ae_rank: int = 25
    ae_steps: int = 200
    ae_factors: list[int] = field(default_factory=lambda: [8, 128, 256])  # the paper: η × 128 diverges, α × 256 not
    ae_options: dict[str, Any] = field(default_factory=dict)
    # 3. spectrum
    sp_rules: list[str] = field(default_factory=lambda: ["lora-alpha", "rslora", "2rank"])
    sp_ranks: list[int] = field(default_factory=lambda: [2, 8, 32])
    sp_options: dict[str, Any] = field(default_factory=dict)
    # 4. law
    law_ranks: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    law_alphas: list[float] = field(default_factory=lambda: [2.0 ** k for k in range(8, 15)])  # 256 … 16384
    law_steps: int = 100
    law_seeds: list[int] = field(default_factory=lambda: [0])
    law_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"  # of every run, the calibration probes and the spectrum (all in float32)

    @classmethod
    def full(cls) -> Plan:
        return cls(quick=False)

    @classmethod
    def quick_plan(cls) -> Plan:
        small = {"width": 64, "depth": 3}
        return cls(quick=True, rank=8, steps=12, batch_size=8, eval_every=6, n_eval=64,
                   calib_budget=36, calib_batch=8, ae_rank=4, ae_steps=40, ae_factors=[16, 256], ae_options=small,
                   sp_rules=["lora-alpha", "2rank"], sp_ranks=[2, 8], sp_options=small, law_ranks=[2, 4, 8],
                   law_alphas=[16.0, 128.0, 1024.0, 8192.0, 65536.0], law_steps=40, law_options=small)

    def tweets(self, **change: Any) -> TrainConfig:
        base = dict(task="tweets", rank=self.rank, steps=self.steps, batch_size=self.batch_size,
                    eval_every=self.eval_every, task_options={"n_eval": self.n_eval}, device=self.device)
        return TrainConfig(**{**base, **change})


def head_to_head(plan: Plan, calibrated: dict[str, float]) -> dict[str, TrainConfig]:
    """The seven runs of part 1, by label; η None = the rule's default (see the module doc); `calibrated`: the
    calibration's point as LoRA-α writes it (coef, lr)."""
    return {
        "lora-alpha": plan.tweets(rule="lora-alpha"),
        "lora-alpha-calibrated": plan.tweets(rule="lora-alpha", coef=float(calibrated["coef"]),
                                             lr=float(calibrated["lr"])),
        "fixed": plan.tweets(rule="fixed", alpha=16.0),
        "2rank": plan.tweets(rule="2rank"),
        "rslora": plan.tweets(rule="rslora", alpha=16.0),
        "loraplus": plan.tweets(rule="loraplus", alpha=16.0),
        "full": plan.tweets(rule="full"),
    }


def alpha_vs_eta(plan: Plan) -> dict[str, TrainConfig]:
    """Part 2: rule fixed with α = r (γ = 1) at η = 5e-5, then α × k, then η × k."""
    full_ft_lr = TASKS["teacher-student"].full_ft_lr
    r = plan.ae_rank
    base = dict(task="teacher-student", rule="fixed", rank=r, alpha=float(r), lr=full_ft_lr, steps=plan.ae_steps,
                schedule="constant", eval_every=plan.ae_steps, track_every=10, task_options=dict(plan.ae_options),
                device=plan.device)
    configs = {"base": TrainConfig(**base)}
    for k in plan.ae_factors:
        configs[f"α × {k}"] = TrainConfig(**{**base, "alpha": float(k * r)})
    for k in plan.ae_factors:
        configs[f"η × {k}"] = TrainConfig(**{**base, "lr": k * full_ft_lr})
    return configs


def law(plan: Plan) -> list[TrainConfig]:
    """Part 4: rule fixed (lora_alpha = α itself) over ranks × α × seeds at the full-FT η."""
    return [TrainConfig(task="teacher-student", rule="fixed", rank=r, alpha=float(a),
                        lr=TASKS["teacher-student"].full_ft_lr,
                        steps=plan.law_steps, eval_every=plan.law_steps, seed=s, task_options=dict(plan.law_options),
                        device=plan.device)
            for r in plan.law_ranks for a in plan.law_alphas for s in plan.law_seeds]


def _keyed(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON result at `path` if it was made with the same settings `key`, else None."""
    try:
        data = runs.read_json(path)
    except (OSError, ValueError):
        return None
    return data if data.get("key") == runs.clean(key) else None


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} is a file; give a directory for the demo's out=")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists() and not (out / STORE).exists():
        raise UsageError(f"{out} exists and holds something other than a demo; choose another out=")
    runs.ensure_writable(out)


def run(out: str | Path, quick: bool = False, workers: int | None = None, progress: bool = True,
        say: Callable[[str], None] = print, device: str = "auto") -> dict[str, Any]:
    """Run (or resume) the demo into `out` and return its manifest; the report is `loralpha.report`. Every
    run trains on `device` (see `loralpha.devices`; a device this machine lacks is refused before anything)."""
    resolved = devices.resolve(device)
    out = Path(out)
    _check_out(out)
    plan = replace(Plan.quick_plan() if quick else Plan.full(), device=device)
    workers = workers or min(2, os.cpu_count() or 1)
    started = time.perf_counter()
    command = f"loralpha demo --out {out}" + (" --quick" if quick else "") + (f" --device {device}"
                                                                               if device != "auto" else "")
    manifest: dict[str, Any] = {"plan": asdict(plan), "command": command, "machine": runs.machine(), "timings": {},
                                "device": {"device": str(resolved), "device_name": devices.device_name(resolved)}}
    on_device = {"device": device} if device != "auto" else {}  # keys of results made elsewhere than auto's

    # 1a. calibrate (c, η) for MiniLM on tweets at the head-to-head rank and steps (in-process, keyed file)
    say("1/4 calibrating lora-alpha's point (c, η) on tweets")
    t0 = time.perf_counter()
    calib_key = {"method": "plane", "budget": plan.calib_budget, "rank": plan.rank, "steps": plan.steps,
                 "batch_size": plan.calib_batch, "n_eval": plan.n_eval, **on_device}
    calib = _keyed(out / "calibrate.json", calib_key)
    if calib is None:
        found = calibrate(task="tweets", steps=plan.steps, rank=plan.rank, budget_steps=plan.calib_budget,
                          batch_size=plan.calib_batch, task_options={"n_eval": plan.n_eval}, device=plan.device,
                          on_probe=lambda p: say(f"    {p['stage']} η_A = {p['x']:.3g}, γ·η_B = {p['y']:.3g}: "
                                                 "train loss " + ("diverged" if p["score"] is None else
                                                                  format(p["score"], ".4f"))
                                                 + f" after {p['steps']} steps"))
        calib = {"key": calib_key, **found.to_dict()}
        runs.write_json(out / "calibrate.json", calib)
    else:
        point = calib["settings"]["lora-alpha"]
        say(f"    reused calibrate.json (c = {point['coef']:.4g}, η = {point['lr']:.3g})")
    manifest["timings"]["calibrate_s"] = time.perf_counter() - t0

    # 1b, 2, 4. every training run as a trial of one store
    parts = {"head_to_head": head_to_head(plan, calib["settings"]["lora-alpha"]), "alpha_vs_eta": alpha_vs_eta(plan)}
    trials: dict[str, Trial] = {}
    labels: dict[str, dict[str, str]] = {}
    for part, configs in parts.items():
        labels[part] = {}
        for label, config in configs.items():
            tid = trial_id(config)
            trials[tid] = Trial(tid, config, metric=TASKS[config.task].metric)
            labels[part][label] = tid
    law_ids = []
    for config in law(plan):
        tid = trial_id(config)
        trials[tid] = Trial(tid, config, metric=TASKS[config.task].metric)
        law_ids.append(tid)
    manifest["trials"] = {**labels, "law": law_ids}
    runs.write_json(out / MANIFEST, manifest)  # the report can read a part-finished demo
    say(f"2/4 training {len(trials)} runs (head-to-head, α vs η, the α*(r) law) on {workers} workers")
    t0 = time.perf_counter()
    counts = run_sweep(list(trials.values()), out / STORE, workers=workers, progress=progress)
    manifest["timings"]["trials_s"] = time.perf_counter() - t0
    manifest["counts"] = counts
    if counts.get("pending") or counts.get("running"):
        raise UsageError(f"the demo's runs did not all finish ({counts}); run the same command again to resume")

    # 3. spectrum at init (keyed file)
    say("3/4 measuring the Hessian spectrum in adapter and full-weight space")
    t0 = time.perf_counter()
    sp_key = {"rules": plan.sp_rules, "ranks": plan.sp_ranks, "options": plan.sp_options, **on_device}
    spectrum = _keyed(out / "spectrum.json", sp_key)
    if spectrum is None:
        base = TrainConfig(task="teacher-student", steps=0, task_options=dict(plan.sp_options), device=plan.device)
        results = sp.sweep(base, list(plan.sp_rules), list(plan.sp_ranks), out / "spectrum-work",
                           on_result=lambda r: say(f"    {r['rule']}, r = {r['rank']}: λ_max adapter "
                                                   f"{r['adapter']['eigenvalues'][0]:.4g}, full "
                                                   f"{r['full']['eigenvalues'][0]:.4g}"))
        spectrum = {"key": sp_key, "config": runs.clean(asdict(base)), "results": results}
        runs.write_json(out / "spectrum.json", spectrum)
    else:
        say("    reused spectrum.json")
    manifest["timings"]["spectrum_s"] = time.perf_counter() - t0
    manifest["timings"]["total_s"] = time.perf_counter() - started
    manifest["finished"] = runs.machine()  # its load average tells whether other jobs shared the machine
    runs.write_json(out / MANIFEST, manifest)
    say("4/4 writing the report")
    return manifest


def steps_to_reach(losses: list[tuple[int, float]], target: float, window: int = 10) -> int | None:
    """First step at which the mean of the last `window` train losses is ≤ target (final_loss's
    own definition), or None if the run never gets there."""
    values = [v for _, v in losses]
    for i in range(len(values)):
        recent = values[max(0, i + 1 - window): i + 1]
        if len(recent) == min(window, len(values)) and sum(recent) / len(recent) <= target and math.isfinite(target):
            return losses[i][0]
    return None


def effective(config: dict[str, Any]) -> dict[str, Any]:
    """α, γ and η of a trial config as the rules define them (η None → the rule's default)."""
    rule = config["rule"]
    a = None if scaling.trains_full_weights(rule) else effective_alpha(config)
    return {"alpha": a, "gamma": None if a is None else a / config["rank"], "lr": effective_lr(config), "rule": rule}

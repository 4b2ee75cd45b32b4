"""The run commands of `loralpha`: train, compare, spectrum and rules. Their options that set a run
are derived from `TrainConfig` (see `loralpha.cli.flags`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .. import devices, runs, scaling
from ..checks import positive
from ..config import TrainConfig, train_command
from ..errors import UsageError
from ..tasks import TASKS
from .app import app, console, csv, err, numbers
from .flags import config_options, task_flags

# torch, PEFT and the models load when a command trains, not when the command line starts (--help, bad flags)


def run(config: TrainConfig, **kwargs):
    """`loralpha.train`: one run."""
    from ..loop import train

    return train(config, **kwargs)


def on_what(runtime: dict | None) -> str:
    """A run's device and precision from its record's `runtime`, in a few words."""
    if not runtime:
        return "—"
    base = runtime.get("base_dtype")
    precision = (f"base {base}, trained {runtime.get('trainable_dtype')}" if base else
                 f"every weight trained in {runtime.get('trainable_dtype')}")
    autocast = f", {runtime['autocast']} autocast" if runtime.get("autocast") else ""
    return f"{runtime['device']} ({runtime.get('device_name')}; {precision}{autocast})"


@app.command()
@config_options("config", TrainConfig)
@task_flags
def train(
    config: dict,
    out: Optional[Path] = typer.Option(None, help="run directory (default: runs/TASK-RULE-rRANK-sSEED)"),
    overwrite: bool = typer.Option(False, help="replace an existing run directory"),
    checkpoint_every: Optional[int] = typer.Option(None, help="save weights, optimizer and step to OUT/checkpoint.pt "
                                                              "every N steps (and on Ctrl-C)"),
    resume: bool = typer.Option(False, help="continue the unfinished run in --out from its checkpoint (give the "
                                            "options it was started with)"),
    tensorboard: Optional[Path] = typer.Option(None, metavar="DIR", help="write TensorBoard event files (loss, lr, "
                                                                        "held-out metrics, Signal-Drift) into DIR"),
    quiet: bool = typer.Option(False, help="no progress bar (and, where output is not a terminal, no progress "
                                            "line every tenth of the steps)"),
) -> None:
    """Train TASK with LoRA under RULE (or fully, rule `full`) and write a run directory.
    Ctrl-C finishes the current step, saves the run as `interrupted` and exits with 130."""
    task, rule, rank, seed = config["task"], config["rule"], config["rank"], config["seed"]
    out = out or Path("runs") / f"{task}-{rule}-r{rank}-s{seed}"
    checked = TrainConfig(**config).check()  # before the loop's import pulls in torch: a bad flag answers in a second
    result = run(checked, out=out, overwrite=overwrite, progress=not quiet, checkpoint_every=checkpoint_every,
                 resume=resume, tensorboard=tensorboard)
    table = Table(title=f"{task} · {rule} · r={rank}", show_header=False)
    table.add_row("status", result.status)
    table.add_row("steps", str(result.steps))
    table.add_row("final train loss", "—" if result.final_loss is None else f"{result.final_loss:.4g}")
    for key, value in result.eval.items():
        table.add_row(f"held-out {key}", f"{value:.4g}")
    references = [r for r in (runs.baseline(out), runs.prior_baseline(out)) if r] if result.eval else []
    for reference in references:
        table.add_row(f"baseline: {reference['name']}", f"{reference['metric']} {reference['value']:.4g}")
    table.add_row("wall time", f"{result.wall_time_s:.1f} s")
    table.add_row("device", on_what(runs.read_json(out / "config.json").get("runtime")))
    table.add_row("run directory", str(out))
    console.print(table)
    for reference in references:
        if runs.at_baseline(result.eval.get(reference["metric"]), reference):
            console.print(f"the run ended at its baseline: held-out {reference['metric']} "
                          f"{result.eval[reference['metric']]:.4g} is no better than the {reference['name']}'s "
                          f"{reference['value']:.4g}; it learned nothing that baseline does not already score")
    if result.status == "diverged":
        err.print(f"run diverged: {result.reason}; lower --lr (or --coef/--alpha) and try again")
        raise typer.Exit(1)
    if result.resumed_from is not None:
        console.print(f"resumed from the checkpoint at step {result.resumed_from}")
    if result.status == "interrupted":
        again = (" --resume continues it from there" if checkpoint_every else
                 " without --checkpoint-every, --resume starts it again from step 0")
        err.print(f"run interrupted after {result.steps} steps; what was trained is saved in {out};{again}",
                  markup=False)
        raise typer.Exit(130)


@app.command()
@config_options("config", TrainConfig, only=("task", "rank", "lr", "steps", "batch_size", "seed", "coef", "eval_every",
                                             "device", "dtype"),
                defaults={"task": "tweets", "steps": 150},
                helps={"lr": "one learning rate for every rule (default: each rule's own)",
                       "seed": "seed of every run"})
@task_flags
def compare(
    config: dict,
    rules: str = typer.Option("lora-alpha,2rank", help="rules to compare, comma-separated"),
    out: Path = typer.Option(Path("runs/compare"), help="directory; each rule trains into OUT/RULE"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Train several rules on one task at the same budget and print them side by side.
    Finished runs with the same config are reused, so an interrupted comparison resumes."""
    task, rank, steps, seed = (config[k] for k in ("task", "rank", "steps", "seed"))
    names = csv(rules) or []
    for name in names:
        scaling.check_rule(name)
    configs = {name: TrainConfig(**config, rule=name) for name in names}
    from ..studies.compare import compare as run_all

    results = run_all(configs, out, progress=not quiet,
                      on_start=lambda n, reused: console.print(f"[bold]{n}[/]" + (" (reused)" if reused else "")))
    first = next(iter(results.values()))["config"]
    metric = first["metric"]
    batch = first["config"]["batch_size"] or TASKS[task].batch_size
    table = Table(title=f"{task}: {steps} steps of batch {batch}, rank {rank}, seed {seed}")
    for column in ("rule", "α", "γ", "η", "status", "final train loss", f"held-out {metric}", "wall time"):
        table.add_column(column, justify="left" if column in ("rule", "status") else "right")
    for name, s in results.items():
        c = s["config"]
        table.add_row(name, f"{c['lora_alpha']:.4g}" if "lora_alpha" in c else "—",
                      f"{c['gamma']:.3g}" if "gamma" in c else "—", f"{c['lr']:g}", s["status"],
                      "—" if s["final_loss"] is None else f"{s['final_loss']:.4f}",
                      f"{s['eval'][metric]:.4f}" if metric in s["eval"] else "—", f"{s['wall_time_s']:.0f} s")
    console.print(table)
    console.print(f"device: {on_what(first.get('runtime'))}")
    first_run = out / next(iter(results))
    for reference in (r for r in (runs.baseline(first_run), runs.prior_baseline(first_run)) if r):
        console.print(f"baseline ({reference['name']}): held-out {reference['metric']} {reference['value']:.4f}")
        flat = [name for name, s in results.items() if runs.at_baseline(s["eval"].get(reference["metric"]), reference)]
        if flat:
            console.print(f"ended at that baseline (learned nothing it does not already score): {', '.join(flat)}")
    rerun = train_command(config, "loralpha compare", always=tuple(k for k in config if k != "task_options"))
    console.print(f"runs: {out}/<rule>   (rerun: {rerun} --rules {rules} --out {out})")


@app.command()
@config_options("config", TrainConfig, only=("task", "coef", "alpha", "steps", "lr", "batch_size", "seed", "device"),
                defaults={"steps": 0},
                helps={"task": "task whose loss is measured",
                       "steps": "train this many steps under each rule first (0: measure at init, B = 0)",
                       "lr": "learning rate of those steps (default: each rule's own)",
                       "batch_size": "size of the fixed batch (default: the task's)",
                       "seed": "seed of the adapter init and the batch",
                       "device": f"{devices.DEVICE_NAMES}: where the model, the batch and the Hessian-vector products "
                                 "go (auto: CUDA when available, else MPS, else the CPU); always in float32"})
@task_flags
def spectrum(
    config: dict,
    rules: str = typer.Option("lora-alpha,2rank", help="α rules, comma-separated"),
    ranks: str = typer.Option("4,8,16", help="ranks, comma-separated"),
    rank: Optional[int] = typer.Option(None, help="a single rank (overrides --ranks)"),
    k: int = typer.Option(3, help="eigenvalues per space"),
    method: str = typer.Option("lanczos", help="lanczos | power | eigenthings (optional package)"),
    out: Path = typer.Option(Path("runs/spectrum"), help="directory for spectrum.json and spectrum.png"),
) -> None:
    """Top Hessian eigenvalues in adapter space vs full-weight space (spectral suppression)."""
    task, steps = config["task"], config["steps"]
    if method not in ("lanczos", "power", "eigenthings"):
        raise UsageError(f"unknown method {method!r}; choose lanczos, power or eigenthings")
    names = csv(rules) or []
    for name in names:
        scaling.check_rule(name)
    rank_list = [rank] if rank is not None else numbers(ranks, int, "--ranks")
    for r in rank_list:
        scaling.check_rank(r)
    base = TrainConfig(**{**config, "steps": max(steps, 1)}, rule=names[0] if names else "lora-alpha",
                       rank=rank_list[0] if rank_list else 8)
    base.check()
    base.steps = steps  # 0 is allowed here: measure at initialisation
    where = devices.resolve(base.device)
    table = Table(title=f"Hessian λ_max on {task} (fixed batch, after {steps} steps, on {where})")
    for column in ("rule", "rank", "γ", "η", "λ_max adapter", "λ_max full", "adapter / full", "gap adapter", "gap full",
                   "HVPs", "seconds"):
        table.add_column(column, justify="left" if column == "rule" else "right")

    def show(r):
        console.print(f"  {r['rule']} r={r['rank']}: λ_adapter {r['adapter']['eigenvalues'][0]:.4g}, "
                      f"λ_full {r['full']['eigenvalues'][0]:.4g}")
        gap = [r[space]["step_gap"]["gap"] for space in ("adapter", "full")]
        table.add_row(r["rule"], str(r["rank"]), f"{r['gamma']:.3g}", f"{r['lr']:.2g}",
                      f"{r['adapter']['eigenvalues'][0]:.4g}",
                      f"{r['full']['eigenvalues'][0]:.4g}",
                      "—" if r["suppression"] is None else f"{r['suppression']:.3g}",
                      *(f"{g:.3g}" if math.isfinite(g) else "∞" for g in gap),
                      f"{r['adapter']['hvp_calls']}+{r['full']['hvp_calls']}",
                      f"{r['adapter']['seconds'] + r['full']['seconds']:.1f}")

    from ..studies.spectrum import sweep as spectrum_sweep

    spectrum_sweep(base, names, rank_list, out, k=k, method=method, on_result=show)
    console.print(table)
    console.print(f"wrote {out / 'spectrum.json'} and {out / 'spectrum.png'}")


@app.command()
def rules(
    ranks: str = typer.Option("1,8,64", help="ranks to show, comma-separated"),
    coef: float = typer.Option(scaling.PAPER_COEF, help="c of lora-alpha"),
    alpha: float = typer.Option(scaling.DEFAULT_ALPHA, help="α of fixed, rslora and loraplus"),
    plane: Optional[Path] = typer.Option(None, help="also draw the rules on the Adam plane (η_A, γ·η_B) into "
                                                   "this PNG, at the ranks shown and each rule's default η"),
    full_ft_lr: float = typer.Option(TASKS["tweets"].full_ft_lr, help="the task's full-FT rate, for the default η "
                                                                          "of --plane (default: the text tasks')"),
) -> None:
    """Show every α rule: its formula, lora_alpha and γ = α/r at a few ranks, and its default η."""
    rs = [scaling.check_rank(r) for r in numbers(ranks, int, "--ranks")]
    table = Table(title="α rules (PEFT: x ↦ W0·x + γ·B·A·x, γ = lora_alpha / r)")
    table.add_column("rule")
    table.add_column("lora_alpha")
    for r in rs:
        table.add_column(f"α, γ (r={r})", justify="right")
    table.add_column("default η")
    for name, spec in scaling.RULES.items():
        cells = []
        for r in rs:
            a = None if spec.trains_full_weights else scaling.lora_alpha(name, r, coef, alpha)
            cells.append("—" if a is None else f"{a:.4g}, {a / r:.3g}")
        table.add_row(name, spec.formula, *cells, "full-FT η" if spec.full_ft_lr else f"{scaling.LORA_LR:g}")
    console.print(table)
    for name, spec in scaling.RULES.items():
        console.print(f"  {name}: {spec.note}")
    by_rate: dict[float, list[str]] = {}
    for name, facts in TASKS.items():
        by_rate.setdefault(facts.full_ft_lr, []).append(name)
    console.print("full-FT η is the task's full-fine-tuning rate: "
                  + "; ".join(f"{rate:g} for {', '.join(names)}" for rate, names in by_rate.items()) + ".")
    if plane is not None:
        positive(full_ft_lr, "full-FT learning rate")
        from ..diagnostics import plane as adam_plane

        rows = adam_plane.points(list(scaling.RULES), rs, full_ft_lr, coef=coef, alpha=alpha)
        adam_plane.plot(rows, plane)
        console.print(f"wrote {plane}: each rule at (η_A, γ·η_B); under Adam (ε → 0, no weight decay) "
                      "rules at the same point train the same W")

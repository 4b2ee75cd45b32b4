"""The `loralpha` command. Each command's signature is its CLI; errors a user can cause
print one line and exit with status 2 (a diverged run exits with 1)."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import scaling
from .errors import UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="LoRA fine-tuning with a principled scaling factor (LoRA-α), and the tools to measure it.")
console = Console(width=None if sys.stdout.isatty() else 160)  # wide tables stay whole in logs and pipes
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _rank_pattern(value: Optional[str]) -> dict[str, int]:
    pattern: dict[str, int] = {}
    for item in _csv(value) or []:
        key, sep, rank = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--rank-pattern takes NAME=RANK pairs separated by commas (e.g. query=4,value=16), got {item!r}")
        try:
            pattern[key] = int(rank)
        except ValueError:
            raise UsageError(f"rank in --rank-pattern {item!r} must be an integer") from None
    return pattern


DEFAULT_TRACK_EVERY = 10


def _track(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    name, _, every = value.partition(":")
    if name != "signal-drift":
        raise UsageError(f"--track takes signal-drift or signal-drift:K, got {value!r}")
    try:
        return int(every) if every else DEFAULT_TRACK_EVERY
    except ValueError:
        raise UsageError(f"K in --track signal-drift:K must be a positive integer, got {every!r}") from None


@app.command()
def train(
    task: str = typer.Option("teacher-student", help="teacher-student | tweets | bbc-news | classify (your --data) | sft (your --data, causal LM) | sft-gemma"),
    rule: str = typer.Option("lora-alpha", help="α rule: " + " | ".join(scaling.RULES)),
    rank: int = typer.Option(8, help="LoRA rank r"),
    coef: float = typer.Option(scaling.PAPER_COEF, help="c of lora-alpha: α = c·√r"),
    alpha: float = typer.Option(scaling.DEFAULT_ALPHA, help="α of fixed, rslora and loraplus"),
    lr: Optional[float] = typer.Option(None, help="learning rate (default: the task's full-FT rate for lora-alpha "
                                                   "and full, 2e-4 for the others; see `loralpha rules`)"),
    head_lr: Optional[float] = typer.Option(None, help="learning rate of a new classifier head, the same under "
                                                        "every rule (default: the task's)"),
    steps: int = typer.Option(200, help="optimizer steps"),
    batch_size: Optional[int] = typer.Option(None, help="batch size (default: the task's)"),
    seed: int = typer.Option(0, help="seed of adapter init, head init and batch order"),
    targets: Optional[str] = typer.Option(None, help="modules to adapt, comma-separated (default: the task's)"),
    rank_pattern: Optional[str] = typer.Option(None, help="per-layer ranks, NAME=RANK,... (α follows the rule)"),
    init: str = typer.Option("default", help="adapter init: default | gaussian | pissa | olora"),
    dora: bool = typer.Option(False, help="use DoRA (weight-decomposed LoRA)"),
    loraplus_ratio: float = typer.Option(scaling.LORAPLUS_RATIO, help="η_B/η_A of the loraplus rule"),
    weight_decay: float = typer.Option(0.0, help="AdamW weight decay"),
    schedule: str = typer.Option("cosine", help="cosine | constant (after the warm-up)"),
    warmup: float = typer.Option(0.0, help="warm-up, as a fraction of the steps"),
    grad_clip: Optional[float] = typer.Option(None, help="clip the gradient norm to this"),
    eval_every: int = typer.Option(50, help="steps between held-out evaluations"),
    task_options: Optional[str] = typer.Option(None, help="more task settings KEY=VALUE,... (e.g. packing=true, "
                                                         "n_eval=200, width=64; see the task's build())"),
    track: Optional[str] = typer.Option(None, help="signal-drift[:K]: Signal-Drift metrics every K steps "
                                                   f"(default K: {DEFAULT_TRACK_EVERY}) into signal_drift.jsonl"),
    model: Optional[str] = typer.Option(None, help="hub id or local path: a sequence-classification model "
                                                   "(default: embedded MiniLM-L6) or, for sft, a causal LM "
                                                   "(default: embedded Gemma-3-270M)"),
    data: Optional[str] = typer.Option(None, help="classify: your .csv/.jsonl with text and label columns; sft: a "
                                                  ".jsonl of prompt/response or messages records, or a datasets name"),
    text_column: str = typer.Option("text", help="text column of --data"),
    label_column: str = typer.Option("label", help="label column of --data"),
    max_length: Optional[int] = typer.Option(None, help="tokens per text (default: 64 tweets, 128 otherwise)"),
    teacher: str = typer.Option("low-rank", help="teacher-student: low-rank | full-rank perturbation"),
    out: Optional[Path] = typer.Option(None, help="run directory (default: runs/TASK-RULE-rRANK-sSEED)"),
    overwrite: bool = typer.Option(False, help="replace an existing run directory"),
    checkpoint_every: Optional[int] = typer.Option(None, help="save weights, optimizer and step to OUT/checkpoint.pt "
                                                              "every N steps (and on Ctrl-C)"),
    resume: bool = typer.Option(False, help="continue the unfinished run in --out from its checkpoint (give the "
                                            "options it was started with)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train TASK with LoRA under RULE (or fully, rule `full`) and write a run directory.
    Ctrl-C finishes the current step, saves the run as `interrupted` and exits with 130."""
    from .calibrate import parse_options
    from .train import TrainConfig
    from .train import train as run

    options: dict[str, object] = {}
    if task == "teacher-student":
        options["teacher"] = teacher
        if any(v is not None for v in (model, data, max_length)):
            raise UsageError("--model, --data and --max-length apply to text tasks, not teacher-student")
    else:
        options.update(model=model, data=data, max_length=max_length)
        if data is not None:
            options.update(text_column=text_column, label_column=label_column)
    options.update(parse_options(task_options))
    config = TrainConfig(task=task, rule=rule, rank=rank, coef=coef, alpha=alpha, lr=lr, head_lr=head_lr, steps=steps,
                         batch_size=batch_size, seed=seed, targets=_csv(targets), rank_pattern=_rank_pattern(rank_pattern),
                         init=init, dora=dora, loraplus_ratio=loraplus_ratio, weight_decay=weight_decay,
                         schedule=schedule, warmup=warmup, grad_clip=grad_clip, eval_every=eval_every,
                         track_every=_track(track), task_options=options)
    out = out or Path("runs") / f"{task}-{rule}-r{rank}-s{seed}"
    result = run(config, out=out, overwrite=overwrite, progress=not quiet, checkpoint_every=checkpoint_every,
                 resume=resume)
    table = Table(title=f"{task} · {rule} · r={rank}", show_header=False)
    table.add_row("status", result.status)
    table.add_row("steps", str(result.steps))
    table.add_row("final train loss", "—" if result.final_loss is None else f"{result.final_loss:.4g}")
    for key, value in result.eval.items():
        table.add_row(f"held-out {key}", f"{value:.4g}")
    table.add_row("wall time", f"{result.wall_time_s:.1f} s")
    table.add_row("run directory", str(out))
    console.print(table)
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
def compare(
    task: str = typer.Option("tweets", help="task to train (see `loralpha train --help`)"),
    rules: str = typer.Option("lora-alpha,2rank", help="rules to compare, comma-separated"),
    rank: int = typer.Option(8, help="LoRA rank r"),
    lr: Optional[float] = typer.Option(None, help="one learning rate for every rule (default: each rule's own)"),
    steps: int = typer.Option(150, help="optimizer steps per run"),
    batch_size: Optional[int] = typer.Option(None, help="batch size (default: the task's)"),
    seed: int = typer.Option(0, help="seed of every run"),
    coef: float = typer.Option(scaling.PAPER_COEF, help="c of lora-alpha"),
    eval_every: int = typer.Option(50, help="steps between held-out evaluations"),
    out: Path = typer.Option(Path("runs/compare"), help="directory; each rule trains into OUT/RULE"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Train several rules on one task at the same budget and print them side by side.
    Finished runs with the same config are reused, so an interrupted comparison resumes."""
    from .compare import compare as run_all
    from .train import TrainConfig

    names = _csv(rules) or []
    for name in names:
        scaling.check_rule(name)
    configs = {name: TrainConfig(task=task, rule=name, rank=rank, lr=lr, steps=steps, batch_size=batch_size,
                                 seed=seed, coef=coef, eval_every=eval_every) for name in names}
    results = run_all(configs, out, progress=not quiet,
                      on_start=lambda n, reused: console.print(f"[bold]{n}[/]" + (" (reused)" if reused else "")))
    first = next(iter(results.values()))["config"]
    metric = first["metric"]
    from .tasks import DEFAULT_BATCH

    batch = first["config"]["batch_size"] or DEFAULT_BATCH[task]
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
    majority = first["task_info"].get("eval_majority_accuracy")
    if majority is not None:
        console.print(f"majority-class accuracy on the held-out split: {majority:.4f}")
    console.print(f"runs: {out}/<rule>   (rerun: loralpha compare --task {task} --rules {rules} --rank {rank} "
                  f"--steps {steps}{f' --lr {lr:g}' if lr else ''} --seed {seed} --out {out})")


@app.command()
def spectrum(
    task: str = typer.Option("teacher-student", help="task whose loss is measured"),
    rules: str = typer.Option("lora-alpha,2rank", help="α rules, comma-separated"),
    ranks: str = typer.Option("4,8,16", help="ranks, comma-separated"),
    rank: Optional[int] = typer.Option(None, help="a single rank (overrides --ranks)"),
    coef: float = typer.Option(scaling.PAPER_COEF, help="c of lora-alpha"),
    alpha: float = typer.Option(scaling.DEFAULT_ALPHA, help="α of fixed and rslora"),
    steps: int = typer.Option(0, help="train this many steps under each rule first (0: measure at init, B = 0)"),
    lr: Optional[float] = typer.Option(None, help="learning rate of those steps (default: each rule's own)"),
    batch_size: Optional[int] = typer.Option(None, help="size of the fixed batch (default: the task's)"),
    k: int = typer.Option(3, help="eigenvalues per space"),
    method: str = typer.Option("lanczos", help="lanczos | power | eigenthings (optional package)"),
    seed: int = typer.Option(0, help="seed of the adapter init and the batch"),
    out: Path = typer.Option(Path("runs/spectrum"), help="directory for spectrum.json and spectrum.png"),
) -> None:
    """Top Hessian eigenvalues in adapter space vs full-weight space (spectral suppression)."""
    from .spectrum import sweep
    from .train import TrainConfig

    if method not in ("lanczos", "power", "eigenthings"):
        raise UsageError(f"unknown method {method!r}; choose lanczos, power or eigenthings")
    names = _csv(rules) or []
    for name in names:
        scaling.check_rule(name)
    try:
        rank_list = [rank] if rank is not None else [int(r) for r in _csv(ranks) or []]
    except ValueError:
        raise UsageError(f"--ranks takes integers separated by commas, got {ranks!r}") from None
    for r in rank_list:
        scaling.check_rank(r)
    base = TrainConfig(task=task, rule=names[0] if names else "lora-alpha", rank=rank_list[0] if rank_list else 8,
                       coef=coef, alpha=alpha, lr=lr, steps=max(steps, 1), batch_size=batch_size, seed=seed)
    base.check()
    base.steps = steps  # 0 is allowed here: measure at initialisation
    table = Table(title=f"Hessian λ_max on {task} (fixed batch, after {steps} steps)")
    for column in ("rule", "rank", "γ", "η", "λ_max adapter", "λ_max full", "adapter / full", "gap adapter", "gap full",
                   "HVPs", "seconds"):
        table.add_column(column, justify="left" if column == "rule" else "right")

    def show(r):
        console.print(f"  {r['rule']} r={r['rank']}: λ_adapter {r['adapter']['eigenvalues'][0]:.4g}, "
                      f"λ_full {r['full']['eigenvalues'][0]:.4g}")
        gap = [r[space]["step_gap"]["gap"] for space in ("adapter", "full")]
        table.add_row(r["rule"], str(r["rank"]), f"{r['gamma']:.3g}", f"{r['lr']:.2g}", f"{r['adapter']['eigenvalues'][0]:.4g}",
                      f"{r['full']['eigenvalues'][0]:.4g}",
                      "—" if r["suppression"] is None else f"{r['suppression']:.3g}",
                      *(f"{g:.3g}" if math.isfinite(g) else "∞" for g in gap),
                      f"{r['adapter']['hvp_calls']}+{r['full']['hvp_calls']}",
                      f"{r['adapter']['seconds'] + r['full']['seconds']:.1f}")

    sweep(base, names, rank_list, out, k=k, method=method, on_result=show)
    console.print(table)
    console.print(f"wrote {out / 'spectrum.json'} and {out / 'spectrum.png'}")


@app.command()
def rules(
    ranks: str = typer.Option("1,8,64", help="ranks to show, comma-separated"),
    coef: float = typer.Option(scaling.PAPER_COEF, help="c of lora-alpha"),
    alpha: float = typer.Option(scaling.DEFAULT_ALPHA, help="α of fixed, rslora and loraplus"),
    plane: Optional[Path] = typer.Option(None, help="also draw the rules on the Adam plane (η_A, γ·η_B) into "
                                                   "this PNG, at the ranks shown and each rule's default η"),
    full_ft_lr: float = typer.Option(2e-5, help="the task's full-FT rate, for the default η of --plane"),
) -> None:
    """Show every α rule: its formula, lora_alpha and γ = α/r at a few ranks, and its default η."""
    try:
        rs = [scaling.check_rank(int(r)) for r in _csv(ranks) or []]
    except ValueError:
        raise UsageError(f"--ranks takes integers separated by commas, got {ranks!r}") from None
    table = Table(title="α rules (PEFT: x ↦ W0·x + γ·B·A·x, γ = lora_alpha / r)")
    table.add_column("rule")
    table.add_column("lora_alpha")
    for r in rs:
        table.add_column(f"α, γ (r={r})", justify="right")
    table.add_column("default η")
    for name, spec in scaling.RULES.items():
        cells = []
        for r in rs:
            a = scaling.lora_alpha(name, r, coef, alpha) if spec.lora_alpha else None
            cells.append("—" if a is None else f"{a:.4g}, {a / r:.3g}")
        table.add_row(name, spec.formula, *cells, "full-FT η" if spec.full_ft_lr else f"{scaling.LORA_LR:g}")
    console.print(table)
    for name, spec in scaling.RULES.items():
        console.print(f"  {name}: {spec.note}")
    console.print("full-FT η is the task's full-fine-tuning rate: 2e-5 for tweets, bbc-news and classify; "
                  "5e-5 for teacher-student (the paper's synthetic base η).")
    if plane is not None:
        from . import plane as adam_plane

        scaling.check_positive(full_ft_lr, "full-FT learning rate")
        rows = adam_plane.points(list(scaling.RULES), rs, full_ft_lr, coef=coef, alpha=alpha)
        adam_plane.plot(rows, plane)
        console.print(f"wrote {plane}: each rule at (η_A, γ·η_B); under Adam (ε → 0, no weight decay) "
                      "rules at the same point train the same W")


from . import cli_demo, cli_study  # noqa: E402,F401  (register demo, report, sweep, fit and calibrate on app)


def main() -> None:
    try:
        from typer._click import exceptions as click  # typer vendors click since 0.25
    except ImportError:
        from click import exceptions as click

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notes are not the user's to act on
    try:
        code = app(standalone_mode=False)  # returns the exit code; click's errors are raised, and printed below
    except UsageError as e:
        err.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(2)
    except click.NoArgsIsHelpError as e:
        console.print(e.ctx.get_help(), markup=False, highlight=False)
        sys.exit(2)
    except click.ClickException as e:  # a bad option or value: one line, as for our own errors
        message = "; ".join(line.strip() for line in e.format_message().splitlines() if line.strip())
        ctx = getattr(e, "ctx", None)
        see = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        err.print(f"error: {message}{see}", markup=False, highlight=False)
        sys.exit(e.exit_code)
    except click.Abort:
        err.print("aborted", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

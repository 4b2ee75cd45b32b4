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
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Train TASK with LoRA under RULE (or fully, rule `full`) and write a run directory."""
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
    result = run(config, out=out, overwrite=overwrite, progress=not quiet)
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
    if result.status == "interrupted":
        err.print(f"run interrupted after {result.steps} steps; what was trained is saved in {out}")
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


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="YAML sweep spec: study, task, metric, fixed, grid"),
    store: Optional[Path] = typer.Option(None, help="results store (default: studies/<study or spec stem>/study.db); "
                                                    "run directories go to runs/<trial id>/ beside it"),
    workers: Optional[int] = typer.Option(None, help="trials at a time (default: the CPU count; "
                                                     "ray: the cluster's CPUs / --cpus-per-trial)"),
    engine: str = typer.Option("local", help="local | ray (pip install 'loralpha\\[ray]')"),
    address: Optional[str] = typer.Option(None, help="ray: address of a running cluster (default: a local Ray)"),
    cpus_per_trial: float = typer.Option(1.0, help="ray: CPUs (and torch threads) per trial"),
    gpus_per_trial: float = typer.Option(0.0, help="ray: GPUs per trial"),
    threads: Optional[int] = typer.Option(None, help="torch threads per trial (default: 1 when --workers > 1, "
                                                     "else torch's own; ray: --cpus-per-trial)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show the live counts"),
) -> None:
    """Run every trial of a grid spec, each in its own process, into a SQLite store. Rerunning resumes:
    finished trials are kept, trials of a killed sweep run again; sweeps sharing a store share the work."""
    from .sweep import Store, load, run_sweep

    loaded = load(spec)
    path = store or Path("studies") / loaded.name / "study.db"
    try:
        counts = run_sweep(loaded, path, workers=workers, engine=engine, address=address, progress=progress,
                           cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, threads=threads)
    except KeyboardInterrupt:
        err.print(f"sweep interrupted; its running trials were handed back: rerun the same command to resume "
                  f"(store: {path})", markup=False)
        raise typer.Exit(130) from None
    table = Table(title=f"sweep {loaded.name}: {sum(counts.values())} trials", show_header=False)
    for status in ("done", "diverged", "failed", "running", "pending"):
        if counts[status] or status in ("done", "diverged", "failed"):
            table.add_row(status, str(counts[status]))
    table.add_row("store", str(path))
    table.add_row("run directories", str(path.parent / "runs") + "/<trial id>")
    console.print(table)
    if counts["running"]:
        console.print(f"{counts['running']} trials are still running in another sweep on this store")
    if counts["failed"]:
        ids = {t.id for t in loaded.trials()}
        failed = [r for r in Store(path).records("failed") if r["id"] in ids]
        err.print(f"{len(failed)} trials failed; the first, {failed[0]['id']}: {failed[0]['error']} "
                  f"(traceback, if any: {failed[0]['run_dir']}/error.txt)", markup=False)
        raise typer.Exit(1)


@app.command("fit")
def fit_law(
    store: Path = typer.Argument(..., help="sweep store (.db) or a .json/.jsonl file of trial records"),
    metric: str = typer.Option("final_loss", help="final_loss (train) or a held-out metric: rel_mse, eval_loss, "
                                                  "accuracy, macro_f1"),
    x: str = typer.Option("alpha", help="alpha | lr: the variable whose optimum per rank is fitted"),
    at: Optional[float] = typer.Option(None, help="keep the trials at this η (--x alpha) or α (--x lr), "
                                                  "when the store has several"),
    higher_is_better: Optional[bool] = typer.Option(None, "--higher-is-better/--lower-is-better",
                                                    help="direction of --metric (default: known from its name)"),
    resamples: int = typer.Option(1000, help="bootstrap resamples of the intervals"),
    seed: int = typer.Option(0, help="seed of the bootstrap"),
    out: Optional[Path] = typer.Option(None, help="directory for fit.json (default: beside STORE)"),
) -> None:
    """The optimal α (or η) per rank from a sweep, and the power law α* = c·r^p through them, with 95%
    bootstrap intervals, fixed exponents 0, ½, 1 against a free p, and the paper's 256·√r."""
    from . import laws, runs

    study = laws.fit(laws.load_records(store), x=x, metric=metric, higher_is_better=higher_is_better, at=at,
                     resamples=resamples, seed=seed, source=str(store))
    name = "α" if x == "alpha" else "η"
    n = study.counts
    table = Table(title=f"{name}* per rank: {'max' if study.higher_is_better else 'min'} {metric} "
                        f"({n['done']} done, {n['diverged']} diverged, {n['ignored']} other trials ignored)")
    columns = ["rank", f"{name}*", "seeds", f"best {metric}"]
    columns += ["256·√r", "α* / 256·√r", "α = r", "α = 2r"] if x == "alpha" else ["α"]
    for column in columns:
        table.add_column(column, justify="right")
    for o in study.optima:
        refs = study.references(o)
        cells = [str(o.group), o.describe() + (" (edge)" if o.edge else ""), str(o.seeds),
                 "—" if o.best is None else f"{o.best:.4g}"]
        if refs is not None:
            cells += [f"{refs['paper']:.4g}", "—" if o.x_star is None else f"{o.x_star / refs['paper']:.3g}",
                      f"{refs['alpha_r']:g}", f"{refs['alpha_2r']:g}"]
        elif x != "alpha":
            cells.append("—" if o.other is None else f"{o.other:.4g}")
        table.add_row(*cells)
    console.print(table)
    if any(o.edge or (o.x_star is not None and not o.refined) for o in study.optima):
        console.print(f"  ≤ / ≥: the best grid point is the grid's edge, so {name}* is only a bound; "
                      "(grid): no parabola refinement (a neighbour diverged or the curve is flat)")
    directory = out or store.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        runs.write_json(directory / "fit.json", study.to_dict())
    except OSError as e:
        raise UsageError(f"cannot write fit.json into {directory}: {e.strerror or e}") from None
    law = study.law
    if law is None:
        console.print(f"wrote {directory / 'fit.json'}")
        err.print(f"no power-law fit: {study.reason}")
        raise typer.Exit(1)

    def interval(iv, fmt):
        return f"[{fmt.format(iv[0])}, {fmt.format(iv[1])}]" if iv else "(no interval)"

    b = law.bootstrap
    console.print(f"{name}* = c·r^p over ranks {', '.join(f'{r:g}' for r in law.ranks)}:  "
                  f"c = {law.c:.4g} {interval(law.c_ci, '{:.4g}')},  p = {law.p:.3f} {interval(law.p_ci, '{:.3f}')}  "
                  f"(95% bootstrap over {b['method']}, {b['valid']} of {b['resamples']} resamples)")
    if b.get("note"):
        console.print(f"  {b['note']}")
    models = Table(title=f"models of log {name}* (held-out: leave one rank out)")
    for column in ("model", "p", "c", f"held-out RMSE of log {name}*", "in-sample RMSE"):
        models.add_column(column, justify="left" if column == "model" else "right")
    for m in law.models:
        models.add_row(f"{m['name']} ({m['note']})", f"{m['p']:.3f}", f"{m['c']:.4g}",
                       "—" if m["loo_rmse"] is None else f"{m['loo_rmse']:.3f}", f"{m['rmse']:.3f}")
    console.print(models)
    if law.best_model:
        console.print(f"best by held-out error: {law.best_model}")
    else:
        console.print("held-out comparison needs 2 or more ranks for a fixed p, 3 or more for a free p")
    console.print(f"wrote {directory / 'fit.json'}")


@app.command("calibrate")
def calibrate_coef(
    task: str = typer.Option("teacher-student", help="teacher-student | tweets | bbc-news | classify (your data=...)"),
    rank: int = typer.Option(4, help="the small rank R0 every probe trains at"),
    budget: int = typer.Option(2000, help="total optimizer steps over all probes (never exceeded)"),
    ranks: str = typer.Option("1,4,16,64", help="ranks to show α = c·√r at, comma-separated"),
    coefs: Optional[str] = typer.Option(None, help="grid of c, comma-separated (default: 1, 2, 4, …, 4096)"),
    seeds: str = typer.Option("0", help="seeds of every probe, comma-separated (a c scores their mean loss)"),
    lr: Optional[float] = typer.Option(None, help="η of the probes (default: the task's full-FT rate)"),
    batch_size: Optional[int] = typer.Option(None, help="batch size (default: the task's)"),
    task_options: Optional[str] = typer.Option(None, help="task settings KEY=VALUE,... "
                                                          "(e.g. width=32,depth=2 or data=my.csv,model=...)"),
    out: Path = typer.Option(Path("runs/calibrate"), help="directory for calibrate.json"),
) -> None:
    """Pick c of LoRA-α (α = c·√r) for a task: successive halving of short probes at rank R0 over a
    log grid of c, ranked by train loss, then a parabola in log c. Prints α = c·√r at --ranks."""
    from . import runs
    from .calibrate import calibrate as run_probes
    from .calibrate import parse_options

    def numbers(text, kind, what):
        try:
            return [kind(v) for v in _csv(text) or []]
        except ValueError:
            raise UsageError(f"{what} takes {'integers' if kind is int else 'numbers'} separated by commas, "
                             f"got {text!r}") from None

    show = [scaling.check_rank(r) for r in numbers(ranks, int, "--ranks")]
    grid = numbers(coefs, float, "--coefs") if coefs is not None else None
    seed_list = numbers(seeds, int, "--seeds")

    def report(rnd):
        best = next(p for p in rnd["probes"] if p["coef"] == rnd["best"])
        kept = ", ".join(f"{c:g}" for c in rnd["kept"])
        console.print(f"round {rnd['round']}: {len(rnd['probes'])} c × {rnd['steps']} steps — "
                      f"best c = {rnd['best']:g} (loss {best['loss']:.4g}); keep {kept}")

    try:
        cal = run_probes(task, rank=rank, budget_steps=budget, coefs=grid, seeds=seed_list, on_round=report, lr=lr,
                         batch_size=batch_size, task_options=parse_options(task_options))
    except KeyboardInterrupt:
        err.print("calibration interrupted; nothing written")
        raise typer.Exit(130)
    probes = Table(title=f"probes: {task}, lora-alpha at r = {cal.rank}, η = {cal.lr:g}, train loss "
                         f"(mean of {len(cal.seeds)} seed(s)); ✓ = kept")
    probes.add_column("c", justify="right")
    for rnd in cal.rounds:
        probes.add_column(f"round {rnd['round']} ({rnd['steps']} steps)", justify="right")
    for c in cal.coefs:
        cells = []
        for rnd in cal.rounds:
            p = next((p for p in rnd["probes"] if p["coef"] == c), None)
            cells.append("" if p is None else ("diverged" if p["loss"] is None else f"{p['loss']:.4g}")
                         + (" ✓" if p is not None and c in rnd["kept"] else ""))
        probes.add_row(f"{c:g}", *cells)
    console.print(probes)
    how = (f"parabola in log c through {', '.join(f'{c:g}' for c in cal.refined_from['coefs'])} at "
           f"{cal.refined_from['steps']} steps" if cal.refined else "the best grid point")
    console.print(f"chosen c = {cal.coef:.4g} ({how}; paper: {scaling.PAPER_COEF:g})")
    if cal.edge:
        side = "smaller" if cal.bound == "upper" else "larger"
        console.print(f"  c is at the grid's {'low' if cal.bound == 'upper' else 'high'} edge: the best c may be "
                      f"{side}; extend --coefs")
    if cal.stopped == "budget":
        console.print(f"  the budget ran out with {len(cal.rounds[-1]['kept'])} candidates left; a larger --budget "
                      "halves further")
    table = Table(title=f"lora-alpha setting α = c·√r with c = {cal.coef:.4g}")
    for column in ("rank", "α = c·√r", "γ = α/r", "paper 256·√r"):
        table.add_column(column, justify="right")
    for row in cal.alphas(show):
        table.add_row(str(row["rank"]), f"{row['alpha']:.4g}", f"{row['gamma']:.4g}", f"{row['paper']:.4g}")
    console.print(table)
    console.print(f"cost: {cal.cost_steps} optimizer steps of a {cal.budget_steps}-step budget, "
                  f"{cal.wall_time_s:.1f} s")
    try:
        out.mkdir(parents=True, exist_ok=True)
        runs.write_json(out / "calibrate.json", cal.to_dict(show))
    except OSError as e:
        raise UsageError(f"cannot write calibrate.json into {out}: {e.strerror or e}") from None
    console.print(f"wrote {out / 'calibrate.json'}")


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notes are not the user's to act on
    try:
        app()
    except UsageError as e:
        err.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(2)

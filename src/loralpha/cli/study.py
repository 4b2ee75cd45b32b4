"""The study commands of `loralpha`: sweep, fit, calibrate and calibrate-c (registered on `cli.app`)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .. import runs, scaling
from ..config import TrainConfig
from ..errors import UsageError
from ..studies import probe_log
from .app import app, console, err, numbers
from .flags import config_options, task_flags


@app.command()
def sweep(
    spec: Path = typer.Argument(..., help="YAML sweep spec: study, task, metric, fixed, grid, bracket"),
    store: Optional[Path] = typer.Option(None, help="results store (default: studies/<study or spec stem>/study.db); "
                                                    "run directories go to runs/<trial id>/ beside it"),
    workers: Optional[int] = typer.Option(None, help="trials at a time (default: the CPU count; "
                                                     "ray: the cluster's CPUs / --cpus-per-trial)"),
    engine: str = typer.Option("local", help="local | ray (pip install 'loralpha\\[ray]')"),
    address: Optional[str] = typer.Option(None, help="ray: address of a running cluster (default: a local Ray)"),
    cpus_per_trial: float = typer.Option(1.0, help="ray: CPUs (and torch threads) per trial"),
    gpus_per_trial: float = typer.Option(0.0, help="ray: GPUs per trial (a fraction shares one GPU); a trial given "
                                                   "GPUs trains on CUDA under device auto, and fails if it sees none"),
    threads: Optional[int] = typer.Option(None, help="torch threads per trial (default: 1 when --workers > 1, "
                                                     "else torch's own; ray: --cpus-per-trial)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show the live counts"),
) -> None:
    """Run every trial of a grid spec, each in its own process, into a SQLite store. Rerunning resumes:
    finished trials are kept, trials of a killed sweep run again; sweeps sharing a store share the work.
    A spec with a bracket: section runs in rounds, each planned from the store, until every group's best
    point on the bracketed axis has a worse point on both sides (or max_points), then its seeds at the best."""
    from ..studies import bracket
    from ..sweep import Store, load, run_sweep

    loaded = load(spec)
    path = store or Path("studies") / loaded.name / "study.db"
    options = dict(workers=workers, engine=engine, address=address, progress=progress, cpus_per_trial=cpus_per_trial,
                   gpus_per_trial=gpus_per_trial, threads=threads)
    groups = None
    try:
        if loaded.bracket is not None:
            result = bracket.run(loaded, path, say=lambda line: console.print(line, markup=False, highlight=False),
                                 **options)
            counts, ids, groups = result["counts"], set(result["ids"]), result["groups"]
        else:
            counts = run_sweep(loaded, path, **options)
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
    if groups is not None:
        axis = loaded.bracket.axis
        optima = Table(title=f"{axis} bracketed per group ({loaded.bracket.choose}, seeds "
                             f"{', '.join(map(str, loaded.bracket.choose_seeds))}); loralpha report {path}")
        for column in ("group", f"best {axis}", loaded.bracket.choose, "state", "points"):
            optima.add_column(column)
        sign = -1 if bracket.direction(loaded, loaded.bracket.choose) else 1  # costs are lower-is-better
        for g in groups:
            optima.add_row(g.label, f"{g.best.x:.3g}" if g.best else "—",
                           f"{sign * g.best.cost:.4g}" if g.best else "—", g.state, str(len(g.points)))
        console.print(optima)
    if counts["running"]:
        console.print(f"{counts['running']} trials are still running in another sweep on this store")
    if counts["failed"]:
        if groups is None:
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
    x: Optional[str] = typer.Option(None, help="alpha | lr: the variable whose optimum per rank is fitted "
                                                "(default: the one the study varies besides rank and seed)"),
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
    from ..studies import laws

    records = laws.load_records(store)
    x = x or laws.swept_axis(records)
    study = laws.fit(records, x=x, metric=metric, higher_is_better=higher_is_better, at=at,
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
@config_options("config", TrainConfig, only=("task", "rank", "steps", "batch_size", "targets", "task_options",
                                             "schedule", "warmup", "weight_decay", "head_lr", "device", "dtype"),
                helps={"steps": "optimizer steps of the run to calibrate for (the target budget T)"})
@task_flags
def calibrate_plane(
    config: dict,
    # the least budget is said here as text: importing the calibrator would load torch before a flag is read
    # (test_calibrate checks it against the calibrator's own horizons)
    budget_steps: Optional[int] = typer.Option(None, "--budget", help="optimizer steps over all probes, never "
                                                                      "exceeded (default: --steps, one target run; "
                                                                      "at least 4 steps × map points × seeds: 36 "
                                                                      "with the default 3 × 3 map and one seed, "
                                                                      "which then has no check and no carry; 140 "
                                                                      "for the map, its widening and the check "
                                                                      "with its walk)"),
    xs: Optional[str] = typer.Option(None, help="the map's η_A, comma-separated (default: 10 × the task's full-FT "
                                                "η × 10^±1 and itself)"),
    ys: Optional[str] = typer.Option(None, help="the map's γ·η_B, comma-separated (default: the paper's point, "
                                                "256/√r × the full-FT η, × 10^±0.75 and itself)"),
    seeds: str = typer.Option("0", help="seeds of every probe, comma-separated (a point scores their mean)"),
    out: Path = typer.Option(Path("runs/calibrate"), help="directory for probes.jsonl (each probe as it lands), "
                                                          "calibrate.json and calibrate.png; an interrupted "
                                                          "calibration there resumes when given the same options"),
    overwrite: bool = typer.Option(False, help="replace what --out holds (a finished calibration, or an "
                                               "interrupted one: start it again)"),
) -> None:
    """Pick LoRA's learning rates for a task and a budget from short probes: the point (η_A, γ·η_B) of the
    Adam plane, from a map at a short horizon (widened when its best point is on its edge) and a check at 3× it or
    more, carried to --steps. Prints it as LoRA-α's c and η, as plain LoRA's and LoRA+'s settings, how sure, and the
    `loralpha train` command that uses it (or, when the optimum was never bracketed, that the answer is unknown)."""
    from ..studies import calibrate as calibrator

    task = config.pop("task")
    x_grid = numbers(xs, float, "--xs") if xs is not None else None
    y_grid = numbers(ys, float, "--ys") if ys is not None else None
    seed_list = numbers(seeds, int, "--seeds")
    # what the probes depend on (the device only speeds them up): a rerun with the same resumes
    inputs = {"task": task, **{k: v for k, v in config.items() if k != "device"}, "budget_steps": budget_steps,
              "xs": x_grid, "ys": y_grid, "seeds": seed_list}
    log = probe_log.open_dir(out, inputs, overwrite)
    if log.resumed:
        console.print(f"resuming: {log.resumed} probes of this calibration are in {out / probe_log.PROBES}")

    # on a terminal a live line says what runs now; in a log, the line per probe says it all
    live = console.status("probes starting", spinner="dots") if console.is_terminal else contextlib.nullcontext()

    def said(state):
        console.print(probe_log.progress_line(state), markup=False, highlight=False)
        if console.is_terminal and state["done"] < state["of"]:
            left = "" if state["left_s"] is None else f", ~{probe_log.duration(state['left_s'])} left"
            live.update(f"probe {state['done'] + 1}/{state['of']} training ({state['steps_done']}/"
                        f"{state['steps_of']} probe steps done{left})")

    try:
        with live:
            cal = calibrator.calibrate(task, budget_steps=budget_steps, xs=x_grid, ys=y_grid, seeds=seed_list,
                                       on_probe=log.landed, known=log.known, on_progress=said, **config)
    except KeyboardInterrupt:
        err.print(f"calibration interrupted; its finished probes are in {out / probe_log.PROBES}: the same "
                  "command resumes it", markup=False)
        raise typer.Exit(130) from None
    h = cal.horizons
    later = (f"at {h['long']} steps: η_A = {cal.long['x']:.3g}, γ·η_B = {cal.long['y']:.3g}; "
             if h["long"] else "")
    console.print(f"short-horizon optimum ({h['short']} steps): η_A = {cal.short['x']:.3g}, γ·η_B = "
                  f"{cal.short['y']:.3g} ({cal.short['how']}); {later}{calibrator.carry_words(cal.to_dict())}")
    table = Table(title=f"{task}, rank {cal.rank}, {cal.steps} steps: the "
                        f"{'best probe, not a calibrated point' if cal.unknown else 'point'} (η_A, γ·η_B) = "
                        f"({cal.eta_A:.3g}, {cal.gamma_eta_B:.3g})")
    for column in ("as", "lora_alpha", "η", "more"):
        table.add_column(column, justify="right")
    st = cal.settings
    table.add_row("LoRA-α", f"c = {st['lora-alpha']['coef']:.4g} (α = {st['lora-alpha']['alpha']:.4g})",
                  f"{st['lora-alpha']['lr']:.3g}", f"paper: c = {scaling.PAPER_COEF:g}")
    table.add_row("plain LoRA", f"{st['lora']['alpha']:.4g}", f"{st['lora']['lr']:.3g}", "")
    table.add_row("LoRA+", f"{st['loraplus']['alpha']:.4g}", f"{st['loraplus']['lr']:.3g}",
                  f"η_B/η_A = {st['loraplus']['loraplus_ratio']:.3g}")
    console.print(table)
    console.print(f"how sure: {cal.certainty['summary']}", markup=False, soft_wrap=True)
    console.print(f"cost: {cal.cost_steps} optimizer steps of a {cal.budget_steps}-step budget, "
                  f"{cal.wall_time_s:.1f} s")
    if cal.unknown:
        console.print("answer: unknown (the optimum lies beyond the probes); the best probe, to widen from, "
                      f"was: {cal.command}", markup=False, soft_wrap=True)
    else:
        console.print(f"train it: {cal.command}", markup=False, soft_wrap=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        runs.write_json(out / "calibrate.json", cal.to_dict())
        calibrator.plot(cal.to_dict(), out / "calibrate.png")
    except OSError as e:
        raise UsageError(f"cannot write calibrate.json into {out}: {e.strerror or e}") from None
    console.print(f"wrote {out / 'calibrate.json'} and {out / 'calibrate.png'}")


@app.command("calibrate-c")
@config_options("config", TrainConfig, only=("task", "rank", "lr", "batch_size", "task_options", "device", "dtype"),
                defaults={"rank": 4},
                helps={"rank": "the small rank R0 every probe trains at",
                       "lr": "η of the probes (default: the task's full-FT rate)"})
@task_flags
def calibrate_coef(
    config: dict,
    budget_steps: int = typer.Option(2000, "--budget", help="total optimizer steps over all probes (never exceeded)"),
    ranks: str = typer.Option("1,4,16,64", help="ranks to show α = c·√r at, comma-separated"),
    coefs: Optional[str] = typer.Option(None, help="grid of c, comma-separated (default: 1, 2, 4, …, 4096)"),
    seeds: str = typer.Option("0", help="seeds of every probe, comma-separated (a c scores their mean loss)"),
    out: Path = typer.Option(Path("runs/calibrate-c"), help="directory for calibrate.json"),
) -> None:
    """Pick only c of LoRA-α (α = c·√r) at one η: successive halving of short probes at rank R0 over a log grid
    of c, ranked by train loss, then a parabola in log c. Prints α = c·√r at --ranks. (`calibrate` picks η too,
    and corrects for the probes' short horizon.)"""
    task = config.pop("task")
    show = [scaling.check_rank(r) for r in numbers(ranks, int, "--ranks")]
    grid = numbers(coefs, float, "--coefs") if coefs is not None else None
    seed_list = numbers(seeds, int, "--seeds")

    def report(rnd):
        best = next(p for p in rnd["probes"] if p["coef"] == rnd["best"])
        kept = ", ".join(f"{c:g}" for c in rnd["kept"])
        console.print(f"round {rnd['round']}: {len(rnd['probes'])} c × {rnd['steps']} steps — "
                      f"best c = {rnd['best']:g} (loss {best['loss']:.4g}); keep {kept}")

    try:
        from ..studies.calibrate_c import calibrate as run_probes

        cal = run_probes(task, rank=config.pop("rank"), budget_steps=budget_steps, coefs=grid, seeds=seed_list,
                         on_round=report, **config)
    except KeyboardInterrupt:
        err.print("calibration interrupted; nothing written")
        raise typer.Exit(130) from None
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

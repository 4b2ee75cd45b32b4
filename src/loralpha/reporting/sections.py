"""The sections of a single run's and a sweep store's report, and the α*(r) law section they share
with the demo's report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .. import runs, scaling
from ..config import train_command
from ..errors import UsageError
from ..studies.laws import fit
from ..studies.records import is_higher_better, load_records, metric_value
from ..sweep import Store, parse
from .bracket_report import bracket_sections
from .document import Figure, Report, Section, Table, fmt
from .plots import curves, plot_curves, pyplot

PAPER = "the paper"


def run_report(run_dir: Path, out: Path) -> Report:
    try:
        config = runs.read_json(run_dir / "config.json")
    except (OSError, ValueError) as e:
        raise UsageError(f"{run_dir / 'config.json'} is missing or not JSON ({e}); is {run_dir} a run "
                         "directory?") from None
    summary = runs.read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else None
    train_config = config.get("config", {})
    task = train_config.get("task", "?")
    metric = config.get("metric") or "loss"
    c = curves(run_dir)
    figure = plot_curves({train_config.get("rule", "run"): c}, metric, out / "curves.png",
                         f"{task}: {train_config.get('rule', '?')} at rank {train_config.get('rank', '?')}")
    status = summary["status"] if summary else "unfinished (no summary.json)"
    rows = [["status", status], ["steps", fmt(summary["steps"] if summary else (c["loss"][-1][0] if c["loss"] else 0))],
            ["lora_alpha (α)", fmt(config.get("lora_alpha"))], ["γ = α/r", fmt(config.get("gamma"), ".3g")],
            ["η", fmt(config.get("lr"), ".3g")], ["batch size", fmt(train_config.get("batch_size") or
                                                                    config.get("task_info", {}).get("batch_size"))],
            ["seed", fmt(config.get("seed"))], ["trainable parameters", fmt(config.get("trainable_params"), ",")]]
    if summary:
        rows.append(["final train loss (mean of last 10 steps)", fmt(summary.get("final_loss"))])
        rows += [[f"held-out {k}", fmt(v)] for k, v in summary.get("eval", {}).items()]
        if summary.get("eval"):  # what learning nothing scores: a run at a baseline learned nothing beyond it
            rows += [[f"baseline: {r['name']} (held-out {r['metric']})", fmt(r["value"])]
                     for r in (runs.baseline(run_dir), runs.prior_baseline(run_dir)) if r]
        rows.append(["wall time", f"{fmt(summary.get('wall_time_s'), '.1f')} s"])
        if summary.get("reason"):
            rows.append(["note", summary["reason"]])
    text = [f"One run of `{task}` under rule `{train_config.get('rule', '?')}`: "
            f"{'it finished' if status == 'done' else 'status ' + status}."]
    return Report(title=f"loralpha run: {run_dir.name}", subtitle=f"run directory {run_dir}",
                  sections=[Section("Run", text, [Table(["", "value"], rows, "what was run and what it reached")],
                                    [Figure(figure, f"Train loss and held-out {metric} per step")],
                                    [train_command(train_config)] if train_config else [])])


def compare_runs(path: Path) -> list[Path]:
    """The run directories of a `loralpha compare` folder (OUT/RULE), in the order they were trained."""
    found = [d for d in path.iterdir() if d.is_dir() and (d / "config.json").is_file()] if path.is_dir() else []
    return sorted(found, key=lambda d: ((d / "config.json").stat().st_mtime_ns, d.name))


def compare_report(path: Path, out: Path) -> Report:
    """The report of a `loralpha compare` folder: each rule's setting and result side by side, the baselines
    (a rule at one learned nothing beyond it), and every rule's learning curves."""
    dirs = compare_runs(path)
    configs = {d.name: runs.read_json(d / "config.json") for d in dirs}
    summaries = {d.name: runs.read_json(d / "summary.json") if (d / "summary.json").exists() else {} for d in dirs}
    first = next(iter(configs.values()))
    c, metric = first.get("config", {}), first.get("metric") or "loss"
    # the headline metric, and the held-out loss beside it (what the class prior's baseline is measured in)
    shown = [metric] + [k for k in ("eval_loss",) if k != metric and any(k in (s.get("eval") or {})
                                                                         for s in summaries.values())]
    rows = [[name, fmt(config.get("lora_alpha")), fmt(config.get("gamma"), ".3g"), fmt(config.get("lr"), ".3g"),
             summaries[name].get("status", "unfinished"), fmt(summaries[name].get("final_loss")),
             *[fmt((summaries[name].get("eval") or {}).get(k)) for k in shown],
             f"{fmt(summaries[name].get('wall_time_s'), '.0f')} s"] for name, config in configs.items()]
    references = [r for r in (runs.baseline(dirs[0]), runs.prior_baseline(dirs[0])) if r]
    task = c.get("task", "?")
    text = [f"{len(dirs)} rules on `{task}` at the same budget: {c.get('steps')} steps of batch "
            f"{c.get('batch_size') or first.get('task_info', {}).get('batch_size', '?')}, rank {c.get('rank')}, seed "
            f"{c.get('seed')}, each trained into {path}/RULE."]
    text += [f"Baseline ({r['name']}): held-out {r['metric']} {fmt(r['value'])}; a rule at it learned nothing "
             "beyond it." for r in references]
    header = ["rule", "α", "γ", "η", "status", "final train loss", *[f"held-out {k}" for k in shown], "wall time"]
    figure = plot_curves({d.name: curves(d) if (d / "metrics.jsonl").exists() else {"loss": [], "eval": {}}
                          for d in dirs}, metric, out / "compare.png", f"{task}: {', '.join(configs)}")
    rerun = train_command({k: v for k, v in c.items() if k != "rule"}, "loralpha compare", always=("task", "steps"))
    return Report(title=f"loralpha compare: {path.name}", subtitle=f"compare folder {path}",
                  sections=[Section("Rules side by side", text, [Table(header, rows, "each rule's setting and result")],
                                    [Figure(figure, f"Train loss and held-out {metric} per step, per rule")],
                                    [f"{rerun} --rules {','.join(configs)} --out {path}"],
                                    data={name: s.get("eval") for name, s in summaries.items()})])


def store_report(store_path: Path, out: Path) -> Report:
    records = load_records(store_path)
    if not records:
        raise UsageError(f"{store_path} holds no trials")
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    metric = next((r.get("metric") for r in records if r.get("metric")), "final_loss")
    varying = [k for k in records[0]["config"] if len({repr(r["config"].get(k)) for r in records}) > 1]
    sections = []
    done = [r for r in records if r["status"] == "done"]
    higher = is_higher_better(metric, None)

    def score(r):
        v = metric_value(r, metric)
        return math.inf if v is None else (-v if higher else v)

    best = sorted(done, key=score)[:20]
    header = ["trial", *varying, "status", "final train loss", f"held-out {metric}", "wall time"]
    rows = [[r["id"][:8], *[fmt(r["config"].get(k)) for k in varying], r["status"], fmt(r.get("final_loss")),
             fmt(metric_value(r, metric)), f"{fmt(r.get('wall_time_s'), '.0f')} s"] for r in best]
    task = records[0]["config"].get("task", "?")
    text = [f"{len(records)} trials of `{task}`: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "."
            + (f" Varied: {', '.join(varying)}." if varying else "")]
    sections.append(Section("Trials", text, [Table(header, rows, f"the best {len(best)} finished trials by {metric}")],
                            commands=[f"loralpha report {store_path}", f"loralpha fit {store_path} --metric {metric}"]))
    if "rank" in varying and ("alpha" in varying or "coef" in varying):
        sections.append(law_section(records, metric, out, f"loralpha fit {store_path} --metric {metric}"))
    with Store(store_path) as store:
        recorded = store.get_meta("spec")
    if isinstance(recorded, dict) and recorded.get("bracket") is not None:  # a bracketed sweep: its protocol
        sections += bracket_sections(parse(recorded, source=store_path), records, store_path)
    return Report(title=f"loralpha sweep: {store_path.parent.name}", subtitle=f"sweep store {store_path}",
                  sections=sections)


def law_section(records: list[dict[str, Any]], metric: str, out: Path, command: str,
                title: str = "The α*(r) law") -> Section:
    study = fit(records, x="alpha", group="rank", metric=metric)
    rows = []
    for o in study.optima:
        r = float(o.group)
        rows.append([str(o.group), o.describe(), fmt(o.best), fmt(r, "g"), fmt(2 * r, "g"),
                     fmt(scaling.DEFAULT_ALPHA * math.sqrt(r), ".4g"), fmt(scaling.PAPER_COEF * math.sqrt(r), ".4g"),
                     fmt(o.x_star / (scaling.PAPER_COEF * math.sqrt(r)) if o.x_star else None, ".3g")])
    first = records[0]["config"]
    seeds = sorted({r["config"].get("seed", 0) for r in records})
    table = Table(["rank", "α*", f"best {metric}", "α = r", "α = 2r", "rsLoRA 16·√r", "paper 256·√r",
                   "α* / 256·√r"], rows,
                  f"{first['task']}, rule {', '.join(sorted({r['config'].get('rule', '?') for r in records}))}, "
                  f"η = {first.get('lr') or 'default'}, "
                  f"{first['steps']} steps, seeds {', '.join(map(str, seeds))}; α* is the parabola vertex in log α "
                  f"around the best grid point ((grid): no refinement; ≤/≥: at the grid's edge, a bound)")
    path = _plot_law(study, records, metric, out / "law.png")
    law = study.law
    if law is None:
        text = f"No power law could be fitted: {study.reason}."
    else:
        def ci(iv, f):
            return f" [{iv[0]:{f}}, {iv[1]:{f}}]" if iv else ""

        text = (f"Fitted α* = c·r^p over ranks {', '.join(f'{r:g}' for r in law.ranks)}: "
                f"c = {law.c:.4g}{ci(law.c_ci, '.4g')}, p = {law.p:.2f}{ci(law.p_ci, '.2f')} (95% bootstrap"
                + (f"; {law.bootstrap['note']}" if law.bootstrap.get("note") else "") + "). "
                f"{PAPER.capitalize()} claims p = ½ with c ≈ 256: p = ½ is "
                + ("inside" if law.p_ci and law.p_ci[0] <= 0.5 <= law.p_ci[1] else "outside")
                + " the interval here, and α* is "
                + _ratio_range([float(row[-1]) for row in rows if row[-1] != "—"])
                + " the paper's 256·√r. The rank-tied heuristics α = r and α = 2r sit "
                + _ratio_range([float(o.x_star) / (2 * float(o.group)) for o in study.optima if o.x_star], word="below")
                + " α* (for α = 2r)."
                + (f" Best model of log α* by leave-one-rank-out error: {law.best_model}." if law.best_model else ""))
    data = {} if law is None else {"c": law.c, "c_ci": law.c_ci, "p": law.p, "p_ci": law.p_ci, "ranks": law.ranks}
    return Section(title, [text], [table], [Figure(path, f"Held-out {metric} against α per rank (left) and α* per rank "
                                                         "with the fitted law and the usual choices (right)")],
                   [command], data)


def _ratio_range(values: list[float], word: str = "") -> str:
    if not values:
        return "not comparable to"
    lo, hi = min(values), max(values)
    if word:
        return f"{lo:.3g}–{hi:.3g}× {word}"
    return f"{lo:.3g}–{hi:.3g}× of"


def _plot_law(study, records, metric: str, path: Path) -> Path:
    import numpy as np

    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
    for i, o in enumerate(study.optima):
        pts = [(g["x"], g["mean"]) for g in o.grid if g.get("mean") is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", ms=3, color=f"C{i % 10}", label=f"r = {o.group}")
        if o.x_star is not None and o.best is not None:
            ax.plot([o.x_star], [o.best], "*", ms=11, color=f"C{i % 10}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("α (lora_alpha)")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title("Metric against α per rank (★ = α*)", fontsize=10)
    ranks = np.array([float(o.group) for o in study.optima])
    r = np.geomspace(ranks.min(), ranks.max(), 50)
    interior = [(float(o.group), o.x_star) for o in study.optima if o.x_star is not None and not o.edge]
    edges = [(float(o.group), o.x_star) for o in study.optima if o.x_star is not None and o.edge]
    if interior:
        bx.plot(*zip(*interior), "ko", ms=7, label="α* measured")
    if edges:
        bx.plot(*zip(*edges), "k^", mfc="none", ms=8, label="α* bound (grid edge)")
    if study.law is not None:
        law = study.law
        bx.plot(r, law.c * r ** law.p, "k-", lw=2, label=f"fit {law.c:.3g}·r^{law.p:.2f}")
    bx.plot(r, scaling.PAPER_COEF * np.sqrt(r), "C3--", label="paper 256·√r")
    bx.plot(r, scaling.DEFAULT_ALPHA * np.sqrt(r), "C2:", label="rsLoRA 16·√r")
    bx.plot(r, 2 * r, "C1-.", label="α = 2r")
    bx.plot(r, r, "C0-.", label="α = r")
    bx.set_xscale("log", base=2)
    bx.set_yscale("log")
    bx.set_xlabel("LoRA rank r")
    bx.set_ylabel("α (lora_alpha)")
    bx.set_title("Optimal α per rank and the usual choices", fontsize=10)
    for a in (ax, bx):
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def calibration_command(cal: dict[str, Any]) -> str:
    """The `loralpha calibrate` command line that reproduces a calibration (calibrate.json)."""
    config = {k: v for k, v in cal["config"].items() if k not in ("rule", "coef", "lr")}  # what calibrate sets
    parts = [train_command(config, "loralpha calibrate")]
    parts += [f"--budget {cal['budget_steps']}", "--xs " + ",".join(f"{x:g}" for x in cal["xs"]),
              "--ys " + ",".join(f"{y:g}" for y in cal["ys"])]
    if cal["seeds"] != [0]:
        parts.append("--seeds " + ",".join(str(s) for s in cal["seeds"]))
    return " ".join(parts)


def calibration_report(path: Path, out: Path) -> Report:
    """The report of `loralpha calibrate`'s calibrate.json: the chosen point as each rule writes it, how sure,
    every probe, and the probes and the point on the Adam plane."""
    from ..studies.calibrate import plot
    from ..studies.calibrate_words import carry_words

    try:
        cal = runs.read_json(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not readable JSON ({e})") from None
    if "eta_A" not in cal:
        raise UsageError(f"{path} is calibrate-c's (c only); `loralpha report` draws the calibrations of "
                         "`loralpha calibrate`")
    figure = out / "calibrate-plane.png"
    plot(cal, figure)
    st, h = cal["settings"], cal["horizons"]
    rows = [["LoRA-α", f"c = {fmt(st['lora-alpha']['coef'])} (lora_alpha = {fmt(st['lora-alpha']['alpha'])})",
             fmt(st["lora-alpha"]["lr"], ".3g"), f"paper: c = {scaling.PAPER_COEF:g}"],
            ["plain LoRA", fmt(st["lora"]["alpha"]), fmt(st["lora"]["lr"], ".3g"), ""],
            ["LoRA+", fmt(st["loraplus"]["alpha"]), fmt(st["loraplus"]["lr"], ".3g"),
             f"η_B/η_A = {fmt(st['loraplus']['loraplus_ratio'], '.3g')}"]]
    probes = [[p["stage"], str(p["steps"]), fmt(p["x"], ".3g"), fmt(p["y"], ".3g"), fmt(p.get("coef"), ".4g"),
               str(p["seed"]), "diverged" if p["score"] is None else fmt(p["score"])] for p in cal["probes"]]
    what = "The best probe, not a calibrated point (the answer is unknown)," if cal.get("unknown") else "The point"
    check = (f", a check at {h['long']} steps at ({fmt(cal['long']['x'], '.3g')}, {fmt(cal['long']['y'], '.3g')})"
             if h.get("long") else "")
    text = [f"{what} (η_A, γ·η_B) = ({fmt(cal['eta_A'], '.3g')}, {fmt(cal['gamma_eta_B'], '.3g')}) for "
            f"`{cal['task'] or 'a model of your own'}` at rank {cal['rank']} and {cal['steps']} steps, from "
            f"{len(cal['probes'])} probes costing {cal['cost_steps']} optimizer steps (budget {cal['budget_steps']}): "
            f"a map at {h['short']} steps put the optimum at ({fmt(cal['short']['x'], '.3g')}, "
            f"{fmt(cal['short']['y'], '.3g')}){check}; {carry_words(cal)}.",
            f"How sure: {cal['certainty']['summary']}."]
    return Report(title=f"loralpha calibration: {cal['task']}", subtitle=f"calibration {path}",
                  sections=[Section("Calibration", text,
                                    [Table(["as", "lora_alpha", "η", "more"], rows, "the point as each rule writes it"),
                                     Table(["stage", "steps", "η_A", "γ·η_B", "c", "seed", "score (train loss)"],
                                           probes, "every probe")],
                                    [Figure(figure, "The probes on the Adam plane (colour: the map's score), the "
                                                    "check's plus, the optimum at each horizon and the chosen "
                                                    "point; right: every probe's train-loss curve")],
                                    [calibration_command(cal), cal["command"]],
                                    data={"eta_A": cal["eta_A"], "gamma_eta_B": cal["gamma_eta_B"]})])

"""What the calibration benchmark's records say (bench/calibration/run.py runs it; protocol v1, as the decisive tables
it reads): per decisive table, the calibrated point, its held-out metric over 3 seeds, paired by seed with every tuned
rule of the table and with the paper's c = 256 (v2's words; seeds 1–2 alone beside them, the seeds that did not pick
the rules' η), and the probes' cost against one rule's η sweep, in target runs and against the table's whole grid.
Writes bench/results/calibration.json and one figure per table."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.calibration.plan import HELD_OUT, SEEDS, TABLES, decisive_table, records, where
from bench.common import RESULTS, ROOT, machine
from bench.decisive.analysis import interval
from bench.decisive.plan import RANK, load, plan, settings
from loralpha.studies import protocol


def _values(recs: dict[str, dict], metric: str) -> list[float | None]:
    """The metric of the seed runs, in seed order (None where a seed has not run or diverged)."""
    by_seed = {r["config"]["seed"]: r for r in recs.values()}
    out = []
    for seed in SEEDS:
        r = by_seed.get(seed)
        v = r["eval"].get(metric) if r and r["status"] == "done" else None
        out.append(v if v is not None and math.isfinite(v) else None)
    return out


def grid_steps(name: str, quick: bool) -> int | None:
    """The optimizer steps of every stored trial of a decisive table's plan (a task's tables share its records
    folder: only this table's trials count), or None when it has none."""
    from loralpha.sweep import trial_id

    table = decisive_table(name)
    s = settings(quick).get(table)
    records = load(table, quick) if s else {}
    wanted = [c for c in plan(table, s, records)[0] if trial_id(c) in records] if records else []
    return sum(c.steps for c in wanted) or None


def sweep_steps(row: dict, steps: int) -> int:
    """The optimizer steps of one tuned rule's seed-0 η sweep in a decisive table: its grid's points × the budget."""
    return steps * sum(g["status"] is not None for g in row["grid"].values())


def against(values: list[float | None], row: dict, metric: str, seeds: list[int] = SEEDS) -> dict:
    """v2's verdict on the calibrated setting against a decisive row, paired by seed over `seeds`: calibrated − row,
    lower is better (loralpha.studies.protocol.verdict; v1 declared no margin δ, so no tie can be said)."""
    mine = {seed: v for seed, v in zip(SEEDS, values) if seed in seeds}
    theirs = {seed: v for seed, v in zip(SEEDS, row["select"]["values"]) if seed in seeds}
    return {"arm": row["arm"], **protocol.verdict(mine, theirs, metric, higher_is_better=False)}


def verdict(mean: float, best: dict) -> dict:
    """v1's reading, kept for the record of the criteria that changed: the calibrated mean against the best tuned
    rule's interval, unpaired (lower is better)."""
    if best.get("lo") is None:
        return {"said": "no interval to compare with", "within": None, "beyond": None}
    if mean < best["lo"]:
        return {"said": "better than its interval", "within": True, "beyond": mean - best["lo"]}
    if mean <= best["hi"]:
        return {"said": "within its interval", "within": True, "beyond": 0.0}
    return {"said": f"worse: {mean - best['hi']:.3g} above its upper end ({(mean - best['hi']) / best['hi']:.1%})",
            "within": False, "beyond": mean - best["hi"]}


def summarize(name: str, decisive: dict, quick: bool) -> dict:
    """One table's calibration against its decisive ground truth."""
    from loralpha import scaling

    d = where(name, quick)
    cal_path = d / "calibration.json"
    out: dict = {"table": name, "decisive": decisive_table(name), "targets": TABLES.get(name, "all"),
                 "held_out": name == HELD_OUT, "folder": str(d.relative_to(ROOT) if d.is_relative_to(ROOT) else d)}
    truth = decisive.get(decisive_table(name))
    s = settings(quick)[decisive_table(name)]
    out["metric"], out["steps"] = s.select, s.steps
    if not cal_path.is_file():
        probes = d / "probes.jsonl"
        # not how many probes: they land while the table is rendered (`calibration.py --status` counts them)
        out["state"] = "calibrating" if probes.is_file() and probes.stat().st_size else "not started"
        return out
    cal = json.loads(cal_path.read_text())
    out["calibration"] = {k: cal[k] for k in ("eta_A", "gamma_eta_B", "settings", "command", "horizons", "cost_steps",
                                              "budget_steps", "wall_time_s")}
    out["calibration"]["certainty"] = cal["certainty"]["summary"]
    grid = grid_steps(name, quick)
    out["grid_steps"] = grid
    out["cost_share"] = cal["cost_steps"] / grid if grid else None  # of the whole v1 grid: not what a user saves
    out["cost_runs"] = cal["cost_steps"] / s.steps  # the probes, in runs at the target budget
    values = _values(records(name, quick), s.select)
    out["seeds"] = interval([v for v in values if v is not None])
    out["state"] = "complete" if all(v is not None for v in values) else \
        f"{sum(v is not None for v in values)} of {len(SEEDS)} seed runs"
    if truth:
        mine = [r for r in truth["rows"] if r["tuned"] and r["select"] and (r["targets"] == out["targets"]
                                                                            or scaling.RULES[r["rule"]].every_weight)]
        best = min(mine, key=lambda r: r["select"]["mean"], default=None)
        lora = min((r for r in mine if not scaling.trains_full_weights(r["rule"])), key=lambda r: r["select"]["mean"],
                   default=None)
        untuned = next((r for r in truth["rows"] if not r["tuned"] and r["targets"] == out["targets"]), None)
        out["best"] = _row(best)
        out["best_lora"] = _row(lora)
        out["paper"] = _row(untuned)
        out["marks"] = [{"label": f"{r['arm']} (tuned, η = {r['lr']:.3g})",
                         **dict(zip(("x", "y"), scaling.adam_plane(r["rule"], RANK, r["lr"])))}
                        for r in mine if r["lr"] and not scaling.trains_full_weights(r["rule"])]
        if untuned:
            out["marks"].append({"label": "lora-alpha untuned (c = 256)", **dict(zip(
                ("x", "y"), scaling.adam_plane("lora-alpha", RANK, untuned["lr"])))})
        # what a user would run instead of the probes: one rule's η sweep at seed 0 (each rule of these targets)
        out["sweep_steps"] = {r["arm"]: sweep_steps(r, s.steps) for r in mine}
        out["cost_vs_sweep"] = {arm: cal["cost_steps"] / n for arm, n in out["sweep_steps"].items() if n}
        if out["seeds"] and best:
            out["v1"] = {"best": verdict(out["seeds"]["mean"], best["select"]),
                         "best_lora": verdict(out["seeds"]["mean"], lora["select"]) if lora else None}
            out["paired_vs_best"] = paired(values, best)
            if lora:
                out["paired_vs_best_lora"] = paired(values, lora)
            if untuned:
                out["paired_vs_paper"] = paired(values, untuned)
            if all(v is not None for v in values):
                rows = [r for r in mine if len(r["select"]["values"]) == len(SEEDS)] + ([untuned] if untuned else [])
                out["against"] = [against(values, r, s.select) for r in rows]
                out["against_1_2"] = [against(values, r, s.select, SEEDS[1:]) for r in rows]
                words = {a["arm"]: a for a in out["against"]}
                out["verdict"] = words.get(best["arm"])
    return out


def paired(values: list[float | None], row: dict) -> dict | None:
    """calibrated − row, seed by seed (the same seeds and batch order), once every seed of both has run."""
    theirs = row["select"]["values"]
    if any(v is None for v in values) or len(theirs) != len(values):
        return None
    return interval([v - b for v, b in zip(values, theirs)])


def _row(r: dict | None) -> dict | None:
    return None if r is None else {"arm": r["arm"], "rule": r["rule"], "lr": r["lr"], "select": r["select"]}


def write(names: list[str], quick: bool) -> Path:
    """results/calibration.json and each calibrated table's figure (bench/results/calibration/<table>.png)."""
    from loralpha.studies.calibrate import plot

    base = RESULTS / "quick" if quick else RESULTS
    decisive_path = base / "decisive.json"
    decisive = json.loads(decisive_path.read_text())["tasks"] if decisive_path.is_file() else {}
    tables = {}
    for name in names:
        t = summarize(name, decisive, quick)
        tables[name] = t
        cal_path = where(name, quick) / "calibration.json"
        if cal_path.is_file():
            plot(json.loads(cal_path.read_text()), where(name, quick).with_suffix(".png"), marks=t.get("marks", []),
                 title=f"{name}: the calibration on the Adam plane\n(◇: the decisive table's rules)")
    path = base / "calibration.json"
    path.write_text(json.dumps({"machine": machine(), "tables": tables}, indent=1) + "\n")
    return path

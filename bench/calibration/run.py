"""The plane calibrator against the decisive benchmark's ground truth: on each decisive table, `loralpha calibrate`
picks the point (η_A, γ·η_B) from short probes, then the chosen setting trains at the table's budget with 3 seeds,
and its held-out metric is compared with the best tuned rule's 95% interval.

    python -m bench.calibration.run --tables tweets@1000          # calibrate, then the 3 seeds (resumes from records)
    python -m bench.calibration.run --status                      # what is stored
    python -m bench.calibration.run --render                      # results/calibration.json from the records (then
                                                              # tables.py and docs.py)
    python -m bench.calibration.run --quick                       # a tiny teacher-student: a smoke run

Records (bench/results/calibration/<table>/): probes.jsonl, one line per finished probe as it lands (a rerun trains
only the probes it lacks); calibration.json, the calibrator's answer; <trial id>.json, the chosen setting's runs at
the table's budget, in the decisive benchmark's record format.

The probe budget is 3 × the table's steps (three runs' worth); its share of the table's grid (the optimizer steps of
every decisive trial of that table) is part of the result. The held-out check: `tweets@1000 (qv)`, the calibrator
on PEFT's default query/value targets, whose decisive rows (lora-alpha and 2rank on qv) were not looked at while the
method was designed (its defaults were set before any probe ran, on no table's numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench import records as trial_records
from bench.calibration.analysis import write
from bench.calibration.plan import (
    BUDGET_RUNS,
    QUICK_BUDGET,
    SEEDS,
    TABLES,
    decisive_table,
    probe_fields,
    records,
    setting,
    where,
)
from bench.common import WORK
from bench.decisive.plan import Arm, config


def calibrate_table(name: str, quick: bool) -> dict:
    """Run (or resume) the calibration of one table; returns calibration.json's content."""
    from loralpha.studies.calibrate import calibrate

    d = where(name, quick)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "calibration.json"
    if path.is_file():
        return json.loads(path.read_text())
    log = d / "probes.jsonl"
    seen = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            if line.strip():
                p = json.loads(line)
                seen[_key(p)] = p
    fields = probe_fields(name, quick)
    steps = fields.pop("steps")
    task = decisive_table(name).partition("@")[0]

    def landed(p: dict) -> None:
        with log.open("a") as f:
            f.write(json.dumps(p) + "\n")
        print(f"{time.strftime('%H:%M')} {name}: {p['stage']} x={p['x']:.3g} y={p['y']:.3g} {p['steps']} steps: "
              f"{p['status']} {p['score'] if p['score'] is None else round(p['score'], 4)}", flush=True)

    budget = QUICK_BUDGET if quick else BUDGET_RUNS * steps
    cal = calibrate(task, steps=steps, rank=8, budget_steps=budget, on_probe=landed,
                    known=lambda key: seen.get(_key(key)), **fields)
    out = cal.to_dict()
    out["table"] = name
    path.write_text(json.dumps(out, indent=1) + "\n")
    return out


def _key(p: dict) -> tuple:
    return (p["stage"], f"{p['x']:.6g}", f"{p['y']:.6g}", p["steps"], p["seed"])


def seed_configs(name: str, cal: dict, quick: bool) -> list:
    from dataclasses import replace

    s = setting(name, quick)
    arm = Arm("lora-alpha", TABLES.get(name, "all"))
    lr, coef = cal["settings"]["lora-alpha"]["lr"], cal["settings"]["lora-alpha"]["coef"]
    return [replace(config(decisive_table(name), s, arm, lr, seed), coef=coef) for seed in SEEDS]


def run_seeds(name: str, cal: dict, quick: bool, threads: int, only: list[int] | None = None) -> None:
    from loralpha.sweep import Trial, run_sweep, trial_id

    d = where(name, quick)
    store = WORK / ("quick" if quick else "full") / "calibration" / d.name / "study.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    for c in seed_configs(name, cal, quick):
        tid = trial_id(c)
        if (d / f"{tid}.json").is_file() or (only is not None and c.seed not in only):
            continue
        print(f"{time.strftime('%H:%M')} {name}: seed {c.seed} at η = {c.lr:g}, c = {c.coef:g}: start {tid}",
              flush=True)
        run_sweep([Trial(tid, c)], store, workers=1, progress=False, threads=threads)
        export_to(store, d, tid)


def export_to(store: Path, d: Path, tid: str) -> None:
    """The finished trial `tid` of `store` as its record in `d` (`bench.records`, the decisive benchmark's format)."""
    trial_records.export(store, d, {tid})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tables", default=None, help=f"comma-separated (default: {', '.join(TABLES)})")
    p.add_argument("--status", action="store_true")
    p.add_argument("--render", action="store_true")
    p.add_argument("--seeds", default=None, help="only these seed runs, comma-separated (a second process can take "
                                                 "one while the first runs the others)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: every core; 1 when two of "
                                                                  "these run side by side)")
    args = p.parse_args()
    names = ["teacher-student"] if args.quick else (args.tables.split(",") if args.tables else list(TABLES))
    if not args.quick:
        unknown = [n for n in names if n not in TABLES]
        if unknown:
            p.error(f"unknown table {unknown[0]!r}; choose from {', '.join(TABLES)}")
    if args.render:
        print(f"wrote {write(names if args.quick else list(TABLES), args.quick)}")
        return
    for name in names:
        if args.status:
            d = where(name, args.quick)
            n = sum(1 for _ in (d / "probes.jsonl").open()) if (d / "probes.jsonl").is_file() else 0
            print(f"{name}: {n} probes, calibration {'done' if (d / 'calibration.json').is_file() else 'not done'}, "
                  f"{len(records(name, args.quick))} of {len(SEEDS)} seed runs")
            continue
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        cal = calibrate_table(name, args.quick)
        print(f"{name}: η_A = {cal['eta_A']:.3g}, γ·η_B = {cal['gamma_eta_B']:.3g} ({cal['command']}); "
              f"{cal['cost_steps']} probe steps", flush=True)
        run_seeds(name, cal, args.quick, args.threads or os.cpu_count() or 1,
                  [int(v) for v in args.seeds.split(",")] if args.seeds else None)
    if not args.status:
        print(f"wrote {write(names if args.quick else list(TABLES), args.quick)}")


if __name__ == "__main__":
    main()

"""BENCHMARKS.md's table of the criteria that changed after the records existed (§7 and §9, protocol v1): each
change (bench/decisive/criteria.py's CHANGES), where it was made, and the figures it gives under the reading before
and after, from bench/results/decisive.json and calibration.json (which compute both readings from the records)."""

from __future__ import annotations

import re
from pathlib import Path

from bench.decisive.criteria import CHANGES


def _pct(gain: float) -> str:
    return f"{100 * gain:.2f}%"


def _budget(tasks: dict) -> tuple[str, str]:
    before, after = [], []
    for name, t in tasks.items():
        b, old, means = t.get("budget"), t.get("budget_nearest"), t.get("budget_means")
        if not t["complete"] or not b or not old:
            continue
        mean = means and means["n"] > 1
        before.append(f"{name}: {t['best_baseline']} seed 0 {_pct(old['gain'])} from step {old['from_step']}, "
                      f"{'holds' if old['holds'] else '**fails**'}"
                      + (f" (3 seeds' mean {_pct(means['nearest'])})" if mean else ""))
        after.append(f"{name}: {_pct(b['gain'])} from step {b['from_step']:g}, "
                     f"{'holds' if b['holds'] else '**fails**'}"
                     + (f" (3 seeds' mean {_pct(means['interpolated'])}"
                        f"{', ≥ 2%' if means['interpolated'] >= 0.02 else ''})" if mean else ""))
    return "; ".join(before), "; ".join(after)


def _verdicts(tasks: dict, claim: str) -> tuple[str, str]:
    before, after = [], []
    for name, t in tasks.items():
        v = next((v for v in t.get("verdicts", []) if v["claim"] == claim), None)
        if not t["complete"] or not v or "v1" not in v:
            continue
        old_tally = v["v1"]["figure"].split(";")[0].split(" (elsewhere")[0]
        new_tally = v["figure"].split(";")[0].split(" (elsewhere")[0]
        there = [w.group(1) if (w := re.search(r": ([a-z ]+)\)$", f)) else None
                 for f in (v["v1"]["figure"], v["figure"])]  # the verdict at the other η, where one is said
        before.append(f"{name}: {v['v1']['verdict']} ({old_tally}" + (f"; elsewhere {there[0]})" if there[0] else ")"))
        after.append(f"{name}: **{v['verdict']}**" + (f" ({new_tally})" if new_tally != old_tally else "")
                     + (f"; elsewhere **{there[1]}**" if there[1] else ""))
    return "; ".join(before), "; ".join(after)


def _metric(tasks: dict) -> tuple[str, str]:
    before, after = [], []
    for name, t in tasks.items():
        shown = [v for v in t.get("verdicts", []) if v.get("by_report")]
        if not t["complete"] or not shown:
            continue
        before.append(f"{name}: " + ", ".join(f"{v['claim']} {v['verdict']}" for v in shown) + f" (by {t['select']})")
        rep = [v["by_report"] for v in shown]
        v1 = next((v["by_report"]["v1"] for v in shown if v["by_report"].get("v1")), None)
        after.append(f"{name}, by {rep[0]['metric']}: " + ", ".join(f"{v['claim']} **{w['verdict']}**"
                                                                   for v, w in zip(shown, rep))
                     + (f" (untuned: {rep[0]['figure'].split(';')[0].split(': ', 1)[1]}; in v1's sense "
                        f"{v1['figure'].split(': ', 1)[1]})" if v1 else ""))
    return "; ".join(before), "; ".join(after)


def _calibrator(tables: dict) -> tuple[str, str]:
    before, after = [], []
    for name, t in tables.items():
        if not t.get("v1") or not t.get("against"):
            continue
        said = {a["arm"]: a for a in t["against"]}
        best, lora = t["best"]["arm"], (t.get("best_lora") or {}).get("arm")
        before.append(f"{name}: vs {best} {t['v1']['best']['said']}"
                      + (f", vs {lora} {t['v1']['best_lora']['said']}" if lora and t["v1"].get("best_lora") else ""))
        after.append(f"{name}: " + ", ".join(
            f"vs {arm} {said[arm]['mean']:+.3g} [{said[arm]['ci95'][0]:+.3g}, {said[arm]['ci95'][1]:+.3g}] "
            f"**{said[arm]['verdict']}**" for arm in (best, lora) if arm in said))
    return "; ".join(before), "; ".join(after)


def _cost(tables: dict) -> tuple[str, str]:
    before, after = [], []
    for name, t in tables.items():
        if not t.get("cost_vs_sweep") or not t.get("cost_share"):
            continue
        shares = t["cost_vs_sweep"].values()
        lo, hi = f"{min(shares):.0%}", f"{max(shares):.0%}"
        before.append(f"{name}: {t['cost_share']:.1%} of the grid")
        after.append(f"{name}: {lo if lo == hi else f'{lo}–{hi}'} of one rule's sweep, {t['cost_runs']:.2f} target "
                     "runs")
    return "; ".join(before), "; ".join(after)


def criteria(R: dict, folder: Path | None = None) -> list[str]:
    """The table: criterion, where it changed, the reading before → after, the figures under each."""
    if "decisive" not in R:
        return []
    tasks = R["decisive"]["tasks"]
    tables = (R.get("calibration") or {}).get("tables", {})
    figures = {"budget": _budget(tasks), "untuned": _verdicts(tasks, "untuned"), "metric": _metric(tasks),
               "drift": _verdicts(tasks, "drift"), "calibrator": _calibrator(tables), "cost": _cost(tables)}
    rows = [f"| {key} | {commit} | {before} → {after} | {figures[key][0] or '—'} | {figures[key][1] or '—'} |"
            for key, commit, before, after in CHANGES]
    return ["### Criteria changed after the records existed", "",
            "Each rule of §7 and §9 that changed once records it judges were stored, with the figures of the "
            "complete tables under the reading before and after (both computed from the same records; "
            "`bench/decisive/criteria.py` keeps the earlier rules).", "",
            "| criterion | changed in | before → after | figures before | figures after |",
            "| --- | --- | --- | --- | --- |", *rows, ""]

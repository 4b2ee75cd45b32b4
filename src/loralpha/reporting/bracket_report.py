"""The section of a bracketed sweep's report: per group the bracketed optimum, its forgiving width, the budget test
and the reported metrics at the best point with their intervals; every point tried; and the paired differences of
every group against the best one, with the verdict words where the spec declares a margin δ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..studies import bracket
from ..sweep.spec import Spec
from .document import Section, Table, fmt, fmt_lr


def _ci(d: dict[str, Any] | None, spec: str = ".4g") -> str:
    """mean [lo, hi] (n), or the mean alone for one value."""
    if not d:
        return "—"
    if d.get("lo") is None:
        return f"{fmt(d['mean'], spec)} (n = {d['n']})"
    return f"{fmt(d['mean'], spec)} [{fmt(d['lo'], spec)}, {fmt(d['hi'], spec)}] (n = {d['n']})"


def _signed(lo: float | None, hi: float | None) -> str:
    return "—" if lo is None or hi is None else f"[{lo:+.3g}, {hi:+.3g}]"


def bracket_sections(spec: Spec, records: list[dict[str, Any]], store_path: Path) -> list[Section]:
    s = bracket.summarize(spec, {r["id"]: r for r in records}, runs_dir=store_path.parent / "runs")
    axis, choose = s["axis"], s["choose"]
    name = "η" if axis == "lr" else axis
    seeds = ", ".join(map(str, s["choose_seeds"]))
    optima = []
    for g in s["groups"]:
        width = g["forgiveness"]
        budget = g["plateau"]
        optima.append([g["group"], fmt_lr(g["best"]) if g["best"] else "—", _ci(g["chosen"]), g["state"],
                       str(len(g["points"])),
                       (("≥ " if width["open"] else "") + f"{width['decades']:.2f}") if width else "—",
                       f"{budget['gain']:+.1%} ({'holds' if budget['holds'] else 'fails'})" if budget else "—"])
    points = []
    for g in s["groups"]:
        for p in g["points"]:
            star = " ★" if p["x"] == g["best"] else ""
            said = fmt(p["value"]) if p["status"] == "done" else p["status"]
            points.append([g["group"], fmt_lr(p["x"]) + star, said])
    reported = [[g["group"], *(_ci(g["report"][m]) for m in s["report_metrics"])] for g in s["groups"]]
    tables = [
        Table(["group", f"best {name}", f"{choose} at best (seeds {seeds})", "state", "points",
               "forgiving width (decades)", "budget: last-quarter gain"], optima,
              f"the optimum of {name} per group, chosen on {choose} (seeds {seeds}); forgiving width: the decades of "
              f"{name} within 1% of the best (≥: the range reaches the grid's end); budget: how much {choose} still "
              "improved over the last quarter of the best point's run (holds below 2%)"),
        Table(["group", *s["report_metrics"]], reported,
              f"at each group's best {name}: mean [95% t-interval] over seeds "
              f"{', '.join(map(str, s['report_seeds']))}"),
        Table(["group", name, choose], points, f"every point tried (★ the best; seeds {seeds})"),
    ]
    if s["paired"]:
        margin = bool(s["margin"])
        header = ["group", "metric", "pairs", "mean difference", "95% interval"]
        if margin:
            header += ["90% interval", "δ", "verdict"]
        rows = []
        for p in s["paired"]:
            row = [p["group"], p["metric"], str(p["n"]), fmt(p["mean"], "+.4g"), _signed(*(p["ci95"] or (None, None)))]
            if margin:
                row += [_signed(*(p["ci90"] or (None, None))), fmt(p["delta"], ".3g"), p["verdict"] or "—"]
            rows.append(row)
        rule = (" Verdict: ties when the 90% interval lies inside ±δ (two one-sided tests, read first); better or "
                "worse when the 95% interval excludes 0; else undecided." if margin else "")
        tables.append(Table(header, rows, f"each group − the best group ({s['best_group']}), at their best {name}, "
                                          f"paired by seed.{rule}"))
    text = [f"{name} bracketed per group on a lattice {spec.bracket.step_decades:g} decades apart: "
            f"{sum(g['bracketed'] for g in s['groups'])} of {len(s['groups'])} groups bracketed"
            + ("" if s["settled"] else "; the sweep is not finished (rerun it to go on)") + "."]
    return [Section(f"The optimum of {name} per group", text, tables, data=s)]

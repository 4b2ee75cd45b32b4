"""`loralpha report PATH`: a run directory, a sweep store, a calibration, a compare folder or a demo directory as
report.html (self-contained: plots embedded as data URIs, readable offline), report.md (the same tables,
for a terminal or a pull request) and the PNG plots beside them.

A report is a list of sections (`document`); each has paragraphs stating what was measured, tables
that say what was run, figures with labelled axes, and the command that reproduces it. A single run,
a sweep store, a calibration and a compare folder are rendered by `sections`, the demo by `demo`, and `render`
writes both formats.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..studies.demo import MANIFEST, STORE
from ..studies.records import STORE_SUFFIXES
from .demo_report import demo_report
from .document import Figure, Report, Section, Table, fmt
from .render import markdown, to_html, write
from .sections import calibration_report, compare_report, compare_runs, run_report, store_report, train_command

CALIBRATION = "calibrate.json"  # what `loralpha calibrate` writes


def build(path: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """The report of a demo directory, a run directory, a sweep store (.db), a calibration (calibrate.json, or
    the directory `loralpha calibrate` wrote it into) or a compare folder (OUT of `loralpha compare`); writes
    report.html, report.md and the PNGs into `out`
    (default: the directory itself, or the store's or calibration's directory)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a run directory, a sweep store (.db) or a demo directory")
    if path.is_dir() and (path / MANIFEST).exists():
        kind = "demo"
    elif path.is_dir() and (path / "config.json").exists():
        kind = "run"
    elif path.is_file() and path.suffix.lower() in STORE_SUFFIXES:
        kind = "store"
    elif path.is_file() and path.name == CALIBRATION or path.is_dir() and (path / CALIBRATION).exists():
        path, kind = (path if path.is_file() else path / CALIBRATION), "calibration"
    elif path.is_dir() and len(stores := sorted(path.glob("*.db"))) == 1 and stores[0].name != STORE:
        path, kind = stores[0], "store"
    elif compare_runs(path):
        kind = "compare"
    else:
        raise UsageError(f"{path} is not a run directory (config.json), a sweep store (.db), a calibration "
                         f"({CALIBRATION}), a compare folder (RULE/config.json) or a demo directory ({MANIFEST}); "
                         "give one of those")
    target = Path(out) if out is not None else (path.parent if kind in ("store", "calibration") else path)
    target.mkdir(parents=True, exist_ok=True)
    if kind == "demo":
        report = demo_report(path, target)
    elif kind == "run":
        report = run_report(path, target)
    elif kind == "calibration":
        report = calibration_report(path, target)
    elif kind == "compare":
        report = compare_report(path, target)
    else:
        report = store_report(path, target)
    report.subtitle += f" · report built {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    return {"kind": kind, **write(report, target)}


__all__ = ["Figure", "Report", "Section", "Table", "build", "fmt", "markdown", "to_html", "train_command", "write"]

"""The document model of a report: sections of paragraphs, tables, figures and the commands that
reproduce them; rendered by `loralpha.reporting.render`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path  # a PNG beside the report
    caption: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs; `code` spans allowed
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # what reproduces the section
    data: dict[str, Any] = field(default_factory=dict)  # the values its text quotes, for other documents


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]
    data: dict[str, Any] = field(default_factory=dict)  # what was run, where, and how long it took


def as_data(report: Report) -> dict[str, Any]:
    """The report as plain data (report.json): every table's cells and each section's quoted values, so
    README and docs can render their figures from a stored result instead of copying them."""
    return {"title": report.title, "subtitle": report.subtitle, "data": report.data,
            "sections": [{"title": s.title, "text": s.text, "commands": s.commands, "data": s.data,
                          "tables": [{"header": t.header, "rows": t.rows, "caption": t.caption} for t in s.tables],
                          "figures": [{"file": f.path.name, "caption": f.caption} for f in s.figures]}
                         for s in report.sections]}


def fmt(value: Any, spec: str = ".4g", none: str = "—") -> str:
    """A number for a table: `none` for missing or non-finite values (no NaN ever shown)."""
    if value is None:
        return none
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec) if math.isfinite(value) else none
    return str(value)


def fmt_lr(value: float) -> str:
    """A learning rate as people write it: 1e-3, 5e-5, 6.3e-4."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"

"""Value checks shared by every layer: each raises `UsageError` naming the value as the caller
knows it (`what`), with what was wrong and what would be right."""

from __future__ import annotations

import math
from typing import Any

from .errors import UsageError


def positive_int(value: Any, what: str, example: str = "") -> int:
    """`value` as an int ≥ 1 (an integral float is accepted; a bool or a string is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise UsageError(f"{what} must be a positive integer{f' ({example})' if example else ''}, got {value!r}")
    return int(value)


def positive(value: Any, what: str) -> float:
    """`value` as a finite float > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a positive finite number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise UsageError(f"{what} must be a positive finite number, got {value!r}")
    return v


def finite_float(value: Any) -> float | None:
    """`value` as a finite float, or None for NaN, ±inf, a bool or anything that is not a number
    (so JSON and SQLite never hold NaN)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None

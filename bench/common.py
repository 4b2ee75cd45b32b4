"""Shared by the bench scripts: machine facts and result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, object]:
    import torch

    from loralpha.runs import versions

    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": platform.processor() or
            platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), **versions()}


def save(name: str, payload: dict[str, object], quick: bool) -> Path:
    """Write results/NAME.json (or results/quick/NAME.json for a smoke run)."""
    folder = RESULTS / "quick" if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=float) + "\n")
    return path


def median(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and v == v and abs(v) != float("inf")]
    return statistics.median(finite) if finite else None

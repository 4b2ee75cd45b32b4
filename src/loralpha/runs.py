"""The run directory: everything a run leaves behind, in plain files.

    config.json    everything needed to rerun: the config, α, γ, task facts, versions
    metrics.jsonl  one JSON object per logged step: step, loss, lr, and eval metrics when measured
    summary.json   status, final loss, final eval metrics, steps, wall time
    adapter/       the trained PEFT adapter (or full_weights.safetensors for rule `full`)
"""

from __future__ import annotations

import json
import math
import platform
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .errors import UsageError


def prepare(path: str | Path, overwrite: bool = False) -> Path:
    """Create an empty run directory; an existing non-empty one is kept unless `overwrite`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"output {path} is a file; give a directory for --out")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise UsageError(f"output directory {path} already exists and is not empty; "
                             "pass --overwrite to replace it or choose another --out")
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to output directory {path}: {e.strerror or e}") from None
    return path


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("loralpha", "torch", "transformers", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def clean(value: Any) -> Any:
    """JSON-safe copy: a non-finite float becomes None, so no NaN is ever written as a number."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(clean(obj), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)  # never leave a half-written file behind


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    with open(Path(run_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]

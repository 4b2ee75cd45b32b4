"""The run directory: everything a run leaves behind, in plain files.

    config.json    everything needed to rerun: the config, α, γ, task facts, versions
    metrics.jsonl  one JSON object per logged step: step, loss, lr, and eval metrics when measured
    summary.json   status, final loss, final eval metrics, steps, wall time
    adapter/       the trained PEFT adapter (or full_weights.safetensors for rule `full`)
    checkpoint.pt  with checkpoints on: trainable weights, optimizer, schedule, step, losses and
                   RNG state of the last checkpoint (plain tensors and numbers: it loads with
                   torch.load(weights_only=True), so a tampered file cannot run code)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .checks import finite_float
from .errors import UsageError


def prepare(path: str | Path, overwrite: bool = False) -> Path:
    """Create an empty run directory; an existing non-empty one is kept unless `overwrite`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"output {path} is a file; give a directory for out=")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise UsageError(f"output directory {path} already exists and is not empty; pass overwrite=True "
                             "to replace it, resume=True to continue its run, or choose another out=")
        shutil.rmtree(path)
    ensure_writable(path)
    return path


def ensure_writable(path: Path) -> None:
    """Create the directory `path` (with parents) and check that a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to output directory {path}: {e.strerror or e}") from None


def check_space(path: Path, needed: int, what: str) -> None:
    """Refuse to start a run that cannot be saved: `needed` bytes must be free where `path` is."""
    free = shutil.disk_usage(path).free
    if free < needed:
        raise UsageError(f"only {free / 2**20:.1f} MiB free in {path}, and this run writes about "
                         f"{needed / 2**20:.1f} MiB ({what}); free some space or choose another out=")


def resumable(path: Path, expected: dict[str, Any]) -> bool:
    """Whether run directory `path` holds a run to continue: False when there is nothing there yet.

    A run whose config.json differs from `expected` on any key of `expected`, or that already
    finished (done or diverged), is a UsageError."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"output {path} is a file; give a directory for out=")
    try:
        recorded = read_json(path / "config.json")
    except FileNotFoundError:
        if path.exists() and any(path.iterdir()):
            raise UsageError(f"cannot resume {path}: it has no config.json, so it is not a loralpha run; "
                             "choose another out=") from None
        return False
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"cannot resume {path}: its config.json is unreadable ({e}); "
                         "pass overwrite=True to start again") from None
    difference = _difference(recorded, clean(json.loads(json.dumps(clean(expected)))))
    if difference:
        raise UsageError(f"cannot resume {path}: it was trained with {difference}; rerun with its options "
                         "or choose another out=")
    try:
        status = read_json(path / "summary.json").get("status")
    except (OSError, json.JSONDecodeError):
        status = None
    if status in ("done", "diverged"):
        raise UsageError(f"run {path} already finished ({status}); nothing to resume "
                         "(pass overwrite=True to train it again)")
    return True


def _difference(recorded: Any, expected: Any, key: str = "") -> str | None:
    """The first value of `expected` that `recorded` does not have, as 'key=recorded, not expected'."""
    if isinstance(expected, dict) and isinstance(recorded, dict):
        for k, v in expected.items():
            if k == "versions":
                continue
            found = _difference(recorded.get(k), v, k if key in ("", "config") else f"{key}.{k}")
            if found:
                return found
        return None
    return None if recorded == expected else f"{key}={recorded!r}, not {expected!r}"


def machine() -> dict[str, Any]:
    """When and where a result was measured: date, cores, processor, system, the 1-, 5- and 15-minute
    load average (other jobs slow a timing down) and package versions."""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "system": platform.system(),
            "load_average": [round(v, 2) for v in os.getloadavg()], **versions()}


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
    if isinstance(value, float):
        return finite_float(value)
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


def baseline(run_dir: str | Path) -> dict[str, Any] | None:
    """What the run's headline held-out metric is measured against: the majority-class accuracy of the held-out
    split (classifiers), else the metric of the untouched model (the evaluation at step 0). None when the run
    records neither. {"metric", "name", "value", "higher_is_better"}."""
    config = read_json(Path(run_dir) / "config.json")
    metric, higher = config.get("metric"), bool(config.get("higher_is_better"))
    majority = (config.get("task_info") or {}).get("eval_majority_accuracy")
    if metric == "accuracy" and majority is not None:
        return {"metric": metric, "name": "majority class", "value": float(majority), "higher_is_better": True}
    try:
        first = next((r for r in read_metrics(run_dir) if r.get("step") == 0), {})
    except OSError:
        first = {}
    if metric and first.get(metric) is not None:
        return {"metric": metric, "name": "untouched model (step 0)", "value": float(first[metric]),
                "higher_is_better": higher}
    return None


def prior_baseline(run_dir: str | Path) -> dict[str, Any] | None:
    """A classifier's loss baseline: the held-out eval_loss of predicting the training class frequencies (the task
    info's `eval_prior_loss`); a run whose eval_loss is not below it learned nothing beyond the class prior. None
    for other tasks. {"metric", "name", "value", "higher_is_better"}, as `baseline`."""
    value = (read_json(Path(run_dir) / "config.json").get("task_info") or {}).get("eval_prior_loss")
    if value is None:
        return None
    return {"metric": "eval_loss", "name": "class prior", "value": float(value), "higher_is_better": False}


def at_baseline(value: float | None, reference: dict[str, Any]) -> bool:
    """Whether a final `value` is no better than the baseline (within 1e-9): the run learned nothing the
    baseline does not already score."""
    if value is None:
        return False
    gain = value - reference["value"] if reference["higher_is_better"] else reference["value"] - value
    return gain <= 1e-9


TEST = "test:"  # the prefix of a test-split metric wherever it stands beside the validation ones (a sweep store)


def test_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """A summary's test metrics as `test:<name>`, to stand beside its validation metrics without being read as
    them: a choice reads `eval_loss`, a reported figure `test:eval_loss`."""
    return {f"{TEST}{k}": v for k, v in (summary.get("test") or {}).items()}


def duration(seconds: float) -> str:
    """A time in words: 40 s, 3 min 20 s, 2 h 05 min."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"

"""Several rules on one task at the same budget, each in its own run directory.

`compare` trains one `TrainConfig` per name into OUT/NAME and returns the
summaries. A run whose directory already holds a finished summary for the very
same config is reused, not retrained, so an interrupted comparison picks up
where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import runs
from ..loop import TrainConfig, train


def _finished(run_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    try:
        recorded = runs.read_json(run_dir / "config.json")["config"]
        summary = runs.read_json(run_dir / "summary.json")
    except (OSError, KeyError, json.JSONDecodeError):
        return None
    same = recorded == runs.clean(json.loads(json.dumps(runs.clean(asdict(config)))))
    return summary if same and summary.get("status") in ("done", "diverged") else None


def compare(configs: dict[str, TrainConfig], out: str | Path, progress: bool = False,
            on_start=None) -> dict[str, dict[str, Any]]:
    """Train each config into OUT/NAME (reusing finished identical runs); name -> summary."""
    for config in configs.values():
        config.check()  # every config is valid before the first one trains
    out = Path(out)
    results: dict[str, dict[str, Any]] = {}
    for name, config in configs.items():
        run_dir = out / name
        summary = _finished(run_dir, config)
        if on_start:
            on_start(name, reused=summary is not None)
        if summary is None:
            summary = train(config, out=run_dir, overwrite=True, progress=progress).summary()
            if summary["status"] == "interrupted":  # Ctrl-C stops the comparison, not just this rule's run
                raise KeyboardInterrupt
        summary["config"] = runs.read_json(run_dir / "config.json")
        results[name] = summary
    return results

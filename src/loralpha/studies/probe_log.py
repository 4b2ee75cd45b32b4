"""What a calibration keeps and says as its probes land: how far it is and the time left (`Clock`,
`progress_line`), and its directory (`loralpha calibrate --out DIR`, checked before the first probe trains):

    probes.jsonl     the calibration's inputs (first line), then one line per finished probe as it lands
    calibrate.json   the answer, written once every probe is in
    calibrate.png    the probes and the point on the Adam plane

A directory holding probes.jsonl without calibrate.json is an interrupted calibration: the same inputs resume it
(its probes are not trained again); other inputs are refused. A finished calibration, or a directory holding
anything else, is refused. `overwrite` starts again in any of them, replacing the directory when the first new
probe lands (so a refused argument or an early Ctrl-C leaves it as it was).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .. import runs
from ..errors import UsageError
from ..runs import duration  # noqa: F401  (part of this module's API: the probes' time left)

PROBES = "probes.jsonl"
RESULT = "calibrate.json"


def _key(p: dict[str, Any]) -> tuple:
    return p["stage"], f"{p['x']:.6g}", f"{p['y']:.6g}", p["steps"], p["seed"]


def _read(log: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(inputs, probes) of a probe log; a line cut short by a killed process is dropped (its probe trains again)."""
    inputs, probes = None, []
    for n, line in enumerate(log.read_text().splitlines()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if n == 0 and isinstance(row, dict) and "inputs" in row:
            inputs = row["inputs"]
        elif isinstance(row, dict) and "stage" in row:
            probes.append(row)
    return inputs, probes


def _writable(path: Path) -> None:
    """Refuse a directory that cannot be made or written, before any probe trains."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to output directory {path}: {existing} is not a writable directory; "
                         "choose another out=")


class ProbeLog:
    """out/probes.jsonl of one calibration: `known(key)` gives `calibrate` a probe that an interrupted calibration
    with the same inputs finished (None: train it), `landed(probe)` appends a finished one; `resumed` counts the
    probes found. Made by `open_dir`, which checks `out` first."""

    def __init__(self, out: Path, inputs: dict[str, Any], seen: dict[tuple, dict[str, Any]], replace: bool):
        self.out, self.inputs, self.seen, self.replace = out, inputs, seen, replace
        self.log = out / PROBES
        self.started = self.log.is_file() and not replace  # the inputs line is there

    @property
    def resumed(self) -> int:
        return len(self.seen)

    def known(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.seen.get(_key(key))

    def landed(self, probe: dict[str, Any]) -> None:
        try:
            if self.replace:  # only now: a refused argument or Ctrl-C before the first probe keeps the old one
                shutil.rmtree(self.out)
                self.replace = False
            self.out.mkdir(parents=True, exist_ok=True)
            with self.log.open("a") as f:
                if not self.started:
                    f.write(json.dumps({"inputs": self.inputs}) + "\n")
                    self.started = True
                f.write(json.dumps(runs.clean(probe)) + "\n")
        except OSError as e:
            raise UsageError(f"cannot write {self.log}: {e.strerror or e}; free some space or choose another "
                             "out=") from None


def open_dir(out: str | Path, inputs: dict[str, Any], overwrite: bool = False) -> ProbeLog:
    """The probe log of a calibration into `out` with `inputs` (JSON-able: the task, the config, the budget, the
    lattice, the seeds): it resumes an interrupted calibration run with the same inputs. Raises `UsageError` when
    `out` is a file or cannot be written, or holds a finished calibration, another calibration's probes or
    anything else, unless `overwrite` (then it is replaced when the first probe lands)."""
    out = Path(out)
    inputs = json.loads(json.dumps(runs.clean(inputs)))
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} is a file; give a directory for out=")
    _writable(out)
    log = out / PROBES
    if not out.exists() or not any(out.iterdir()):
        return ProbeLog(out, inputs, {}, replace=False)
    if overwrite:  # replace whatever is there, an interrupted calibration with these inputs too: start again
        return ProbeLog(out, inputs, {}, replace=True)
    if (out / RESULT).exists() or not log.is_file():
        what = "a finished calibration (calibrate.json)" if (out / RESULT).exists() else "files of its own"
        raise UsageError(f"output directory {out} already holds {what}; pass overwrite=True to replace it, "
                         "or choose another out=")
    recorded, probes = _read(log)
    if recorded != inputs:
        recorded = recorded or {}
        differ = next((k for k in inputs if recorded.get(k) != inputs[k]), None)
        said = f"{differ}={recorded.get(differ)!r}, not {inputs[differ]!r}" if differ else "other inputs"
        raise UsageError(f"output directory {out} holds the probes of another calibration (started with {said}); "
                         "rerun with its options to resume it, pass overwrite=True to start again, or choose "
                         "another out=")
    return ProbeLog(out, inputs, {_key(p): p for p in probes}, replace=False)


class Clock:
    """Where a calibration stands after each probe: probes done of all, probe steps done of all planned (a diverged
    probe counts its planned steps: it is done), and the time left, estimated from the seconds per probe step of
    the probes trained so far (model building included; probes found in an earlier calibration cost nothing)."""

    def __init__(self, probes: int, steps: int):
        self.probes, self.steps = probes, steps
        self.done = self.steps_done = self.trained_steps = 0
        self.seconds = 0.0

    def tick(self, probe: dict[str, Any], seconds: float | None) -> dict[str, Any]:
        """Count a finished `probe` (`seconds`: what training it took; None: it was known) and say the state."""
        self.done += 1
        self.steps_done += probe["steps"]
        if seconds is not None:
            self.trained_steps += probe["steps"]
            self.seconds += seconds
        rate = self.seconds / self.trained_steps if self.trained_steps else None
        return {"probe": probe, "done": self.done, "of": self.probes, "steps_done": self.steps_done,
                "steps_of": self.steps, "resumed": seconds is None,
                "left_s": None if rate is None else rate * max(self.steps - self.steps_done, 0)}


def progress_line(state: dict[str, Any]) -> str:
    """One probe as it lands, with the count and the time left:
    `map   η_A = 0.001  γ·η_B = 0.01  10 steps: 0.5213   [probe 3/25, 30/460 steps, ~1 min 10 s left]`."""
    p = state["probe"]
    score = "diverged" if p["score"] is None else f"{p['score']:.4g}"
    left = "" if state["left_s"] is None or state["done"] == state["of"] else f", ~{duration(state['left_s'])} left"
    return (f"{p['stage']:5s} η_A = {p['x']:.3g}  γ·η_B = {p['y']:.3g}  {p['steps']} steps: {score}"
            f"{' (resumed)' if state['resumed'] else ''}   [probe {state['done']}/{state['of']}, "
            f"{state['steps_done']}/{state['steps_of']} steps{left}]")

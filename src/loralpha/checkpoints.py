"""Checkpoints of a run: trainable weights, optimizer and schedule state, losses and RNG state in
one file, written atomically and read back with `weights_only=True` (plain tensors and numbers
only, so a file that holds code is refused, never run)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UsageError

CHECKPOINT = "checkpoint.pt"
FORMAT = "loralpha-checkpoint-1"


def save(path: Path, step: int, named: list[tuple[str, nn.Parameter]], opt: torch.optim.Optimizer,
         sched: Any, losses: list[float], metrics: dict[str, float], device: torch.device | None = None) -> None:
    """Everything a resumed run needs, in plain tensors and numbers, written atomically; the tensors of a run
    on a GPU are saved from there and `load` maps them to the CPU, then into the parameters' device. On a
    CUDA `device` its RNG state is kept too."""
    payload = {"format": FORMAT, "step": step,
               "params": {n: p.detach().cpu().clone() for n, p in named},
               "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "losses": list(losses), "metrics": dict(metrics), "rng": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        payload["cuda_rng"] = torch.cuda.get_rng_state(device)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write the checkpoint {path}: {e.strerror or e}; free some space and rerun "
                         "with resume=True") from None


def load(path: Path, named: list[tuple[str, nn.Parameter]], opt: torch.optim.Optimizer,
         sched: Any) -> dict[str, Any] | None:
    """A checkpoint's state, loaded into `named`, `opt` and `sched` (None when there is none). Only plain tensors and
    numbers are read (weights_only=True): a file that holds code or objects is refused."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — pickle, zip and torch all raise their own kinds
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"checkpoint {path} cannot be read safely ({first[:200]}); delete it to restart the run "
                         "from step 0") from None
    params = payload.get("params") if isinstance(payload, dict) else None
    mismatch = UsageError(f"checkpoint {path} is not a checkpoint of this run's model; delete it to restart the run "
                          "from step 0")
    if not isinstance(params, dict) or payload.get("format") != FORMAT or \
            {n: tuple(t.shape) for n, t in params.items()} != {n: tuple(p.shape) for n, p in named}:
        raise mismatch
    try:
        opt.load_state_dict(payload["optimizer"])
        sched.load_state_dict(payload["scheduler"])
    except (KeyError, ValueError, TypeError):
        raise mismatch from None
    with torch.no_grad():
        for n, p in named:
            p.copy_(params[n])
    return payload


def truncate_rows(path: Path, step: int) -> None:
    """Keep the JSON-lines rows of `path` up to `step` (a resumed run writes the later ones again)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines(keepends=True)
            if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(rows))
    tmp.replace(path)

"""Trial records of a sweep: loading them (a store, JSON or JSONL) and reading what the laws
need from each — its effective α (the `lora_alpha` written to PEFT), its effective η, a metric,
and which way that metric is better."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import runs, scaling, tasks
from ..errors import UsageError
from ..sweep.store import Store

LOWER_IS_BETTER = ("final_loss", "eval_loss", "rel_mse", "loss", "perplexity")
HIGHER_IS_BETTER = ("accuracy", "macro_f1", "f1", "zero_shot_accuracy", "recall_at_1")
STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Trial records from a sweep store (.db, read with `loralpha.sweep.store.Store`), a JSONL
    file (one record per line) or a JSON file (a list of records, or {"records": [...]})."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"store {path} does not exist")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a sweep store (.db) or a .json/.jsonl file of records")
    suffix = path.suffix.lower()
    if suffix in STORE_SUFFIXES:
        store = None
        try:
            store = Store(path)
            records = store.records()
        except UsageError:
            raise
        except Exception as e:  # sqlite3.DatabaseError and friends: a file that is no store
            raise UsageError(f"cannot read sweep store {path}: {e}") from None
        finally:
            if callable(getattr(store, "close", None)):
                store.close()
    elif suffix == ".jsonl":
        records = []
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    raise UsageError(f"{path} line {i} is not JSON") from None
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UsageError(f"{path} is not JSON ({e.msg} at line {e.lineno})") from None
        records = data.get("records") if isinstance(data, dict) else data
    else:
        raise UsageError(f"{path}: give a sweep store (.db) or a .json/.jsonl file of records, "
                         f"not {suffix or 'no suffix'}")
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("config"), dict)
                                                for r in records):
        raise UsageError(f"{path} does not hold trial records (dicts with a 'config' dict and a 'status')")
    return records


def is_higher_better(metric: str, given: bool | None = None) -> bool:
    """Whether a larger `metric` is better: `given` if set, else known from the metric's name."""
    if given is not None:
        return bool(given)
    metric = metric.removeprefix(runs.TEST)  # test:accuracy is read as accuracy is
    if metric in LOWER_IS_BETTER:
        return False
    if metric in HIGHER_IS_BETTER:
        return True
    raise UsageError(f"cannot tell whether a higher {metric} is better; pass higher_is_better=True or "
                     "higher_is_better=False")


def effective_lr(config: dict[str, Any]) -> float:
    """η a record trained with: its `lr`, or its rule's default (`scaling.default_lr`)."""
    if config.get("lr") is not None:
        return float(config["lr"])
    task = config.get("task", "teacher-student")
    if task not in tasks.TASKS:
        raise UsageError(f"unknown task {task!r} in a record; cannot tell its default learning rate")
    return scaling.default_lr(config.get("rule", "lora-alpha"), tasks.TASKS[task].full_ft_lr)


def effective_alpha(config: dict[str, Any]) -> float | None:
    """The `lora_alpha` written to PEFT for a record (None under rule `full`)."""
    rule = config.get("rule", "lora-alpha")
    if scaling.trains_full_weights(rule):
        return None
    if "rank" not in config:
        raise UsageError("a record's config has no rank")
    return scaling.lora_alpha(rule, config["rank"], config.get("coef", scaling.PAPER_COEF),
                              config.get("alpha", scaling.DEFAULT_ALPHA))


def config_value(config: dict[str, Any], name: str) -> Any:
    """A record config's value of `name`; "alpha" and "lr" are the effective α and η."""
    if name == "alpha":
        return effective_alpha(config)
    if name == "lr":
        return effective_lr(config)
    if name not in config:
        raise UsageError(f"records have no config field {name!r}")
    return config[name]


def metric_value(record: dict[str, Any], metric: str) -> float | None:
    """`final_loss`, or a held-out metric from the record's eval (None when missing)."""
    if metric == "final_loss":
        value = record.get("final_loss")
    else:
        ev = record.get("eval") or {}
        if isinstance(ev, str):
            ev = json.loads(ev)
        value = ev.get(metric)
    return None if value is None else float(value)

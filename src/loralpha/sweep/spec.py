"""A sweep spec: one YAML file that expands into trials (`TrainConfig`s with stable ids).

    study: alpha-vs-rank          # optional; names the study directory (default: the file's stem)
    task: teacher-student
    metric: rel_mse               # what the laws optimise: final_loss (default) or an eval metric
    fixed: {steps: 150, rule: fixed, lr: 5e-5, task_options: {width: 64}}
    grid:
      rank: [4, 8, 16, 32]
      alpha: {log: [4, 16384], num: 9}   # geometric, both ends included
      seed: [0, 1]

A spec may also bracket one log axis (`bracket:`, see `loralpha.sweep.bracket`): its trials are then
planned round by round from the store (`loralpha.studies.bracket`), not expanded at once.

Expansion is the Cartesian product of the grid (the last key varies fastest) on
top of `fixed`. The keys a spec may set are the fields of `TrainConfig` (or of the
config class given to `parse`), so a new field is a new key with no other edit.

A trial's id is the first 16 hex digits of sha256 of the config's canonical JSON
(sorted keys; values normalised to their field's type, so `lr: 1e-4`, which YAML
reads as a string, and `lr: 0.0001` give one id; floats to 12 significant
digits). The JSON holds every field of id version 1 (`ID_V1_FIELDS`, the 23 fields
of the first release) and, of any field added since, only those that differ from
their default: adding a field with a default keeps every stored id. Nothing in a
spec is a path to write to: run directories are named by trial id.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..config import TrainConfig
from ..errors import UsageError
from ..options import default_of
from .bracket import Bracket, parse_bracket

TOP_KEYS = ("study", "task", "metric", "fixed", "grid", "bracket")
DEFAULT_METRIC = "final_loss"
MAX_TRIALS = 100_000
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Trial:
    id: str  # trial_id(config)
    config: TrainConfig
    metric: str = DEFAULT_METRIC  # the study's metric, stored with the trial


@dataclass
class Spec:
    task: str
    fixed: dict[str, Any]
    grid: dict[str, list[Any]]  # field -> values, log grids already expanded
    study: str | None = None
    metric: str = DEFAULT_METRIC
    source: Path | None = field(default=None, compare=False)
    config_cls: type = field(default=TrainConfig, compare=False, repr=False)  # what a trial is
    bracket: Bracket | None = None  # a bracketed axis: trials planned round by round from the store

    @property
    def name(self) -> str:
        """The study's name: `study`, else the spec file's stem, else "study"."""
        return self.study or (self.source.stem if self.source else "study")

    def trials(self) -> list[Trial]:
        return expand(self)

    def data(self) -> dict[str, Any]:
        """The spec as `parse` reads it (the store's meta keeps it, so a report can replan a bracketed sweep)."""
        out = {"task": self.task, "fixed": self.fixed, "grid": self.grid, "metric": self.metric}
        if self.bracket is not None:
            out["bracket"] = self.bracket.data()
        return out


def _canon(value: Any) -> Any:
    """Floats rounded to 12 significant digits (so 1e-4 and 0.0001, or a log grid's 1.0000000000000002e-05,
    hash alike); containers recursively."""
    if isinstance(value, float):
        return float(f"{value:.12g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value


# The fields of TrainConfig when trial ids were first issued: always part of an id. A field added
# later joins the id only when its value differs from its default, so stored ids survive the addition.
ID_V1_FIELDS = frozenset({
    "task", "rule", "rank", "coef", "alpha", "lr", "head_lr", "steps", "batch_size", "seed", "targets",
    "rank_pattern", "init", "dora", "loraplus_ratio", "weight_decay", "schedule", "warmup", "grad_clip",
    "eval_every", "diverge_ratio", "track_every", "task_options"})


def identity(config: Any) -> dict[str, Any]:
    """What a trial's id hashes: the id-v1 fields, and the later fields that differ from their default."""
    values = {}
    hints = _hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name not in ID_V1_FIELDS and value == default_of(f):
            continue
        kinds = set(typing.get_args(hints[f.name])) - {type(None)} or {hints[f.name]}
        if kinds == {float} and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # an int in a float field (coef=256) hashes as the float it means
        values[f.name] = value
    return _canon(values)


def trial_id(config: Any) -> str:
    """First 16 hex digits of sha256 of the canonical JSON of `identity(config)`."""
    text = json.dumps(identity(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    """`value` as field `key`'s type (ints for int fields, floats for float fields, '1e-4' -> 1e-4)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else hint
    base = typing.get_origin(hint) or hint
    bad = UsageError(f"{where}{key}: expected {_describe(hint)}{' or null' if optional else ''}, got {value!r}")
    if base is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if base is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if base is str:
        if not isinstance(value, str):
            raise bad
        return value
    if base is list:
        if not isinstance(value, list):
            raise bad
        return list(value)
    if base is dict:
        if not isinstance(value, dict):
            raise bad
        return {str(k): v for k, v in value.items()}
    return value


def _describe(hint: Any) -> str:
    base = typing.get_origin(hint) or hint
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string", list: "a list",
            dict: "a mapping"}.get(base, str(hint))


def _log_grid(key: str, value: dict[str, Any], hint: Any, where: str) -> list[Any]:
    """{log: [lo, hi], num: N}: N geometric points from lo to hi, both included."""
    extra = set(value) - {"log", "num"}
    if extra or "log" not in value or "num" not in value:
        raise UsageError(f"{where}{key}: a log grid is {{log: [lo, hi], num: N}}"
                         + (f"; unknown key {sorted(extra)[0]!r}" if extra else ""))
    ends, num = value["log"], value["num"]
    try:
        lo, hi = (float(v) for v in ends) if isinstance(ends, list) and len(ends) == 2 else (None, None)
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi) and lo > 0 and hi > 0):
        raise UsageError(f"{where}{key}: log needs two positive finite numbers [lo, hi], got {ends!r}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1 or num > MAX_TRIALS:
        raise UsageError(f"{where}{key}: num must be an integer from 1 to {MAX_TRIALS}, got {num!r}")
    if num == 1:
        if lo != hi:
            raise UsageError(f"{where}{key}: num 1 needs lo == hi, got [{lo:g}, {hi:g}]")
        points = [lo]
    else:
        points = [lo * (hi / lo) ** (i / (num - 1)) for i in range(num)]
        points[0], points[-1] = lo, hi
    kinds = set(typing.get_args(hint)) - {type(None)} or {hint}
    if kinds == {int}:
        return [int(round(p)) for p in points]
    if kinds != {float}:
        raise UsageError(f"{where}{key}: a log grid needs a numeric field; give a list of values")
    return [float(f"{p:.12g}") for p in points]


def parse(data: Any, source: str | Path | None = None, config_cls: type = TrainConfig) -> Spec:
    """Check a spec given as plain data (what yaml.safe_load returns) and normalise its values; its keys
    are the fields of `config_cls`."""
    src = Path(source) if source is not None else None
    where = f"spec {src}: " if src else "spec: "
    if not isinstance(data, dict):
        raise UsageError(f"{where}expected a mapping with keys {', '.join(TOP_KEYS)}, got {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS:
            raise UsageError(f"{where}unknown key {key!r}; a spec has: {', '.join(TOP_KEYS)}")
    study = data.get("study")
    if study is not None:
        study = str(study)
        if not _STUDY_NAME.fullmatch(study) or ".." in study:
            raise UsageError(f"{where}study {study!r} must be a plain name (letters, digits, '.', '_', '-'), "
                             "not a path")
    if "task" not in data:
        raise UsageError(f"{where}missing key 'task' (e.g. task: teacher-student)")
    task = data["task"]
    if not isinstance(task, str):
        raise UsageError(f"{where}task must be a string, got {task!r}")
    metric = data.get("metric", DEFAULT_METRIC)
    if not isinstance(metric, str) or not metric:
        raise UsageError(f"{where}metric must be final_loss or the name of an eval metric, got {metric!r}")
    hints = _hints(config_cls)
    names = {f.name for f in fields(config_cls)}
    sections: dict[str, dict[str, Any]] = {}
    for section in ("fixed", "grid"):
        value = data.get(section)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise UsageError(f"{where}{section} must be a mapping of TrainConfig fields, got {value!r}")
        for key in value:
            if key == "task":
                raise UsageError(f"{where}{section}.task: give the task at the top level (task: ...)")
            if key not in names:
                raise UsageError(f"{where}unknown key {section}.{key}: not a {config_cls.__name__} field; "
                                 f"fields: {', '.join(sorted(names - {'task'}))}")
        sections[section] = value
    fixed = {k: _coerce(k, v, hints[k], f"{where}fixed.") for k, v in sections["fixed"].items()}
    if not sections["grid"] and data.get("bracket") is None:
        raise UsageError(f"{where}grid is empty; give at least one field with a list of values "
                         "(e.g. grid: {seed: [0, 1]})")
    grid: dict[str, list[Any]] = {}
    for key, value in sections["grid"].items():
        w = f"{where}grid."
        if key in fixed:
            raise UsageError(f"{w}{key}: {key} is also in fixed; give it in one of them")
        if isinstance(value, dict) and "log" in value:
            values = _log_grid(key, value, hints[key], w)
        elif isinstance(value, list):
            if not value:
                raise UsageError(f"{w}{key} is an empty list; give at least one value")
            values = [_coerce(key, v, hints[key], w) for v in value]
        else:
            raise UsageError(f"{w}{key}: expected a list of values or {{log: [lo, hi], num: N}}, got {value!r}")
        seen: set[str] = set()
        for v in values:
            text = json.dumps(_canon(v), sort_keys=True)
            if text in seen:
                raise UsageError(f"{w}{key} gives the value {v!r} twice")
            seen.add(text)
        grid[key] = values
    total = math.prod(len(v) for v in grid.values())
    if total > MAX_TRIALS:
        raise UsageError(f"{where}the grid has {total} points; at most {MAX_TRIALS} in one spec")
    bracket = None
    if data.get("bracket") is not None:
        kinds = {name: set(typing.get_args(hint)) - {type(None)} or {hint} for name, hint in hints.items()
                 if name in names}
        bracket = parse_bracket(data["bracket"], grid, fixed, kinds, where)
        metric = data.get("metric", bracket.choose)  # the store's metric: what chooses
    return Spec(task=task, fixed=fixed, grid=grid, study=study, metric=metric, source=src, config_cls=config_cls,
                bracket=bracket)


def load(path: str | Path, config_cls: type = TrainConfig) -> Spec:
    """Read and check a YAML spec file (its keys: the fields of `config_cls`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"spec file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"spec {path} is a directory; give a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read spec {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = yaml.safe_load(text)  # plain values only: a tag that would build an object is an error
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise UsageError(f"spec {path}{at}: {e.problem}; a spec holds plain values only "
                         "(numbers, strings, lists, mappings)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise UsageError(f"malformed YAML in {path}{at}: {problem}") from None
    return parse(data, source=path, config_cls=config_cls)


def make_trial(spec: Spec, values: dict[str, Any], where: str) -> Trial:
    """The trial of `values` on top of the spec's fixed fields, its config checked (errors name `where`)."""
    config = spec.config_cls(task=spec.task, **_canon({**spec.fixed, **values}))
    try:
        config.check()
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:  # a value of the wrong shape that check() could not read
        raise UsageError(f"{where}: bad value: {e}") from None
    return Trial(trial_id(config), config, spec.metric)


def expand(spec: Spec) -> list[Trial]:
    """The grid's Cartesian product on top of `fixed`, each config checked; ids are unique."""
    where = f"spec {spec.source}: " if spec.source else "spec: "
    if spec.bracket is not None:
        raise UsageError(f"{where}it brackets {spec.bracket.axis}: its trials are planned round by round from the "
                         "store; run it with `loralpha sweep` or loralpha.studies.bracket.run")
    keys = list(spec.grid)
    trials: list[Trial] = []
    ids: dict[str, str] = {}
    for point in itertools.product(*(spec.grid[k] for k in keys)):
        values = dict(zip(keys, point))
        label = ", ".join(f"{k}={v!r}" for k, v in values.items())
        config = make_trial(spec, values, f"{where}trial {len(trials) + 1} ({label})").config
        tid = trial_id(config)
        if tid in ids:
            raise UsageError(f"{where}trials ({ids[tid]}) and ({label}) are the same config")
        ids[tid] = label
        trials.append(Trial(tid, config, spec.metric))
    return trials

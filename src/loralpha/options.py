"""A config field is declared once: its default, its one-line help and, when the command line writes it
differently from Python, how to read and write it as text.

    rank: int = option(8, "LoRA rank r")
    targets: list[str] | None = option(None, "modules to adapt, comma-separated", text=CSV)

The `loralpha` commands derive their options from these fields (`loralpha.cli.flags`), the run
record writes them (`dataclasses.asdict`), the sweep spec accepts them as keys, and the report turns
a recorded config back into the command that reruns it (`command_line`). `text` is a `Text`: the
option's flag (default: the field's name with dashes), how to parse the flag's string into the field's
value, and how to write the value back.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class Text:
    """How a field is written on the command line when not as its own type."""

    parse: Callable[[str | None], Any]  # the option's string (None when not given) -> the field's value
    show: Callable[[Any], str]  # the field's value -> the option's string
    flag: str | None = None  # e.g. "--track" for track_every; None: --field-name
    metavar: str = "TEXT"


def option(default: Any, help: str, *, text: Text | None = None) -> Any:
    """A dataclass field with its default and help. A mutable default (a dict or list) is copied for
    every instance."""
    metadata = {"help": help, "text": text}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def text_of(field: dataclasses.Field) -> Text | None:
    return field.metadata.get("text")


def flag_of(field: dataclasses.Field) -> str:
    text = text_of(field)
    return text.flag if text and text.flag else "--" + field.name.replace("_", "-")


def default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"field {field.name} has no default")


def command_line(command: str, cls: type, config: dict[str, Any], first: tuple[str, ...] = (),
                 always: tuple[str, ...] = ()) -> list[str]:
    """`command` and the options that give `config` (a dict of `cls`'s fields; other keys are ignored),
    leaving out defaults except for the fields in `always`; the fields in `first` come first, the
    rest in `config`'s order."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    names = [n for n in first if n in config] + [n for n in config if n not in first]
    parts = [command]
    for name in names:
        if name not in by_name:
            continue
        field, value = by_name[name], config[name]
        if value == default_of(field) and name not in always:
            continue
        text, flag = text_of(field), flag_of(field)
        if text is not None:
            shown = text.show(value)
            if shown:
                parts.append(f"{flag} {shown}")
        elif isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif value is not None:
            parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return parts


# ------------------------------------------------------------------ the texts of structured fields


def _items(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


CSV = Text(parse=lambda value: _items(value) or None, show=lambda value: ",".join(value or []), metavar="A,B,...")


def parse_rank_pattern(value: str | None) -> dict[str, int]:
    """NAME=RANK,... -> {NAME: RANK}."""
    pattern: dict[str, int] = {}
    for item in _items(value):
        key, sep, rank = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--rank-pattern takes NAME=RANK pairs separated by commas (e.g. query=4,value=16), "
                             f"got {item!r}")
        try:
            pattern[key] = int(rank)
        except ValueError:
            raise UsageError(f"rank in --rank-pattern {item!r} must be an integer") from None
    return pattern


RANK_PATTERN = Text(parse=parse_rank_pattern, show=lambda value: ",".join(f"{k}={v}" for k, v in value.items()),
                    metavar="NAME=RANK,...")


def parse_options(text: str | None) -> dict[str, Any]:
    """Task options from KEY=VALUE,... (the CLI's --task-options): true/false, ints, floats, else strings."""
    options: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise UsageError("--task-options takes KEY=VALUE pairs separated by commas (e.g. width=32,depth=2), "
                             f"got {item!r}")
        if value.lower() in ("true", "false"):
            options[key] = value.lower() == "true"
            continue
        for kind in (int, float):
            try:
                options[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key] = value
    return options


def show_options(options: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items() if v is not None)


TASK_OPTIONS = Text(parse=parse_options, show=show_options, metavar="KEY=VALUE,...")

DEFAULT_TRACK_EVERY = 10


def parse_track(value: str | None) -> int | None:
    """signal-drift[:K] -> K (default 10); None -> None (not tracked)."""
    if value is None:
        return None
    name, _, every = value.partition(":")
    if name != "signal-drift":
        raise UsageError(f"--track takes signal-drift or signal-drift:K, got {value!r}")
    try:
        return int(every) if every else DEFAULT_TRACK_EVERY
    except ValueError:
        raise UsageError(f"K in --track signal-drift:K must be a positive integer, got {every!r}") from None


TRACK = Text(parse=parse_track, show=lambda every: "" if every is None else f"signal-drift:{every}", flag="--track",
             metavar="signal-drift[:K]")

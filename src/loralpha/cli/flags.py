"""Command options derived from config dataclasses (as litgpt derives its CLI from dataclass fields).

    @app.command()
    @config_options("config", TrainConfig)
    def train(config: dict, out: Path = typer.Option(...)): ...

Each field of the class becomes one option: its flag (`--field-name`, or the one its `Text` names),
its default and its help come from the field (`loralpha.options.option`); a field written as text
on the command line (a list, a mapping, `--track signal-drift:K`) is parsed by its `Text`. The
command receives the parsed values as one dict, so a new field reaches every command that takes
its class with no other edit. `only`, `defaults` and `helps` narrow or adjust the options of one
command (`compare` trains 150 steps by default, say).
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Optional

import typer

from ..options import default_of, flag_of, help_of, text_of
from ..tasks.base import TaskFlags


def _option_type(hint: Any) -> Any:
    """The type typer sees for a field's hint: X | None becomes Optional[X]."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and len(args) == 1:
        return Optional[args[0]]
    return hint


def config_options(group: str, cls: type, only: tuple[str, ...] | None = None,
                   defaults: dict[str, Any] | None = None, helps: dict[str, str] | None = None) -> Callable:
    """Give the decorated command one option per field of `cls` (or of `only`); the command's parameter
    `group` receives them as a dict of parsed values. Decorators stack: each adds its options in front."""
    defaults, helps = defaults or {}, helps or {}
    hints = typing.get_type_hints(cls)
    chosen = [f for f in fields(cls) if only is None or f.name in only]

    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command)
        own_hints = typing.get_type_hints(command)
        parameters, annotations = [], {}
        for f in chosen:
            text = text_of(f)
            kind = Optional[str] if text else _option_type(hints[f.name])
            default = defaults.get(f.name, None if text else default_of(f))
            decls = [flag_of(f)] if text and text.flag else []
            info = typer.Option(default, *decls, help=helps.get(f.name, help_of(f)),
                                metavar=text.metavar if text else None)
            parameters.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=kind))
            annotations[f.name] = kind
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=own_hints.get(p.name, p.annotation))
                for p in own.parameters.values() if p.name != group]
        annotations.update({p.name: p.annotation for p in rest})

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {}
            for f in chosen:
                value = kwargs.pop(f.name)
                text = text_of(f)
                values[f.name] = text.parse(value) if text else value
            return command(**{group: values}, **kwargs)

        wrapper.__signature__ = own.replace(parameters=parameters + rest)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**annotations, "return": own_hints.get("return", None)}
        del wrapper.__wrapped__  # typer reads the signature above, not the command's own
        return wrapper

    return decorate


def task_flags(command: Callable) -> Callable:
    """Give a command that trains a task (its parameter `config` holds `TrainConfig` fields, `task` among them) the
    options of `TaskFlags` (--model, --data, --eval-data, …), merged into config["task_options"] as `train` merges
    them: a key of --task-options wins over the flag of the same name."""
    own = inspect.signature(command)

    @functools.wraps(command)
    def merged(**kwargs: Any) -> Any:
        flags, config = kwargs.pop("task_flags"), kwargs["config"]
        config["task_options"] = {**TaskFlags(**flags).options(config["task"]), **(config.get("task_options") or {})}
        return command(**kwargs)

    flags = inspect.Parameter("task_flags", inspect.Parameter.KEYWORD_ONLY, annotation=dict)
    merged.__signature__ = own.replace(parameters=[*own.parameters.values(), flags])  # type: ignore[attr-defined]
    merged.__annotations__ = {**typing.get_type_hints(command), "task_flags": dict}
    del merged.__wrapped__
    return config_options("task_flags", TaskFlags)(merged)


_ARGUMENT = re.compile(r"(?<![\w.\-'])([a-z][a-z0-9_]*)=(True|False|'[^']*'|(?=[\s,;:)]|$))")


def flags_of(command_group: Any) -> dict[str, tuple[str, str | None]]:
    """Python argument name -> (flag, negative flag) over every option of every command of a click group."""
    found: dict[str, tuple[str, str | None]] = {}
    for command in getattr(command_group, "commands", {}).values():
        for param in command.params:
            opts = [o for o in param.opts if o.startswith("--")]
            if opts and param.name not in found:
                found[param.name] = (opts[0], param.secondary_opts[0] if param.secondary_opts else None)
    return found


def in_cli_terms(message: str, flags: dict[str, tuple[str, str | None]]) -> str:
    """A library message in the command line's terms: `out=` → `--out`, `overwrite=True` → `--overwrite`,
    `task='sft'` → `--task sft`, `dora=False` → `--no-dora`; names the commands do not take stay as they are."""

    def translate(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if name not in flags:
            return match.group(0)
        flag, negative = flags[name]
        if value == "True":
            return flag
        if value == "False":
            return negative or f"--no-{flag[2:]}"
        if value.startswith("'"):
            return f"{flag} {value[1:-1]}"
        return flag

    return _ARGUMENT.sub(translate, message)

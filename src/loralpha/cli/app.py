"""The `loralpha` Typer app and its consoles; the command modules register on `app`."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from ..errors import UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="LoRA fine-tuning with a principled scaling factor (LoRA-α), and the tools to measure it.")
console = Console(width=None if sys.stdout.isatty() else 160)  # wide tables stay whole in logs and pipes
err = Console(stderr=True, soft_wrap=True, highlight=False)


def csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def numbers(text: Optional[str], kind: type, flag: str) -> list:
    """Comma-separated integers or numbers of option `flag`; anything else is a one-line error."""
    try:
        return [kind(v) for v in csv(text) or []]
    except ValueError:
        raise UsageError(f"{flag} takes {'integers' if kind is int else 'numbers'} separated by commas, "
                         f"got {text!r}") from None

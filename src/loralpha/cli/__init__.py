"""The `loralpha` command. Errors a user can cause print one line and exit with status 2 (a diverged
run exits with 1); the library's errors name Python arguments, which are said here as the flags.

    app.py      the Typer app and its consoles
    flags.py    options derived from config dataclasses; library messages in the command line's terms
    run.py      train, compare, spectrum, rules
    study.py    sweep, fit, calibrate
    report.py   demo, report
"""

from __future__ import annotations

import sys
import warnings

import typer

from ..errors import UsageError
from . import report, run, study  # noqa: F401  (each registers its commands on app)
from .app import app, console, err
from .flags import flags_of, in_cli_terms

__all__ = ["app", "main"]


def main() -> None:
    try:
        from typer._click import exceptions as click  # typer vendors click since 0.25
    except ImportError:
        from click import exceptions as click

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notes are not the user's to act on
    try:
        code = app(standalone_mode=False)  # returns the exit code; click's errors are raised, and printed below
    except UsageError as e:  # the library names its arguments (out=, overwrite=True): say them as flags
        err.print(f"error: {in_cli_terms(str(e), flags_of(typer.main.get_command(app)))}", markup=False,
                  highlight=False)
        sys.exit(2)
    except click.NoArgsIsHelpError as e:
        console.print(e.ctx.get_help(), markup=False, highlight=False)
        sys.exit(2)
    except click.ClickException as e:  # a bad option or value: one line, as for our own errors
        message = "; ".join(line.strip() for line in e.format_message().splitlines() if line.strip())
        ctx = getattr(e, "ctx", None)
        see = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        err.print(f"error: {message}{see}", markup=False, highlight=False)
        sys.exit(e.exit_code)
    except getattr(click, "Abort", ()):  # click's Abort; the click that typer vendors has none
        err.print("aborted", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

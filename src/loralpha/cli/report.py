"""The demo commands of `loralpha`: demo and report (registered on `cli.app`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from .app import app, console


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), help="directory of the demo's runs, store and report"),
    quick: bool = typer.Option(False, help="a small demo: fewer steps, ranks and points (the test suite runs it)"),
    workers: Optional[int] = typer.Option(None, help="training runs at a time (default: 2, or 1 on one core)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps: where every run trains (auto: CUDA "
                                            "when available, else MPS, else the CPU), in float32"),
) -> None:
    """LoRA-α against the usual settings on embedded data, and the paper's three findings measured on this
    machine (α vs η, spectral suppression, the α*(r) law), written as OUT/report.html and OUT/report.md.
    Interrupted? Run the same command again: finished parts are reused."""
    start = time.perf_counter()
    from ..reporting import build
    from ..studies import demo as demo_mod

    demo_mod.run(out, quick=quick, workers=workers, progress=not quiet, device=device,
                 say=lambda line: console.print(line, markup=False, highlight=False))
    written = build(out)
    console.print(f"report: {written['html']}  (and {written['markdown'].name}, "
                  f"{len(written['figures'])} plots) in {time.perf_counter() - start:.0f} s")


@app.command()
def report(
    path: Path = typer.Argument(..., help="a run directory, a sweep store (.db), a calibration (calibrate.json or "
                                          "its directory), a compare folder or a demo directory"),
    out: Optional[Path] = typer.Option(None, help="where report.html, report.md and the plots go "
                                                  "(default: PATH itself, or the store's directory)"),
) -> None:
    """Render report.html (self-contained, plots embedded), report.md and the PNG plots of PATH."""
    from ..reporting import build

    written = build(path, out)
    console.print(f"{written['kind']} report: {written['html']}  (and {written['markdown'].name}, "
                  f"{len(written['figures'])} plots)")

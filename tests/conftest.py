import importlib
import sys

import pytest
import torch
from torch import nn


class Toy(nn.Module):
    """Two blocks of q/v projections and an output head: enough names to target."""

    def __init__(self, width: int = 12, classes: int = 3):
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleDict({"q": nn.Linear(width, width), "v": nn.Linear(width, width)})
                                    for _ in range(2))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        for b in self.blocks:
            x = torch.tanh(b["q"](x) + b["v"](x))
        return self.head(x)


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return Toy()


@pytest.fixture
def one_thread():
    """torch on one thread for the test: on a few shared cores, tiny models run many times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_study_cli(args, capsys, monkeypatch):
    """`loralpha ARGS` in-process: (exit code, stdout, stderr), the study commands' tables not wrapped."""
    from rich.console import Console

    from loralpha import cli

    monkeypatch.setattr(sys, "argv", ["loralpha", *args])
    monkeypatch.setattr(importlib.import_module("loralpha.cli.study"), "console", Console(width=200))
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err

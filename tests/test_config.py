"""A run is declared once: each TrainConfig field gives its CLI option (flag, default, help), its key in the run
record and its sweep key; one mapping turns a config into an AdapterSpec; trial ids survive a new field; and
library errors name Python arguments, which the CLI says as its flags."""

import sys
from dataclasses import dataclass, fields

import pytest
import typer
from typer.testing import CliRunner

from loralpha import TrainConfig, cli, runs, train
from loralpha.cli.flags import config_options, flags_of, in_cli_terms
from loralpha.config import AdapterOptions
from loralpha.errors import UsageError
from loralpha.options import default_of, flag_of, help_of, option
from loralpha.sweep import parse, trial_id
from loralpha.tasks import build

TINY = {"batch_size": 16, "task_options": {"width": 16, "depth": 2, "n_eval": 16}}


@dataclass
class WithSmoothing(TrainConfig):
    """TrainConfig with one more field, as a developer would add it."""

    label_smoothing: float = option(0.0, "label smoothing of the loss")


def command_for(cls):
    app = typer.Typer()
    seen = {}

    @app.command()
    @config_options("config", cls)
    def go(config: dict, quiet: bool = typer.Option(False, help="own option")):
        seen.update(config, quiet=quiet)

    @app.command()
    def other():  # a second command, so `go` is a subcommand as in loralpha
        pass

    return app, seen


def test_a_new_field_gets_its_option_help_record_and_sweep_key(tmp_path):
    app, seen = command_for(WithSmoothing)
    shown = CliRunner().invoke(app, ["go", "--help"], env={"COLUMNS": "200"}).output
    assert "--label-smoothing" in shown and "label smoothing of the loss" in shown
    done = CliRunner().invoke(app, ["go", "--label-smoothing", "0.1", "--rank", "4", "--quiet"])
    assert done.exit_code == 0, done.output
    assert seen["label_smoothing"] == 0.1 and seen["rank"] == 4 and seen["quiet"] is True
    assert WithSmoothing(**{k: v for k, v in seen.items() if k != "quiet"}).label_smoothing == 0.1

    config = WithSmoothing(steps=2, label_smoothing=0.1, **TINY)
    train(config, out=tmp_path / "run")
    assert runs.read_json(tmp_path / "run" / "config.json")["config"]["label_smoothing"] == 0.1

    spec = parse({"task": "teacher-student", "fixed": {"steps": 2}, "grid": {"label_smoothing": [0.0, 0.1]}},
                 config_cls=WithSmoothing)
    assert [t.config.label_smoothing for t in spec.trials()] == [0.0, 0.1]
    with pytest.raises(UsageError, match="unknown key grid.label_smoothing: not a TrainConfig field"):
        parse({"task": "teacher-student", "grid": {"label_smoothing": [0.0, 0.1]}})


def test_every_train_option_is_a_field_with_its_help_and_default():
    command = typer.main.get_command(cli.app).commands["train"]
    options = {p.name: p for p in command.params}
    for f in fields(TrainConfig):
        assert help_of(f), f"{f.name} has no help"
        param = options[f.name]
        assert param.help == help_of(f) and flag_of(f) in param.opts
        assert param.default == (None if f.metadata.get("text") else default_of(f)), f.name
    assert options["track_every"].opts == ["--track"]  # a field may keep a flag of its own


def test_the_cli_builds_the_config_a_python_caller_would(monkeypatch, tmp_path):
    seen = {}

    def stop_here(config, **kwargs):  # what the command hands the library
        seen["c"] = config
        raise SystemExit(0)

    monkeypatch.setattr(sys.modules["loralpha.cli.run"], "run", stop_here)
    monkeypatch.setattr(sys, "argv", ["loralpha", "train", "--rank", "4", "--targets", "fc1,fc2", "--rank-pattern",
                                      "fc1=2", "--track", "signal-drift:5", "--task-options", "width=16",
                                      "--dora", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli.main()
    assert seen["c"] == TrainConfig(rank=4, targets=["fc1", "fc2"], rank_pattern={"fc1": 2}, track_every=5, dora=True,
                                    task_options={"teacher": "low-rank", "width": 16})


def test_one_mapping_carries_every_adapter_field_into_the_spec():
    changed = {"rule": "loraplus", "rank": 4, "coef": 64.0, "alpha": 8.0, "rank_pattern": {"fc1": 2},
               "init": "gaussian", "dora": True, "loraplus_ratio": 4.0}
    assert set(changed) == {f.name for f in fields(AdapterOptions)}  # a new adapter field must be added here
    task = build("teacher-student", width=16, depth=2, n_eval=16)
    spec = TrainConfig(**changed, targets=["fc1"]).adapter_spec(task)
    assert {k: getattr(spec, k) for k in changed} == changed and spec.targets == ["fc1"]
    assert TrainConfig().adapter_spec(task).targets == task.targets


# ids issued by the first release's code (computed at commit faa53ff): the normalisation must keep them
PINNED = [
    ({}, "99dab963c411fe0e"),
    ({"task": "tweets", "rule": "2rank", "rank": 16, "lr": 2e-4, "steps": 100, "batch_size": 16,
      "task_options": {"n_eval": 500}}, "ee0f65478f9b1a01"),
    ({"rule": "fixed", "alpha": 64, "coef": 256, "rank_pattern": {"fc1": 4}, "targets": ["fc1", "fc2"],
      "track_every": 10}, "54a337989a0908d9"),
]


@pytest.mark.parametrize("values, tid", PINNED)
def test_trial_ids_are_those_first_issued_and_survive_a_new_field(values, tid):
    assert trial_id(TrainConfig(**values)) == tid
    assert trial_id(WithSmoothing(**values)) == tid  # a field added with its default keeps every stored id
    assert trial_id(WithSmoothing(**values, label_smoothing=0.1)) != tid  # and counts once it is set


def test_a_python_caller_is_told_arguments_and_the_cli_its_flags(tmp_path, capsys, monkeypatch):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(UsageError) as e:
        train(TrainConfig(steps=2, **TINY), out=taken)
    assert "pass overwrite=True to replace it, resume=True to continue its run, or choose another out=" in str(e.value)
    assert "--" not in str(e.value)
    monkeypatch.setattr(sys, "argv", ["loralpha", "train", "--steps", "2", "--out", str(taken)])
    with pytest.raises(SystemExit):
        cli.main()
    assert ("pass --overwrite to replace it, --resume to continue its run, or choose another --out"
            in capsys.readouterr().err)


def test_messages_are_said_in_the_command_lines_terms():
    flags = flags_of(typer.main.get_command(cli.app))
    assert flags["track_every"] == ("--track", None) and flags["higher_is_better"][1] == "--lower-is-better"
    said = in_cli_terms("use task='sft' with data=, not dora=False; pass higher_is_better=True or "
                        "higher_is_better=False; trial (rank=4, alpha=16.0); KEY=VALUE; budget_steps= and colour=",
                        flags)
    assert said == ("use --task sft with --data, not --no-dora; pass --higher-is-better or --lower-is-better; "
                    "trial (rank=4, alpha=16.0); KEY=VALUE; --budget and colour=")


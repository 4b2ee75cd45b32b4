"""TensorBoard from the loralpha loop (`train(..., tensorboard=DIR)`, `loralpha train --tensorboard DIR`): the event
files hold exactly what metrics.jsonl and signal_drift.jsonl hold, a resumed run shows each step once, and a
missing tensorboard package is a one-line error before anything is trained."""

import json
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import run as run_cli
from test_interrupt import fault_at
from test_signal_drift import tracked_toy

from loralpha import AdapterSpec, FitOptions, TrainConfig, fit, runs, train
from loralpha.diagnostics.signal_drift import SignalDriftTracker
from loralpha.errors import UsageError

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"width": 16, "depth": 2, "n_eval": 16}
ARGS = ["train", "--steps", "6", "--eval-every", "3", "--batch-size", "16", "--track", "signal-drift:2", "--quiet",
        "--task-options", "width=16,depth=2,n_eval=16"]
MISSING = "tensorboard= needs the package tensorboard: pip install tensorboard"


def tiny(**kw):
    return TrainConfig(**{"steps": 6, "eval_every": 3, "batch_size": 16, "track_every": 2, "task_options": TINY, **kw})


def board(directory):
    """Every scalar series TensorBoard shows for `directory`: tag -> [(step, value)]."""
    events = EventAccumulator(str(directory))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def read_rows(path):
    return [json.loads(line) for line in open(path)]


def series(rows, key):
    return [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows if r.get(key) is not None]


def assert_board_is_the_run(directory, run_dir):
    """The event files in `directory` hold the run's metrics.jsonl and signal_drift.jsonl, step for step."""
    scalars = board(directory)
    rows = runs.read_metrics(run_dir)
    drift = read_rows(run_dir / "signal_drift.jsonl")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert scalars["train/loss"] == series(rows, "loss")
    assert scalars["train/lr"] == series(rows, "lr")
    held_out = set(rows[0]) - {"step"}
    assert held_out == {"eval_loss", "rel_mse"}
    for name in held_out:
        assert [s for s, _ in scalars[f"eval/{name}"]] == [0, 3, 6]
        assert scalars[f"eval/{name}"] == series(rows, name)
    assert [r["step"] for r in drift] == [1, 2, 4, 6]
    expected = {"train/loss", "train/lr", *(f"eval/{name}" for name in held_out)}
    for group in ("mean", "weighted"):
        for key in drift[0][group]:
            tag = f"signal_drift/{group}/{key}"
            assert scalars[tag] == [(r["step"], pytest.approx(r[group][key], rel=1e-6)) for r in drift]
            expected.add(tag)
    assert {"signal_drift/mean/drift_ratio", "signal_drift/weighted/bilinear_ratio"} <= expected
    assert set(scalars) == expected


def test_a_run_writes_its_metrics_and_signal_drift_as_tensorboard_scalars(tmp_path):
    result = train(tiny(), out=tmp_path / "run", tensorboard=tmp_path / "tb")
    assert result.status == "done"
    assert_board_is_the_run(tmp_path / "tb", tmp_path / "run")
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 1  # one writer for the whole run
    train(tiny(), out=tmp_path / "plain")
    config = runs.read_json(tmp_path / "run" / "config.json")
    assert config == runs.read_json(tmp_path / "plain" / "config.json")  # a place to write, not a setting
    assert "tensorboard" not in config and "tensorboard" not in config["config"]


def test_tensorboard_needs_no_run_directory(tmp_path):
    result = train(tiny(track_every=None), tensorboard=tmp_path / "tb")
    scalars = board(tmp_path / "tb")
    losses = [v for _, v in scalars["train/loss"]]
    assert len(losses) == 6 and result.final_loss == pytest.approx(sum(losses) / 6, rel=1e-6)
    assert scalars["eval/rel_mse"][-1] == (6, pytest.approx(result.eval["rel_mse"], rel=1e-6))
    assert not any(tag.startswith("signal_drift/") for tag in scalars)  # no tracking asked for


def test_the_cli_writes_the_same_scalars(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli([*ARGS, "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")],
                           capsys, monkeypatch)
    assert code == 0, err
    assert_board_is_the_run(tmp_path / "tb", tmp_path / "run")


def test_a_resumed_run_shows_each_step_once(tmp_path, monkeypatch):
    def crash():
        raise RuntimeError("the machine went away")

    fault_at(monkeypatch, 5, crash)  # after the checkpoint at step 3 and the logged step 4
    with pytest.raises(RuntimeError):
        train(tiny(), out=tmp_path / "run", checkpoint_every=3, tensorboard=tmp_path / "tb")
    monkeypatch.undo()
    assert [s for s, _ in board(tmp_path / "tb")["train/loss"]] == [1, 2, 3, 4]
    resumed = train(tiny(), out=tmp_path / "run", checkpoint_every=3, resume=True, tensorboard=tmp_path / "tb")
    assert resumed.resumed_from == 3 and resumed.status == "done"
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 2  # the resumed run appended
    assert_board_is_the_run(tmp_path / "tb", tmp_path / "run")  # step 4 of the first try is hidden, not doubled


def test_the_trackers_own_writer_as_the_trainer_callback_uses_it(tmp_path):
    model = tracked_toy()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    tracker = SignalDriftTracker(model, every=2, tensorboard=tmp_path / "tb")
    x, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
    for step in range(1, 5):
        tracker.begin(step)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        tracker.end(step)
    tracker.close()
    scalars = board(tmp_path / "tb")
    assert [r["step"] for r in tracker.records] == [1, 2, 4]
    assert scalars["signal_drift/mean/cos"] == [(r["step"], pytest.approx(r["mean"]["cos"], rel=1e-6))
                                                for r in tracker.records]
    assert set(scalars) == {f"signal_drift/{g}/{k}" for g in ("mean", "weighted") for k in tracker.records[0][g]}


def test_without_tensorboard_the_argument_is_refused_before_training(tmp_path, monkeypatch, toy):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it raises ImportError
    with pytest.raises(UsageError) as e:
        train(tiny(), out=tmp_path / "run", tensorboard=tmp_path / "tb")
    assert str(e.value) == MISSING
    spec = AdapterSpec(rule="lora-alpha", rank=2, targets=["q", "v"])
    with pytest.raises(UsageError, match=f"^{MISSING}$"):
        fit(toy, [], lambda m, b: m(b).sum(), spec, FitOptions(steps=2, lr=1e-3), out=tmp_path / "fit",
            tensorboard=tmp_path / "tb")
    assert not any("lora_" in n for n, _ in toy.named_modules())  # the model was not adapted
    assert not (tmp_path / "run").exists() and not (tmp_path / "fit").exists() and not (tmp_path / "tb").exists()


def test_without_tensorboard_the_cli_says_so_in_one_line_and_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code, _, err = run_cli([*ARGS, "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")],
                           capsys, monkeypatch)
    assert code == 2
    assert err == "error: --tensorboard needs the package tensorboard: pip install tensorboard\n"
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()

"""Interruptions: Ctrl-C during `train` saves what is done and a resumed run ends with the numbers of an
uninterrupted one, bit for bit; a crashed run resumes from its last checkpoint; checkpoints load only
plain tensors. (A SIGKILLed sweep losing no finished trial and rerunning the rest exactly once is
tests/test_sweep.py::test_killed_sweep_resumes_in_two_concurrent_sweeps_that_run_each_trial_once.)"""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_cli import run as run_cli

from loralpha import TrainConfig, runs, tasks, train
from loralpha.errors import UsageError
from loralpha.runlog import TIMINGS

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"width": 32, "depth": 2, "n_eval": 64}
ARGS = ["train", "--steps", "12", "--rank", "2", "--batch-size", "32", "--eval-every", "4", "--quiet",
        "--task-options", "width=32,depth=2,n_eval=64"]


def tiny(**kw):
    return TrainConfig(**{"rank": 2, "steps": 12, "batch_size": 32, "eval_every": 4, "task_options": TINY, **kw})


def fault_at(monkeypatch, step, fault):
    """Make the task's loss call `fault()` on training step `step` (the loss runs once per step)."""
    build = tasks.build

    def faulty_build(*args, **kwargs):
        task = build(*args, **kwargs)
        calls, inner = itertools.count(1), task.loss

        def loss(model, batch):
            if next(calls) == step:
                fault()
            return inner(model, batch)

        task.loss = loss
        return task

    monkeypatch.setattr(tasks, "build", faulty_build)


def same_run(a, b):
    """Two run directories hold the same numbers: metrics, summary and adapter, bit for bit."""
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    sa, sb = runs.read_json(a / "summary.json"), runs.read_json(b / "summary.json")
    for s in (sa, sb):
        for key in (*TIMINGS, "run_dir", "resumed_from"):
            s.pop(key)
    assert sa == sb
    weights = "adapter/adapter_model.safetensors"
    assert (a / weights).read_bytes() == (b / weights).read_bytes()


@pytest.fixture(autouse=True)
def terminal_sigint():
    """Ctrl-C as in a terminal: a test run started as a background job begins with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_finishes_the_step_saves_the_run_and_resume_matches_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    code, _, _ = run_cli([*ARGS, "--out", str(tmp_path / "whole")], capsys, monkeypatch)
    assert code == 0

    fault_at(monkeypatch, 7, lambda: signal.raise_signal(signal.SIGINT))  # a real SIGINT, mid-step
    code, _, err = run_cli([*ARGS, "--checkpoint-every", "5", "--out", str(tmp_path / "cut")], capsys, monkeypatch)
    cut = tmp_path / "cut"
    assert code == 130 and err.count("\n") == 1 and "Traceback" not in err
    assert "run interrupted after 7 steps" in err and "--resume continues it" in err
    summary = runs.read_json(cut / "summary.json")
    assert summary["status"] == "interrupted" and summary["steps"] == 7
    assert [r["step"] for r in runs.read_metrics(cut)] == list(range(8))  # every finished step is logged
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["step"] == 7  # the step in progress finished
    assert (cut / "adapter" / "adapter_model.safetensors").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back

    monkeypatch.undo()
    code, out, _ = run_cli([*ARGS, "--checkpoint-every", "5", "--resume", "--out", str(cut)], capsys, monkeypatch)
    assert code == 0 and "resumed from the checkpoint at step 7" in out
    assert runs.read_json(cut / "summary.json")["resumed_from"] == 7
    assert not (cut / "checkpoint.pt").exists()  # done: the adapter is the result
    same_run(cut, tmp_path / "whole")


def test_a_crashed_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    whole = train(tiny(), out=tmp_path / "whole")

    def crash():
        raise RuntimeError("the machine went away")

    fault_at(monkeypatch, 8, crash)
    with pytest.raises(RuntimeError):
        train(tiny(), out=tmp_path / "cut", checkpoint_every=5)
    monkeypatch.undo()
    assert [r["step"] for r in runs.read_metrics(tmp_path / "cut")][-1] == 7  # rows past the checkpoint
    resumed = train(tiny(), out=tmp_path / "cut", checkpoint_every=5, resume=True)
    assert resumed.resumed_from == 5 and resumed.status == "done"
    assert [r["step"] for r in runs.read_metrics(tmp_path / "cut")] == list(range(13))  # 6, 7 once each
    assert resumed.final_loss == whole.final_loss and resumed.eval == whole.eval
    same_run(tmp_path / "cut", tmp_path / "whole")


def tracked_steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "signal_drift.jsonl").read_text().splitlines()]


def test_a_tracked_run_resumes_with_the_signal_drift_rows_of_an_uninterrupted_one(tmp_path, monkeypatch):
    whole = train(tiny(track_every=3), out=tmp_path / "whole")
    tracked = tracked_steps(tmp_path / "whole")
    assert tracked == [1, 3, 6, 9, 12] and [r["step"] for r in whole.signal_drift] == tracked

    def crash():
        raise RuntimeError("the machine went away")

    fault_at(monkeypatch, 8, crash)  # after the checkpoint at step 4 and the tracked step 6
    with pytest.raises(RuntimeError):
        train(tiny(track_every=3), out=tmp_path / "cut", checkpoint_every=4)
    monkeypatch.undo()
    assert tracked_steps(tmp_path / "cut") == [1, 3, 6]
    resumed = train(tiny(track_every=3), out=tmp_path / "cut", checkpoint_every=4, resume=True)
    assert resumed.resumed_from == 4 and resumed.status == "done"
    assert [r["step"] for r in resumed.signal_drift] == [6, 9, 12]  # what this process tracked, 6 once more
    # the rows after the checkpoint were dropped and written again: the file is the uninterrupted run's, bit for bit
    drift = [(tmp_path / d / "signal_drift.jsonl").read_text() for d in ("cut", "whole")]
    assert drift[0] == drift[1]
    same_run(tmp_path / "cut", tmp_path / "whole")


def test_resume_refuses_another_config_or_a_finished_run_and_restarts_without_a_checkpoint(tmp_path, monkeypatch):
    assert train(tiny(), out=tmp_path / "fresh", resume=True).resumed_from is None  # nothing there yet: a new run
    with pytest.raises(UsageError, match="already finished \\(done\\); nothing to resume"):
        train(tiny(), out=tmp_path / "fresh", resume=True)
    with pytest.raises(UsageError, match="choose one"):
        train(tiny(), out=tmp_path / "fresh", resume=True, overwrite=True)

    fault_at(monkeypatch, 3, lambda: signal.raise_signal(signal.SIGINT))
    assert train(tiny(), out=tmp_path / "cut").status == "interrupted"  # no checkpoints
    monkeypatch.undo()
    with pytest.raises(UsageError, match=r"it was trained with rank=2, not 4; rerun with its options"):
        train(tiny(rank=4), out=tmp_path / "cut", resume=True)
    again = train(tiny(), out=tmp_path / "cut", resume=True)  # no checkpoint: from step 0
    assert again.resumed_from is None and again.status == "done" and again.steps == 12
    assert again.final_loss == train(tiny()).final_loss

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a loralpha run"):
        train(tiny(), out=tmp_path / "other", resume=True)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_holds_code_is_refused_unrun(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fault_at(monkeypatch, 3, lambda: signal.raise_signal(signal.SIGINT))
    train(tiny(), out=tmp_path / "run", checkpoint_every=2)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "loralpha-checkpoint-1", "step": 2, "evil": _Payload()}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(UsageError, match="cannot be read safely .*delete it to restart") as e:
        train(tiny(), out=tmp_path / "run", checkpoint_every=2, resume=True)
    assert "\n" not in str(e.value) and not (tmp_path / "pwned").exists()


def test_sigint_from_outside_stops_a_cli_run_cleanly(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "loralpha", "train", "--steps", "100000", "--rank", "2", "--batch-size", "32",
               "--schedule", "constant", "--eval-every", "100000", "--checkpoint-every", "1000", "--quiet",
               "--task-options", "width=32,depth=2,n_eval=64", "--out", str(out)]
    proc = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) > 20:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "run interrupted after" in err
    summary = runs.read_json(out / "summary.json")
    assert summary["status"] == "interrupted" and summary["steps"] >= 20
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == summary["steps"]  # nothing trained is lost
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == summary["steps"]

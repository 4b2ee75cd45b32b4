import importlib
import json
import math

import numpy as np
import pytest
from conftest import run_study_cli as run

from loralpha import runs
from loralpha.errors import UsageError
from loralpha.loop import RunResult, TrainConfig, train
from loralpha.options import parse_options
from loralpha.studies.calibrate_c import DEFAULT_COEFS, calibrate, first_steps, schedule

train_module = importlib.import_module("loralpha.studies.calibrate_c")  # where calibrate looks train up
TINY = {"batch_size": 32, "task_options": {"width": 32, "depth": 2, "n_eval": 64}}
TINY_ARGS = ["--batch-size", "32", "--task-options", "width=32,depth=2,n_eval=64"]


def fake_train(best_c, diverge_above=math.inf, calls=None):
    """A stand-in for train: loss = 1/steps + (log c − log best_c)², diverging (after 3 steps) above a c."""

    def train(config, out=None, **_):
        if calls is not None:
            calls.append((config.coef, config.steps, config.seed))
        if config.coef > diverge_above:
            return RunResult("diverged", 3, None, {}, 0.0, diverged_at=3)
        loss = 1 / config.steps + math.log(config.coef / best_c) ** 2 + 1e-3 * config.seed
        return RunResult("done", config.steps, loss, {}, 0.0)

    return train


def test_schedule_and_first_steps_fit_the_budget():
    assert schedule(13) == [13, 6, 3] and schedule(2) == [2] and schedule(5) == [5, 2]
    assert first_steps(13, 1, 3700) == 100  # 13·100 + 6·200 + 3·400 = 3700
    assert first_steps(13, 2, 3700) == 50
    assert first_steps(13, 1, 200) == 10  # too little for the whole schedule: the minimum probe
    with pytest.raises(UsageError, match="budget of 100 steps is too small"):
        first_steps(13, 1, 100)


def test_successive_halving_and_the_parabola_find_the_minimum(monkeypatch):
    calls = []
    monkeypatch.setattr(train_module, "train", fake_train(37.0, diverge_above=1000.0, calls=calls))
    rounds = []
    cal = calibrate(budget_steps=3700, on_round=rounds.append)
    assert [r["steps"] for r in cal.rounds] == [100, 200, 400] and len(rounds) == 3
    assert cal.rounds[0]["kept"] == [8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    assert cal.rounds[1]["kept"] == [16.0, 32.0, 64.0] and cal.rounds[2]["kept"] == [32.0]
    assert [p["status"] for p in cal.rounds[0]["probes"]][-3:] == ["diverged"] * 3  # 1024, 2048, 4096: worst
    assert cal.grid_coef == 32.0 and cal.refined and cal.coef == pytest.approx(37.0, rel=1e-12)
    assert cal.refined_from == {"round": 3, "steps": 400, "coefs": [16.0, 32.0, 64.0]}
    assert not cal.edge and cal.stopped == "one left" and cal.lr == 5e-5  # teacher-student's full-FT η
    assert cal.planned_steps == 3700 and cal.cost_steps == 3700 - 3 * 97  # diverged probes stop at step 3
    assert cal.cost_steps == sum(steps if c <= 1000 else 3 for c, steps, _ in calls)
    rows = cal.alphas([1, 4])
    assert rows[1]["alpha"] == pytest.approx(2 * cal.coef) and rows[1]["paper"] == 512


def test_an_edge_winner_is_flagged(monkeypatch):
    monkeypatch.setattr(train_module, "train", fake_train(1e5))
    cal = calibrate(budget_steps=1000, coefs=[16, 64, 256, 1024])
    assert cal.coef == 1024.0 and cal.edge and cal.bound == "lower" and not cal.refined


def test_the_budget_is_never_exceeded(monkeypatch):
    monkeypatch.setattr(train_module, "train", fake_train(37.0))
    cal = calibrate(budget_steps=249, seeds=[0])  # round 1: 130 steps; round 2 would need 120 more
    assert cal.stopped == "budget" and len(cal.rounds) == 1 and cal.cost_steps == 130 <= 249
    assert cal.grid_coef == 32.0 and cal.refined  # refined in round 1 through 16 and 64


def test_seeds_are_averaged_and_a_diverged_seed_makes_a_probe_worst(monkeypatch):
    real = fake_train(37.0)

    def train(config, out=None, **_):
        if config.coef == 32.0 and config.seed == 1:
            return RunResult("diverged", 1, None, {}, 0.0)
        return real(config)

    monkeypatch.setattr(train_module, "train", train)
    cal = calibrate(budget_steps=10_000, coefs=[16, 32, 64], seeds=[0, 1])
    probe = next(p for p in cal.rounds[0]["probes"] if p["coef"] == 32.0)
    assert probe["status"] == "diverged" and probe["loss"] is None and probe["losses"][1] is None
    assert cal.grid_coef == 64.0


def test_every_probe_diverging_is_an_error(monkeypatch):
    monkeypatch.setattr(train_module, "train", fake_train(37.0, diverge_above=0.0))
    with pytest.raises(UsageError, match="every probe diverged at 10 steps"):
        calibrate(budget_steps=130)


def test_calibrate_c_on_a_tiny_teacher_student_stays_in_grid_and_budget(tmp_path):
    cal = calibrate("teacher-student", rank=4, budget_steps=200, **TINY)  # the default grid 1 … 4096
    assert cal.coefs == list(DEFAULT_COEFS)
    # round 1: 13 c × 10 steps = 130; round 2 would need 6 × 20 = 120 more, over the budget of 200
    assert [(r["round"], r["steps"], len(r["probes"])) for r in cal.rounds] == [(1, 10, 13)]
    assert cal.stopped == "budget" and cal.planned_steps == 130 and cal.wall_time_s > 0
    probes = {p["coef"]: p for p in cal.rounds[0]["probes"]}
    assert list(probes) == list(DEFAULT_COEFS)
    assert cal.cost_steps == sum(p["steps_taken"] for p in probes.values()) <= 200
    scores = {c: math.inf if p["loss"] is None else p["loss"] for c, p in probes.items()}
    ranked = sorted(scores, key=scores.get)
    assert cal.grid_coef == ranked[0] and cal.rounds[0]["kept"] == sorted(ranked[:6])  # the best half survives
    # a probe's score is the train loss of a lora-alpha run at that c: the mean of its 10 logged losses
    for c in (ranked[0], ranked[6], ranked[-1]):  # the winner, the best one dropped, the worst
        config = TrainConfig(task="teacher-student", rule="lora-alpha", rank=4, coef=c, steps=10, eval_every=10, **TINY)
        train(config, out=tmp_path / f"c{c:g}")
        losses = [row["loss"] for row in runs.read_metrics(tmp_path / f"c{c:g}")[1:]]
        assert len(losses) == 10 and probes[c]["status"] == "done" and probes[c]["steps_taken"] == 10
        assert probes[c]["loss"] == pytest.approx(sum(losses) / 10, rel=1e-12), c
    # the winner is interior here, so c is the vertex of the parabola in log c through it and its neighbours
    i = DEFAULT_COEFS.index(cal.grid_coef)
    assert 0 < i < len(DEFAULT_COEFS) - 1 and not cal.edge and cal.bound is None and cal.refined
    three = list(DEFAULT_COEFS[i - 1:i + 2])
    assert cal.refined_from == {"round": 1, "steps": 10, "coefs": three}
    a, b, _ = np.polyfit(np.log(three), [scores[c] for c in three], 2)
    assert a > 0 and cal.coef == pytest.approx(math.exp(-b / (2 * a)), rel=1e-6)
    assert three[0] < cal.coef < three[2]


def test_calibrate_c_is_deterministic():
    args = dict(rank=2, budget_steps=90, coefs=[16, 64, 256, 1024, 4096], **TINY)
    a, b = calibrate(**args), calibrate(**args)
    assert a.coef == b.coef and a.rounds == b.rounds
    assert a.cost_steps <= 90 and [r["steps"] for r in a.rounds] == [10, 20]


@pytest.mark.parametrize("kwargs, message", [
    ({"coefs": [4.0]}, "give 2 or more distinct coefs"),
    ({"coefs": [0.0, 4.0]}, "coef c must be a positive finite number"),
    ({"seeds": []}, "seeds must be distinct integers"),
    ({"seeds": [1, 1]}, "seeds must be distinct integers"),
    ({"budget_steps": 0}, "budget \\(optimizer steps, budget_steps=\\) must be a positive integer"),
    ({"rank": 0}, "rank must be a positive integer"),
    ({"task": "mnist"}, "unknown task 'mnist'"),
    ({"rule": "fixed"}, "calibrate sets rule itself"),
    ({"colour": 1}, "unknown TrainConfig field 'colour'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(UsageError, match=message):
        calibrate(**{"budget_steps": 1000, **kwargs})


def test_parse_options():
    assert parse_options("width=32, scale=0.5,teacher=full-rank") == {"width": 32, "scale": 0.5, "teacher": "full-rank"}
    assert parse_options(None) == {}
    assert parse_options("packing=true,bos=False") == {"packing": True, "bos": False}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_options("width")


# ---------------------------------------------------------------- the CLI




def test_calibrate_c_command_prints_rounds_and_alphas_and_writes_json(tmp_path, capsys, monkeypatch):
    code, out, err = run(["calibrate-c", "--rank", "2", "--budget", "90", "--coefs", "16,64,256,1024,4096",
                          "--ranks", "1,4,16", "--out", str(tmp_path), *TINY_ARGS], capsys, monkeypatch)
    assert code == 0, err
    assert "round 1: 5 c × 10 steps" in out and "round 2: 2 c × 20 steps" in out
    assert "chosen c = " in out and "α = c·√r" in out and "paper 256·√r" in out and "1024" in out
    assert "cost: " in out and "of a 90-step budget" in out
    saved = json.loads((tmp_path / "calibrate.json").read_text())
    assert saved["coefs"] == [16, 64, 256, 1024, 4096] and saved["cost_steps"] <= 90
    assert [row["rank"] for row in saved["alphas"]] == [1, 4, 16]
    assert saved["alphas"][1]["alpha"] == pytest.approx(2 * saved["coef"])
    assert saved["config"]["task_options"] == {"teacher": "low-rank", "width": 32, "depth": 2, "n_eval": 64}  # as train


@pytest.mark.parametrize("args, message", [
    (["--rank", "0"], "rank must be a positive integer"),
    (["--budget", "5"], "budget of 5 steps is too small"),
    (["--coefs", "0,4"], "coef c must be a positive finite number"),
    (["--coefs", "a,b"], "--coefs takes numbers separated by commas"),
    (["--ranks", "1,x"], "--ranks takes integers separated by commas"),
    (["--ranks", "0"], "rank must be a positive integer"),
    (["--seeds", "0.5"], "--seeds takes integers separated by commas"),
    (["--task", "mnist"], "unknown task 'mnist'"),
    (["--task-options", "width"], "--task-options takes KEY=VALUE pairs"),
    (["--task-options", "colour=red"], "teacher-student does not take colour"),
    (["--lr", "-1"], "learning rate must be a positive finite number"),
])
def test_calibrate_c_command_bad_input_is_one_line(tmp_path, capsys, monkeypatch, args, message):
    code, _, err = run(["calibrate-c", "--budget", "130", "--out", str(tmp_path / "o"), *args], capsys, monkeypatch)
    assert code == 2 and message in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()

"""The plane calibrator (`loralpha calibrate`, `loralpha.calibrate`): its method on a loss surface with a known
optimum that moves with the horizon, its budget, its answer as each rule writes it, the real teacher-student MLP
against a grid at the target budget, and bad input."""

import json
import math

import pytest
from conftest import run_study_cli as run

import loralpha
from loralpha import runs, scaling
from loralpha.errors import UsageError
from loralpha.loop import RunResult, TrainConfig, train
from loralpha.studies import calibrate as calibrator
from loralpha.studies import probe_log
from loralpha.studies.calibrate import calibrate, carry, coef_of, horizons, quadratic_fit, vertex

TINY = {"batch_size": 32, "task_options": {"width": 32, "depth": 2, "n_eval": 64}}
TINY_ARGS = ["--batch-size", "32", "--task-options", "width=32,depth=2,n_eval=64"]
XS = [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]
YS = [1e-3, 3.16e-3, 1e-2, 3.16e-2]


def optimum(steps):
    """The known optimum of the surface below at a horizon: log10 x* = −2.6 − 0.3·log10(T/100), log10 y* = −1.9 −
    0.2·log10(T/100) (shorter runs want larger steps, as real ones do)."""
    return -2.6 - 0.3 * math.log10(steps / 100), -1.9 - 0.2 * math.log10(steps / 100)


def surface(diverge_above=math.inf, calls=None):
    """A stand-in for train on a loss surface quadratic in (log x, log y) with a cross term, whose minimum moves with
    the horizon (`optimum`); the probe's every step has that loss. η_A above `diverge_above` diverges at step 2."""

    def fake(config, out=None, evaluate=True, **_):
        x = config.lr
        y = scaling.gamma("lora-alpha", config.rank, config.coef) * x
        if calls is not None:
            calls.append(config)
        if x > diverge_above:
            return RunResult("diverged", 2, None, {}, 0.0, diverged_at=2, losses=[1.0, 50.0])
        u0, v0 = optimum(config.steps)
        du, dv = math.log10(x) - u0, math.log10(y) - v0
        loss = 0.5 + du * du + 0.8 * dv * dv + 0.3 * du * dv + 1e-3 * config.seed
        return RunResult("done", config.steps, loss, {}, 0.0, losses=[loss] * config.steps)

    return fake


def test_the_method_finds_a_known_optimum_that_moves_with_the_horizon(monkeypatch):
    monkeypatch.setattr(calibrator, "train", surface())
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=3500, xs=XS, ys=YS)
    assert cal.horizons == {"short": 100, "long": 300, "target": 1000}  # (20 + 5·3)·100 = 3500
    u, v = optimum(100)
    assert (math.log10(cal.short["x"]), math.log10(cal.short["y"])) == pytest.approx((u, v), abs=1e-9)
    assert cal.short["how"] == "quadratic" and cal.short["edge"] == []
    u, v = optimum(300)
    assert (math.log10(cal.long["x"]), math.log10(cal.long["y"])) == pytest.approx((u, v), abs=1e-9)
    assert cal.carried["x"]["slope"] == pytest.approx(-0.3) and cal.carried["y"]["slope"] == pytest.approx(-0.2)
    u, v = optimum(1000)  # the target's optimum, carried there from the two horizons (rounded to 3 and 4 digits)
    assert math.log10(cal.eta_A) == pytest.approx(u, abs=0.003) and math.log10(cal.gamma_eta_B) == pytest.approx(
        v, abs=0.003)
    assert cal.certainty["x"]["carried_decades"] == pytest.approx(-0.3 * math.log10(1000 / 300))
    assert cal.certainty["x"]["flat_decades"] > 0 and "flat over" in cal.certainty["summary"]
    # the same point, as each rule writes it, is one point of the Adam plane
    for rule, st in (("lora-alpha", {"coef": cal.settings["lora-alpha"]["coef"]}),
                     ("fixed", {"alpha": cal.settings["lora"]["alpha"]}),
                     ("loraplus", {"alpha": cal.settings["loraplus"]["alpha"],
                                   "loraplus_ratio": cal.settings["loraplus"]["loraplus_ratio"]})):
        point = scaling.adam_plane(rule, 4, cal.eta_A, **st)
        assert point == pytest.approx((cal.eta_A, cal.gamma_eta_B), rel=1e-9)
    assert cal.command == (f"loralpha train --task teacher-student --rank 4 --coef "
                           f"{cal.settings['lora-alpha']['coef']:g} --lr {cal.eta_A:g} --steps 1000")


def test_without_the_horizon_the_short_probes_would_pick_larger_steps(monkeypatch):
    monkeypatch.setattr(calibrator, "train", surface())
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=3500, xs=XS, ys=YS)
    assert math.log10(cal.short["x"] / cal.eta_A) == pytest.approx(0.3, abs=0.003)  # a whole decade of T: −0.3
    assert cal.long["x"] > cal.eta_A and cal.long["y"] > cal.gamma_eta_B


def test_diverged_probes_count_as_worst_and_the_map_edge_is_said(monkeypatch):
    monkeypatch.setattr(calibrator, "train", surface(diverge_above=9e-3))
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=3500, xs=XS, ys=YS)
    # the map's column x = 1e-2 and the check's arm beyond the best finite x (3.16e-3) diverge: x stays a probed
    # point (1e-3, the best of the arm's finite two), not carried, 0.1 decades from the optimum; y is fitted
    assert [(p["stage"], p["x"]) for p in cal.probes if p["status"] == "diverged"] == [("map", 1e-2)] * 4 + [
        ("check", pytest.approx(1e-2, rel=1e-3))]
    assert cal.short["how"] == "parabolas" and cal.long["x_how"] == "best of three"
    assert cal.eta_A == pytest.approx(1e-3, rel=2e-3)
    assert not cal.certainty["x"]["measured"] and cal.certainty["y"]["measured"]
    assert "not carried" in cal.certainty["summary"]
    monkeypatch.setattr(calibrator, "train", surface())
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=3500, xs=XS[:3], ys=YS)  # x* > 1e-3
    assert cal.short["edge"] == ["x"] and "on its edge along x" in cal.certainty["summary"]


@pytest.mark.parametrize("budget, seeds", [(350, [0]), (1000, [0]), (3333, [0]), (700, [0, 1]), (5000, [3, 4, 5])])
def test_the_probes_never_exceed_the_budget(monkeypatch, budget, seeds):
    calls = []
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    cal = calibrate("teacher-student", steps=400, rank=4, budget_steps=budget, xs=XS, ys=YS, seeds=seeds)
    assert sum(c.steps for c in calls) == cal.cost_steps <= budget
    assert len(calls) == 25 * len(seeds) and {c.seed for c in calls} == set(seeds)
    short, long = cal.horizons["short"], cal.horizons["long"]
    assert long <= 400 and (long == 3 * short or long == 400)


def test_progress_says_each_probe_with_the_count_and_the_time_left(monkeypatch, capsys):
    monkeypatch.setattr(calibrator, "train", surface())
    states = []
    calibrate("teacher-student", steps=1000, rank=4, budget_steps=3500, xs=XS, ys=YS, progress=True,
              on_progress=states.append)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(states) == 25 and [s["done"] for s in states] == list(range(1, 26))
    assert states[-1]["steps_done"] == states[-1]["steps_of"] == 20 * 100 + 5 * 300  # the map's 100, the check's 300
    assert lines[0].startswith("map   η_A = 0.0001  γ·η_B = 0.001  100 steps: ")
    assert "[probe 1/25, 100/3500 steps, ~" in lines[0]
    assert lines[-1].startswith("check η_A = ") and lines[-1].endswith("[probe 25/25, 3500/3500 steps]")
    clock = probe_log.Clock(4, 100)  # a probe of 10 steps in 2 s: 0.2 s a step, 90 steps to go
    assert clock.tick({"steps": 10}, 2.0)["left_s"] == pytest.approx(18.0)
    assert clock.tick({"steps": 10}, None)["left_s"] == pytest.approx(16.0)  # a known probe costs nothing
    assert [probe_log.duration(s) for s in (40, 200, 7500)] == ["40 s", "3 min 20 s", "2 h 05 min"]


def test_a_calibration_resumes_from_its_probes_without_training_them_again(monkeypatch):
    calls, seen = [], []
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    first = calibrate("teacher-student", steps=1000, rank=4, budget_steps=3500, xs=XS, ys=YS, on_probe=seen.append)
    assert len(seen) == len(calls) == 25
    stored = {(p["stage"], p["x"], p["y"], p["steps"], p["seed"]): p for p in seen}
    again = calibrate("teacher-student", steps=1000, rank=4, budget_steps=3500, xs=XS, ys=YS,
                      known=lambda k: stored.get((k["stage"], k["x"], k["y"], k["steps"], k["seed"])))
    assert len(calls) == 25 and (again.eta_A, again.gamma_eta_B) == (first.eta_A, first.gamma_eta_B)


def test_the_pieces_of_the_method():
    assert horizons(20, 1, 3500, 1000) == (100, 300)
    assert horizons(20, 1, 10**6, 90) == (30, 90)  # a budget larger than needed: the check runs at the target
    with pytest.raises(UsageError, match="probe budget of 349 steps is too small"):
        horizons(20, 1, 349, 1000)
    points = [(u, v, 1 + (u - 0.2) ** 2 + 2 * (v + 0.1) ** 2 + 0.5 * (u - 0.2) * (v + 0.1))
              for u in (-1, 0, 1) for v in (-1, 0, 1)]
    assert vertex(*quadratic_fit(points)[1:]) == pytest.approx((0.2, -0.1))
    assert vertex(*quadratic_fit([(u, v, -u * u - v * v) for u, v, _ in points])[1:]) is None  # a maximum
    assert quadratic_fit(points[:5]) is None  # too few points for six coefficients
    down = carry(1e-2, 5e-3, 100, 300, 3000)  # moved −0.30 decades over log10 3: slope −0.63
    assert down["slope"] == pytest.approx(math.log10(0.5) / math.log10(3))
    assert down["value"] == pytest.approx(5e-3 * 10 ** down["slope"])
    assert carry(1e-2, 2e-2, 100, 300, 3000)["value"] == 2e-2  # a longer run never gets a larger step
    assert carry(1e-2, 1e-4, 100, 300, 10**6)["carried_decades"] == -1.0  # at most a decade
    assert coef_of(2e-5, 2e-5 * 256 / math.sqrt(8), 8) == pytest.approx(256)


def test_the_calibrated_point_for_a_hugging_face_trainer(monkeypatch):
    from loralpha.integrations import trainer_settings

    monkeypatch.setattr(calibrator, "train", surface())
    cal = loralpha.calibrate("teacher-student", steps=1000, rank=4, budget_steps=3500, xs=XS, ys=YS)
    config, lr = trainer_settings(cal, targets=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    assert lr == cal.eta_A and config.r == 4 and config.task_type == "CAUSAL_LM"
    assert config.lora_alpha == pytest.approx(cal.settings["lora-alpha"]["coef"] * 2)  # c·√4
    assert config.lora_alpha / config.r * lr == pytest.approx(cal.gamma_eta_B)  # γ·η_B: the point's y
    assert trainer_settings(cal.to_dict(), targets=["q_proj"])[1] == lr


@pytest.mark.parametrize("kwargs, message", [
    ({"budget_steps": 100}, "probe budget of 100 steps is too small"),
    ({"budget_steps": 0}, "probe budget (budget_steps=) must be a positive integer"),
    ({"steps": 0}, "steps of the target run must be a positive integer"),
    ({"xs": [1e-3, 1e-3, 2e-3]}, "give 3 or more distinct values of η_A"),
    ({"ys": [1e-3, -1.0, 2e-3]}, "γ·η_B (ys=) must be a positive finite number"),
    ({"seeds": [0, 0]}, "seeds must be distinct integers"),
    ({"lr": 1e-3}, "calibrate sets lr itself"),
    ({"colour": "red"}, "unknown TrainConfig field 'colour'"),
    ({"task": "mnist"}, "unknown task 'mnist'"),
])
def test_bad_input_is_one_usage_error(monkeypatch, kwargs, message):
    calls = []
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    with pytest.raises(UsageError) as info:
        calibrate(**{"task": "teacher-student", "steps": 300, **kwargs})
    assert message in str(info.value) and "\n" not in str(info.value) and not calls


def test_every_map_probe_diverging_is_one_line(monkeypatch):
    monkeypatch.setattr(calibrator, "train", surface(diverge_above=0.0))
    with pytest.raises(UsageError, match="every map probe diverged"):
        calibrate("teacher-student", steps=300, budget_steps=3500, xs=XS, ys=YS)


def test_on_the_teacher_student_mlp_the_point_trains_as_well_as_the_grid_best():
    """The real MLP at the target budget (rank 4, 200 steps) over a lattice a decade apart: the calibrated point
    lies within one grid step of the grid's best point by held-out rel_mse, and of a point of its
    near-optimal set (within 3% of the best: the MLP's optimum is a long valley of near-equal points, so which one
    is best is partly the noise's choice), and trains to within 3% of the best."""
    xs = ys = [1e-4, 1e-3, 1e-2, 1e-1]
    grid = {}
    for x in xs:
        for y in ys:
            r = train(TrainConfig(task="teacher-student", rule="lora-alpha", rank=4, coef=coef_of(x, y, 4), lr=x,
                                  steps=200, eval_every=200, **TINY))
            grid[(x, y)] = r.eval["rel_mse"] if r.status == "done" else math.inf
    best = min(grid.values())
    near = [k for k, v in grid.items() if v <= 1.03 * best]
    cal = calibrate("teacher-student", steps=200, rank=4, budget_steps=31 * 15, xs=xs, ys=ys, **TINY)
    assert cal.cost_steps <= 31 * 15
    bx, by = min(grid, key=grid.get)
    assert abs(math.log10(cal.eta_A / bx)) <= 1 and abs(math.log10(cal.gamma_eta_B / by)) <= 1  # one grid step
    assert any(abs(math.log10(cal.eta_A / x)) <= 1 and abs(math.log10(cal.gamma_eta_B / y)) <= 1 for x, y in near)
    coef = cal.settings["lora-alpha"]["coef"]
    chosen = train(TrainConfig(task="teacher-student", rule="lora-alpha", rank=4, coef=coef, lr=cal.eta_A, steps=200,
                               eval_every=200, **TINY))
    assert chosen.eval["rel_mse"] <= 1.03 * best


# ---------------------------------------------------------------- the CLI




def test_calibrate_command_prints_the_point_as_each_rule_and_the_train_command(tmp_path, capsys, monkeypatch):
    code, out, err = run(["calibrate", "--rank", "2", "--steps", "60", "--budget", "240", "--xs", "1e-3,1e-2,1e-1",
                          "--ys", "1e-3,1e-2,1e-1", "--out", str(tmp_path), *TINY_ARGS], capsys, monkeypatch)
    assert code == 0, err
    saved = json.loads((tmp_path / "calibrate.json").read_text())
    assert (tmp_path / "calibrate.png").stat().st_size > 10_000
    assert saved["cost_steps"] <= 240 and saved["horizons"] == {"short": 10, "long": 30, "target": 60}
    assert len(saved["probes"]) == 9 + 5 and out.count("map   η_A") == 9 and out.count("check η_A") == 5
    assert "[probe 1/14, 10/240 steps, ~" in out and "[probe 9/14, 90/240 steps, ~" in out  # count and time left
    assert "[probe 14/14, 240/240 steps]" in out
    for row in ("LoRA-α", "plain LoRA", "LoRA+", "how sure: η_A:", "cost: ", f"train it: {saved['command']}"):
        assert row in out
    assert saved["command"].startswith("loralpha train --task teacher-student --rank 2 --batch-size 32 --coef ")

    code, out, err = run(["report", str(tmp_path)], capsys, monkeypatch)  # the calibration as a report
    assert code == 0, err
    report = (tmp_path / "report.md").read_text()
    assert f"({saved['eta_A']:.3g}, {saved['gamma_eta_B']:.3g})" in report and "How sure: η_A:" in report
    assert sum(line.startswith(("| map |", "| check |")) for line in report.splitlines()) == 14
    assert (tmp_path / "calibrate-plane.png").is_file() and saved["command"] in report
    again = ("loralpha calibrate --task teacher-student --rank 2 --batch-size 32 --steps 60 --task-options "
             "depth=2,n_eval=64,width=32 --budget 240 --xs 0.001,0.01,0.1 --ys 0.001,0.01,0.1")  # JSON sorts keys
    assert again in report  # the command that reproduces it


def test_calibrate_help_states_the_least_budget(capsys, monkeypatch):
    code, out, _ = run(["calibrate", "--help"], capsys, monkeypatch)
    said = " ".join(out.replace("│", " ").split())
    assert code == 0 and "at least 10 steps × (map points + 15) × seeds: 350 with the default 5 × 4 map" in said
    xs, ys = calibrator.default_lattice("tweets", 8)
    assert len(xs) * len(ys) == 20 and calibrator.MIN_PROBE_STEPS == 10
    assert calibrator.CHECK_PROBES * calibrator.CHECK_RATIO == 15
    assert horizons(20, 1, 350, 10_000) == (10, 30)  # what the help says is the least that runs
    with pytest.raises(UsageError, match="too small"):
        horizons(20, 1, 349, 10_000)


def test_a_calibrate_c_result_is_not_a_plane_calibration_report(tmp_path, capsys, monkeypatch):
    (tmp_path / "calibrate.json").write_text(json.dumps({"coef": 256.0, "rounds": []}))
    code, _, err = run(["report", str(tmp_path)], capsys, monkeypatch)
    assert code == 2 and "calibrate-c's (c only)" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--budget", "5"], "probe budget of 5 steps is too small"),
    (["--xs", "a,b"], "--xs takes numbers separated by commas"),
    (["--ys", "1e-3,2e-3"], "give 3 or more distinct values of γ·η_B"),
    (["--seeds", "0.5"], "--seeds takes integers separated by commas"),
    (["--steps", "0"], "steps of the target run must be a positive integer"),
    (["--task", "mnist"], "unknown task 'mnist'"),
])
def test_calibrate_command_bad_input_is_one_line(tmp_path, capsys, monkeypatch, args, message):
    code, _, err = run(["calibrate", "--out", str(tmp_path / "o"), *args], capsys, monkeypatch)
    assert code == 2 and message in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.usefixtures("one_thread")
def test_calibrate_takes_the_task_flags_and_the_commands_it_prints_run_as_written(tmp_path, capsys, monkeypatch):
    """`loralpha calibrate --task sft --data … --eval-data … --model …` (a tiny Llama): the flags `train` takes reach
    the task, and the printed `train it:` command and the report's reproducing command run as printed."""
    import shlex

    from loralpha.tasks import sft

    model, tokenizer = sft.tiny_causal_lm()
    model.save_pretrained(str(tmp_path / "tiny-llama"))
    tokenizer.save_pretrained(str(tmp_path / "tiny-llama"))
    records = [{"prompt": f"What is {a} plus {b}?\n", "response": f"{a} plus {b} is {a + b}."}
               for a in range(1, 7) for b in range(1, 6)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:24]))
    (tmp_path / "held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[24:]))
    monkeypatch.chdir(tmp_path)  # the printed commands name relative files and write into runs/ here
    args = ["calibrate", "--task", "sft", "--model", "tiny-llama", "--data", "pairs.jsonl", "--eval-data", "held.jsonl",
            "--max-length", "32", "--batch-size", "4", "--rank", "2", "--steps", "10", "--budget", "240",
            "--xs", "1e-3,1e-2,1e-1", "--ys", "1e-3,1e-2,1e-1", "--out", "cal"]
    code, out, err = run(args, capsys, monkeypatch)
    assert code == 0, err
    saved = json.loads((tmp_path / "cal" / "calibrate.json").read_text())
    assert saved["config"]["task_options"]["eval_data"] == "held.jsonl"
    command = saved["command"]
    assert f"train it: {command}" in out
    assert "--data pairs.jsonl" in command and "--eval-data held.jsonl" in command and "--model tiny-llama" in command

    code, out, err = run([*shlex.split(command)[1:], "--quiet"], capsys, monkeypatch)  # the run it calibrated
    assert code == 0, err
    trained = runs.read_json(tmp_path / "runs/sft-lora-alpha-r2-s0/config.json")
    assert trained["task_info"]["n_eval"] == 6 and trained["config"]["lr"] == saved["eta_A"]

    code, _, err = run(["report", "cal"], capsys, monkeypatch)
    assert code == 0, err
    again = next(line for line in (tmp_path / "cal" / "report.md").read_text().splitlines()
                 if line.startswith("loralpha calibrate "))
    code, out, err = run(shlex.split(again)[1:], capsys, monkeypatch)  # reproduces it, into runs/calibrate
    assert code == 0, err
    assert json.loads((tmp_path / "runs/calibrate/calibrate.json").read_text())["command"] == command


FAKE_ARGS = ["calibrate", "--rank", "4", "--steps", "1000", "--budget", "3500", "--xs", ",".join(map(str, XS)),
             "--ys", ",".join(map(str, YS))]


def interrupted_after(n, calls):
    """`surface`, but the probe after the first `n` is interrupted (Ctrl-C during a probe)."""
    fake = surface(calls=calls)

    def train(config, **kwargs):
        if len(calls) == n:
            calls.append(config)
            return RunResult("interrupted", 3, None, {}, 0.0, losses=[1.0] * 3)
        return fake(config, **kwargs)

    return train


def test_a_taken_out_is_refused_before_the_first_probe(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    (tmp_path / "file").write_text("mine")
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "file")], capsys, monkeypatch)
    assert code == 2 and "output " in err and "is a file; give a directory for --out" in err and err.count("\n") == 1
    assert calls == [] and (tmp_path / "file").read_text() == "mine"

    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "cal")], capsys, monkeypatch)
    assert code == 0, err
    assert len(calls) == 25 and (tmp_path / "cal" / "probes.jsonl").is_file()
    first = json.loads((tmp_path / "cal" / "calibrate.json").read_text())
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "cal")], capsys, monkeypatch)  # finished: refused
    assert code == 2 and "already holds a finished calibration (calibrate.json); pass --overwrite" in err
    assert len(calls) == 25
    code, _, err = run([*FAKE_ARGS, "--budget", "5", "--out", str(tmp_path / "cal"), "--overwrite"], capsys,
                       monkeypatch)  # a bad argument with --overwrite leaves the old calibration as it was
    assert code == 2 and "too small" in err
    assert json.loads((tmp_path / "cal" / "calibrate.json").read_text()) == first
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "cal"), "--overwrite"], capsys, monkeypatch)
    assert code == 0, err
    assert len(calls) == 50 and len((tmp_path / "cal" / "probes.jsonl").read_text().splitlines()) == 1 + 25

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "other")], capsys, monkeypatch)
    assert code == 2 and "already holds files of its own" in err and len(calls) == 50


def test_an_interrupted_calibration_resumes_from_its_probes_in_out(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(calibrator, "train", interrupted_after(12, calls))
    out = tmp_path / "cal"
    code, _, err = run([*FAKE_ARGS, "--out", str(out)], capsys, monkeypatch)
    assert code == 130 and "the same command resumes it" in err
    assert len((out / "probes.jsonl").read_text().splitlines()) == 1 + 12 and not (out / "calibrate.json").exists()

    code, _, err = run([*FAKE_ARGS, "--budget", "4000", "--out", str(out)], capsys, monkeypatch)
    assert code == 2 and "holds the probes of another calibration (started with budget_steps=3500, not 4000)" in err

    calls.clear()
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    code, out_text, err = run([*FAKE_ARGS, "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err
    assert "resuming: 12 probes" in out_text and len(calls) == 25 - 12  # the 12 are not trained again
    resumed = json.loads((out / "calibrate.json").read_text())
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "whole")], capsys, monkeypatch)
    whole = json.loads((tmp_path / "whole" / "calibrate.json").read_text())
    assert (resumed["eta_A"], resumed["gamma_eta_B"]) == (whole["eta_A"], whole["gamma_eta_B"])

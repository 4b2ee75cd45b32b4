"""The plane calibrator (`loralpha calibrate`, `loralpha.calibrate`): its method on a loss surface with a known
optimum that moves with the horizon, its budget, its answer as each rule writes it, the real teacher-student MLP
against a grid at the target budget, and bad input."""

import json
import math

import pytest
import torch
from conftest import run_study_cli as run

import loralpha
from loralpha import runs, scaling
from loralpha.errors import UsageError
from loralpha.loop import RunResult, TrainConfig, train
from loralpha.studies import calibrate as calibrator
from loralpha.studies import calibrate_method, probe_log
from loralpha.studies.calibrate import CHECK_RATIO, calibrate, carry, coef_of, horizons, quadratic_fit, vertex
from loralpha.studies.calibrate import HALF_DECADE as HALF

TINY = {"batch_size": 32, "task_options": {"width": 32, "depth": 2, "n_eval": 64}}
TINY_ARGS = ["--batch-size", "32", "--task-options", "width=32,depth=2,n_eval=64"]
XS = [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]
YS = [1e-3, 3.16e-3, 1e-2, 3.16e-2]


def optimum(steps):
    """The known optimum of the surface below at a horizon: log10 x* = −2.6 − 0.3·log10(T/100), log10 y* = −1.9 −
    0.2·log10(T/100) (shorter runs want larger steps, as real ones do)."""
    return -2.6 - 0.3 * math.log10(steps / 100), -1.9 - 0.2 * math.log10(steps / 100)


def surface(diverge_above=math.inf, calls=None, move=1.0):
    """A stand-in for train on a loss surface quadratic in (log x, log y) with a cross term, whose minimum moves with
    the horizon (`optimum`, its moves × `move`); the probe's every step has that loss. η_A above `diverge_above`
    diverges at step 2."""

    def fake(config, out=None, evaluate=True, **_):
        x = config.lr
        y = scaling.gamma("lora-alpha", config.rank, config.coef) * x
        if calls is not None:
            calls.append(config)
        if x > diverge_above:
            return RunResult("diverged", 2, None, {}, 0.0, diverged_at=2, losses=[1.0, 50.0])
        u0, v0 = optimum(100 * (config.steps / 100) ** move)
        du, dv = math.log10(x) - u0, math.log10(y) - v0
        loss = 0.5 + du * du + 0.8 * dv * dv + 0.3 * du * dv + 1e-3 * config.seed
        return RunResult("done", config.steps, loss, {}, 0.0, losses=[loss] * config.steps)

    return fake


def test_the_method_finds_a_known_optimum_that_moves_with_the_horizon(monkeypatch):
    monkeypatch.setattr(calibrator, "train", surface())
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=1000, xs=XS, ys=YS)  # one target run
    # (20 map points + 5 reserved for widening + (5 check points + 2 reserved for walking) × 3)·21 ≤ 1000; the best
    # map point is on the y edge (0.0316), so the lattice widens by a row (3 new points), and the check gets what
    # the map left: (1000 − 23 · 21) // 7 = 73 steps; its arms bracket, so the walk's reserve goes unspent
    assert cal.horizons == {"short": 21, "long": 73, "target": 1000} and cal.cost_steps == 23 * 21 + 5 * 73
    u, v = optimum(21)
    assert (math.log10(cal.short["x"]), math.log10(cal.short["y"])) == pytest.approx((u, v), abs=1e-9)
    assert cal.short["how"] == "quadratic" and cal.short["edge"] == [] and cal.certainty["widened"] == 3
    assert cal.certainty["walked"] == 0
    u, v = optimum(73)
    assert (math.log10(cal.long["x"]), math.log10(cal.long["y"])) == pytest.approx((u, v), abs=1e-9)
    assert cal.carried["x"]["slope"] == pytest.approx(-0.3) and cal.carried["y"]["slope"] == pytest.approx(-0.2)
    u, v = optimum(1000)  # the target's optimum, carried there from the two horizons (rounded to 3 and 4 digits)
    assert math.log10(cal.eta_A) == pytest.approx(u, abs=0.003) and math.log10(cal.gamma_eta_B) == pytest.approx(
        v, abs=0.003)
    assert cal.certainty["x"]["carried_decades"] == pytest.approx(-0.3 * math.log10(1000 / 73))
    assert cal.certainty["x"]["flat_decades"] > 0 and "flat over" in cal.certainty["summary"]
    assert cal.certainty["x"]["bracketed"] and cal.certainty["y"]["bracketed"] and not cal.unknown
    assert "η_A carried -0.34 decades, γ·η_B carried -0.23 decades" in calibrator.carry_words(cal.to_dict())
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
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=1000, xs=XS, ys=YS)
    assert math.log10(cal.short["x"] / cal.eta_A) == pytest.approx(0.3 * math.log10(1000 / 21), abs=0.003)
    assert cal.long["x"] > cal.eta_A and cal.long["y"] > cal.gamma_eta_B


def test_on_a_short_target_one_run_of_probes_finds_the_optimum_from_the_default_lattice(monkeypatch):
    """T = 160 steps and a budget of 160 (the default: one target run) from the default 3 × 3 map, whose best point
    lies at a corner here: the lattice widens by a row and a column (the corner's 5 new neighbours, the reserve) and
    the optimum moved with the horizon is still found."""
    calls = []
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    cal = calibrate("teacher-student", steps=160, rank=4)
    assert cal.budget_steps == 160 and sum(c.steps for c in calls) == cal.cost_steps <= 160
    assert cal.horizons == {"short": 4, "long": 14, "target": 160}
    grown = cal.short["lattice"]
    assert cal.certainty["widened"] == 5 and len(grown["xs"]) == len(grown["ys"]) == 4 and cal.short["edge"] == []
    u, v = optimum(160)
    assert math.log10(cal.eta_A) == pytest.approx(u, abs=0.01) and math.log10(cal.gamma_eta_B) == pytest.approx(
        v, abs=0.01)
    assert not cal.unknown and "after widening" not in cal.certainty["summary"]


def test_diverged_probes_count_as_worst_and_the_map_edge_is_said(monkeypatch):
    monkeypatch.setattr(calibrator, "train", surface(diverge_above=9e-3))
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=1000, xs=XS, ys=YS)
    # the map's column x = 1e-2 and the check's arm beyond the best finite x (3.16e-3) diverge: x stays a probed
    # point (the best of the arm's finite two), not carried; y is fitted and carried
    # (the lattice widens by a row beyond y = 0.0316, whose x = 1e-2 diverges too)
    assert [(p["stage"], p["x"]) for p in cal.probes if p["status"] == "diverged"] == [("map", 1e-2)] * 5 + [
        ("check", pytest.approx(1e-2, rel=1e-3))]
    assert cal.short["how"] == "parabolas" and cal.long["x_how"] == "best probed"
    assert cal.eta_A == pytest.approx(3.16e-3, rel=2e-3)
    assert not cal.certainty["x"]["measured"] and cal.certainty["y"]["measured"]
    assert "not carried (a probed point, not a fitted one)" in cal.certainty["summary"]
    assert "η_A not carried, γ·η_B carried" in calibrator.carry_words(cal.to_dict())


def test_a_best_point_on_the_edge_widens_the_lattice_and_a_corner_never_bracketed_is_unknown(monkeypatch, capsys):
    monkeypatch.setattr(calibrator, "train", surface())
    # x* ≈ 3.5e-3 at the map's 31 steps: beyond a map that stops at 1e-3; widening reaches 3.16e-3, still its edge,
    # and the check's arm (1e-3, 3.16e-3, 1e-2 at 94 steps, where x* ≈ 2.6e-3) brackets it
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=1000, xs=XS[:3], ys=YS)
    assert cal.certainty["widened"] == 5 and cal.short["lattice"]["xs"][-1] == pytest.approx(3.16e-3, rel=1e-3)
    assert cal.short["edge"] == ["x"] and "on its edge along x after widening it by 5 points" in cal.certainty[
        "summary"]
    assert cal.certainty["x"]["bracketed"] and not cal.unknown
    # a lattice far below the optimum on both axes, too small a budget to check: unknown, said so, nothing carried
    far = dict(xs=[1e-7, 1e-6, 1e-5], ys=[1e-6, 1e-5, 1e-4])
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=40, **far)
    assert cal.horizons["long"] is None and cal.short["edge"] == ["x", "y"] and cal.unknown
    assert cal.certainty["summary"].startswith("unknown: the optimum was bracketed along neither axis")
    assert "not carried" in calibrator.carry_words(cal.to_dict()) and cal.eta_A == 1e-5
    # with a check, its arms look half a decade beyond the corner, still all downhill: unknown too, nothing carried
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=1000, **far)
    assert cal.certainty["widened"] == 5 and cal.unknown and not cal.certainty["x"]["bracketed"]
    assert cal.carried["x"]["carried_decades"] == 0 and cal.carried["y"]["carried_decades"] == 0
    assert "η_A not carried, γ·η_B not carried" in calibrator.carry_words(cal.to_dict())


def test_an_arm_still_downhill_at_its_end_walks_on_until_the_optimum_is_bracketed(monkeypatch):
    """An optimum that moves 4 × faster with the horizon: between the map (21 steps) and the check (73) it moves
    0.90 decades in η_A, beyond the plus's half-decade arm, whose low end then scores best; the arm walks on half
    a decade (the walk's reserve) and brackets it, and the target's optimum is still found."""
    monkeypatch.setattr(calibrator, "train", surface(move=4.0))
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=1000, xs=XS, ys=YS)
    walked = [p for p in cal.probes if p["stage"] == "check"][5:]
    assert cal.certainty["walked"] == len(walked) >= 1 and cal.cost_steps <= 1000
    assert walked[0]["x"] == pytest.approx(cal.short["x"] / 10, rel=1e-9)  # two half-decade steps below p_s
    assert cal.certainty["x"]["bracketed"] and cal.long["x_how"] == "parabola" and not cal.unknown
    assert "the check walked" in cal.certainty["summary"]
    u, _ = optimum(100 * (cal.horizons["long"] / 100) ** 4)
    # the walked arm's parabola, at γ·η_B off its optimum and without the cross term: within 0.1 decades
    assert math.log10(cal.long["x"]) == pytest.approx(u, abs=0.1)
    # without the walk's reserve (a budget too small for it), the same arm stays a bound: the best probed point
    monkeypatch.setattr(calibrate_method, "WALK_PROBES", 0)
    bound = calibrate("teacher-student", steps=1000, rank=4, budget_steps=1000, xs=XS, ys=YS)
    assert bound.certainty["walked"] == 0 and not bound.certainty["x"]["bracketed"]
    assert bound.long["x_how"] == "best probed" and bound.long["x"] == pytest.approx(bound.short["x"] / HALF,
                                                                                     rel=1e-9)


def test_a_map_beside_a_cliff_is_read_per_axis_not_by_a_quadratic_through_it():
    """The 103-step map of a real teacher-student calibration (rank 8), whose best point (5e-3, 4.53e-3) has a
    diverged neighbour (0.05, 0.0254): a quadratic through the other neighbours put p_s a lattice step away, on the
    low-γ·η_B edge (0.019, 0.0008); the parabolas through the best point's row and column keep it beside it."""
    xs, ys = [5e-05, 0.0005, 0.005, 0.05], [0.000805, 0.00453, 0.0254]
    scores = {(0, 0): 0.23946, (0, 1): 0.21595, (0, 2): 0.21048, (1, 0): 0.21731, (1, 1): 0.20168,
              (1, 2): 0.19178, (2, 0): 0.18785, (2, 1): 0.1509, (2, 2): 0.17272, (3, 0): 0.15772,
              (3, 1): 0.20238, (3, 2): math.inf}
    found = calibrator.short_optimum(xs, ys, scores)
    assert found["how"] == "parabolas" and found["best"] == [0.005, 0.00453]
    assert abs(math.log10(found["x"] / 0.005)) < 0.1 and abs(math.log10(found["y"] / 0.00453)) < 0.25


@pytest.mark.parametrize("steps, budget, seeds, lattice", [
    (400, 400, [0], True), (400, 350, [0], True), (400, 1000, [0], True), (400, 3333, [0], True),
    (400, 800, [0, 1], True), (400, 5000, [3, 4, 5], True), (160, None, [0], False), (160, 160, [0, 1], False),
    (1000, None, [0], False), (12, 40, [0], False), (12, 12, [0], "small")])
def test_the_probes_never_exceed_the_budget(monkeypatch, steps, budget, seeds, lattice):
    calls = []
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    grid = {"xs": XS, "ys": YS} if lattice is True else {}
    if lattice == "small":  # 3 × 3 at the least probe (4 steps) needs 36: a 12-step budget is refused, in one line
        with pytest.raises(UsageError, match="probe budget of 12 steps is too small: the map alone needs 9 points"):
            calibrate("teacher-student", steps=steps, rank=4, budget_steps=budget, seeds=seeds)
        assert not calls
        return
    cal = calibrate("teacher-student", steps=steps, rank=4, budget_steps=budget, seeds=seeds, **grid)
    assert sum(c.steps for c in calls) == cal.cost_steps <= (budget or steps) == cal.budget_steps
    assert {c.seed for c in calls} == set(seeds) and all(c.steps <= steps for c in calls)
    short, long = cal.horizons["short"], cal.horizons["long"]
    assert long is None or CHECK_RATIO * short <= long <= steps


def test_progress_says_each_probe_with_the_count_and_the_time_left(monkeypatch, capsys):
    monkeypatch.setattr(calibrator, "train", surface())
    states = []
    cal = calibrate("teacher-student", steps=1000, rank=4, budget_steps=1000, xs=XS, ys=YS, progress=True,
                    on_progress=states.append)
    lines = capsys.readouterr().out.splitlines()
    # the plan without widening (20 map probes, 5 check probes at (1000 − 20·21) // 7 = 82 steps), then its 3
    # widening probes and the check's steps as run (73)
    assert len(lines) == len(states) == 28 and [s["done"] for s in states] == list(range(1, 29))
    assert states[-1]["steps_done"] == states[-1]["steps_of"] == 23 * 21 + 5 * 73 == cal.cost_steps
    assert lines[0].startswith("map   η_A = 0.0001  γ·η_B = 0.001  21 steps: ")
    assert "[probe 1/25, 21/830 steps, ~" in lines[0]
    assert lines[-1].startswith("check η_A = ") and lines[-1].endswith("[probe 28/28, 848/848 steps]")
    clock = probe_log.Clock(4, 100)  # a probe of 10 steps in 2 s: 0.2 s a step, 90 steps to go
    assert clock.tick({"steps": 10}, 2.0)["left_s"] == pytest.approx(18.0)
    assert clock.tick({"steps": 10}, None)["left_s"] == pytest.approx(16.0)  # a known probe costs nothing
    assert [probe_log.duration(s) for s in (40, 200, 7500)] == ["40 s", "3 min 20 s", "2 h 05 min"]


def test_a_calibration_resumes_from_its_probes_without_training_them_again(monkeypatch):
    calls, seen = [], []
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    first = calibrate("teacher-student", steps=160, rank=4, on_probe=seen.append)  # widens: 9 + 5 + 5 probes
    assert len(seen) == len(calls) == 19
    stored = {(p["stage"], p["x"], p["y"], p["steps"], p["seed"]): p for p in seen}
    part = dict(list(stored.items())[:10])  # killed after 10 probes
    again = calibrate("teacher-student", steps=160, rank=4,
                      known=lambda k: part.get((k["stage"], k["x"], k["y"], k["steps"], k["seed"])))
    assert len(calls) == 19 + 9 and (again.eta_A, again.gamma_eta_B) == (first.eta_A, first.gamma_eta_B)
    trained = [(c.lr, c.coef, c.steps) for c in calls]
    assert len(set(trained)) == 19  # no probe trained twice


def test_the_pieces_of_the_method():
    assert horizons(20, 1, 3500, 1000) == (76, 228, 5, 2)  # (20 + 5 + 7 × 3)·76 ≤ 3500
    assert horizons(9, 1, 160, 160) == (4, 12, 5, 2)  # one target run of 160 steps: the map, its reserve, the check
    assert horizons(9, 1, 130, 130) == (4, 12, 0, 2)  # no room for the widening reserve
    assert horizons(9, 1, 100, 100) == (4, 12, 0, 0)  # nor for the walk
    assert horizons(9, 1, 40, 12) == (4, None, 0, 0)  # nor for the check
    assert horizons(20, 1, 10**6, 90) == (30, 90, 5, 2)  # a budget larger than needed: the check runs at the target
    with pytest.raises(UsageError, match="probe budget of 35 steps is too small"):
        horizons(9, 1, 35, 1000)
    assert calibrator.least_budget(9, 1) == 36
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
    cal = loralpha.calibrate("teacher-student", steps=1000, rank=4, xs=XS, ys=YS)
    config, lr = trainer_settings(cal, targets=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    assert lr == cal.eta_A and config.r == 4 and config.task_type == "CAUSAL_LM"
    assert config.lora_alpha == pytest.approx(cal.settings["lora-alpha"]["coef"] * 2)  # c·√4
    assert config.lora_alpha / config.r * lr == pytest.approx(cal.gamma_eta_B)  # γ·η_B: the point's y
    assert trainer_settings(cal.to_dict(), targets=["q_proj"])[1] == lr


@pytest.mark.parametrize("kwargs, message", [
    ({"budget_steps": 30}, "probe budget of 30 steps is too small"),
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
        calibrate("teacher-student", steps=300, xs=XS, ys=YS)


def test_on_the_teacher_student_mlp_the_point_trains_as_well_as_the_grid_best():
    """The real MLP at the target budget (rank 4, 200 steps) over a lattice a decade apart, against a calibration
    with one target run of probes: the calibrated point lies within one grid step of a point of the grid's
    near-optimal set (within 3% of the best by held-out rel_mse: the MLP's optimum is a long valley of near-equal
    points, so which one is best is partly the noise's choice), and trains to within 5% of the best."""
    xs = ys = [1e-4, 1e-3, 1e-2, 1e-1]
    grid = {}
    for x in xs:
        for y in ys:
            r = train(TrainConfig(task="teacher-student", rule="lora-alpha", rank=4, coef=coef_of(x, y, 4), lr=x,
                                  steps=200, eval_every=200, **TINY))
            grid[(x, y)] = r.eval["rel_mse"] if r.status == "done" else math.inf
    best = min(grid.values())
    near = [k for k, v in grid.items() if v <= 1.03 * best]
    cal = calibrate("teacher-student", steps=200, rank=4, **TINY)
    assert cal.cost_steps <= 200 and not cal.unknown
    assert any(abs(math.log10(cal.eta_A / x)) <= 1 and abs(math.log10(cal.gamma_eta_B / y)) <= 1 for x, y in near)
    coef = cal.settings["lora-alpha"]["coef"]
    chosen = train(TrainConfig(task="teacher-student", rule="lora-alpha", rank=4, coef=coef, lr=cal.eta_A, steps=200,
                               eval_every=200, **TINY))
    assert chosen.eval["rel_mse"] <= 1.05 * best


# ---------------------------------------------------------------- the CLI




def test_calibrate_command_prints_the_point_as_each_rule_and_the_train_command(tmp_path, capsys, monkeypatch):
    code, out, err = run(["calibrate", "--rank", "2", "--steps", "60", "--budget", "240", "--xs", "1e-3,1e-2,1e-1",
                          "--ys", "1e-3,1e-2,1e-1", "--out", str(tmp_path), *TINY_ARGS], capsys, monkeypatch)
    assert code == 0, err
    saved = json.loads((tmp_path / "calibrate.json").read_text())
    assert (tmp_path / "calibrate.png").stat().st_size > 10_000
    assert saved["cost_steps"] <= 240 and saved["horizons"]["short"] == 6 and saved["horizons"]["target"] == 60
    n = len(saved["probes"])
    checked = 5 + saved["certainty"]["walked"]  # the plus and any point its arms walked on
    assert n == 9 + saved["certainty"]["widened"] + checked
    assert out.count("map   η_A") == n - checked and out.count("check η_A") == checked
    assert "[probe 1/14, 6/" in out and "steps, ~" in out  # the count (before any widening) and the time left
    assert f"[probe {n}/{n}, " in out
    said = f"train it: {saved['command']}" if not saved["unknown"] else f"answer: unknown (the optimum lies beyond " \
        f"the probes); the best probe, to widen from, was: {saved['command']}"
    for row in ("LoRA-α", "plain LoRA", "LoRA+", "how sure: ", "cost: ", said):
        assert row in out
    assert ("train it:" in out) is not saved["unknown"]
    assert saved["command"].startswith("loralpha train --task teacher-student --rank 2 --batch-size 32 --coef ")

    code, out, err = run(["report", str(tmp_path)], capsys, monkeypatch)  # the calibration as a report
    assert code == 0, err
    report = (tmp_path / "report.md").read_text()
    assert f"({saved['eta_A']:.3g}, {saved['gamma_eta_B']:.3g})" in report and "How sure: " in report
    assert sum(line.startswith(("| map |", "| check |")) for line in report.splitlines()) == n
    assert (tmp_path / "calibrate-plane.png").is_file() and saved["command"] in report
    again = ("loralpha calibrate --task teacher-student --rank 2 --batch-size 32 --steps 60 --task-options "
             "depth=2,n_eval=64,width=32 --budget 240 --xs 0.001,0.01,0.1 --ys 0.001,0.01,0.1")  # JSON sorts keys
    assert again in report  # the command that reproduces it


def test_calibrate_help_states_the_least_budget(capsys, monkeypatch):
    code, out, _ = run(["calibrate", "--help"], capsys, monkeypatch)
    said = " ".join(out.replace("│", " ").split())
    assert code == 0 and "default: --steps, one target run; at least 4 steps × map points × seeds: 36 with the " \
        "default 3 × 3 map and one seed, which then has no check and no carry; 140 for the map, its widening and " \
        "the check with its walk" in said
    xs, ys = calibrator.default_lattice("tweets", 8)
    assert len(xs) * len(ys) == 9 and calibrator.PROBE_FLOOR == 4 and calibrator.least_budget(9, 1) == 36
    assert horizons(9, 1, 36, 10_000) == (4, None, 0, 0) and horizons(9, 1, 140, 10_000) == (4, 12, 5, 2)
    assert horizons(9, 1, 139, 10_000) == (4, 12, 0, 2)  # one step less: no reserve for widening
    with pytest.raises(UsageError, match="too small"):
        horizons(9, 1, 35, 10_000)


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
    assert f"{'was' if saved['unknown'] else 'train it'}: {command}" in out  # as printed, unknown or not
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


FAKE_ARGS = ["calibrate", "--rank", "4", "--steps", "1000", "--budget", "1000", "--xs", ",".join(map(str, XS)),
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
    assert len(calls) == 28 and (tmp_path / "cal" / "probes.jsonl").is_file()
    first = json.loads((tmp_path / "cal" / "calibrate.json").read_text())
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "cal")], capsys, monkeypatch)  # finished: refused
    assert code == 2 and "already holds a finished calibration (calibrate.json); pass --overwrite" in err
    assert len(calls) == 28
    code, _, err = run([*FAKE_ARGS, "--budget", "5", "--out", str(tmp_path / "cal"), "--overwrite"], capsys,
                       monkeypatch)  # a bad argument with --overwrite leaves the old calibration as it was
    assert code == 2 and "too small" in err
    assert json.loads((tmp_path / "cal" / "calibrate.json").read_text()) == first
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "cal"), "--overwrite"], capsys, monkeypatch)
    assert code == 0, err
    assert len(calls) == 56 and len((tmp_path / "cal" / "probes.jsonl").read_text().splitlines()) == 1 + 28

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "other")], capsys, monkeypatch)
    assert code == 2 and "already holds files of its own" in err and len(calls) == 56


def test_an_interrupted_calibration_resumes_from_its_probes_in_out(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(calibrator, "train", interrupted_after(12, calls))
    out = tmp_path / "cal"
    code, _, err = run([*FAKE_ARGS, "--out", str(out)], capsys, monkeypatch)
    assert code == 130 and "the same command resumes it" in err
    assert len((out / "probes.jsonl").read_text().splitlines()) == 1 + 12 and not (out / "calibrate.json").exists()

    code, _, err = run([*FAKE_ARGS, "--budget", "1200", "--out", str(out)], capsys, monkeypatch)
    assert code == 2 and "holds the probes of another calibration (started with budget_steps=1000, not 1200)" in err

    calls.clear()
    monkeypatch.setattr(calibrator, "train", surface(calls=calls))
    code, out_text, err = run([*FAKE_ARGS, "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err
    assert "resuming: 12 probes" in out_text and len(calls) == 28 - 12  # the 12 are not trained again
    resumed = json.loads((out / "calibrate.json").read_text())
    code, _, err = run([*FAKE_ARGS, "--out", str(tmp_path / "whole")], capsys, monkeypatch)
    whole = json.loads((tmp_path / "whole" / "calibrate.json").read_text())
    assert (resumed["eta_A"], resumed["gamma_eta_B"]) == (whole["eta_A"], whole["gamma_eta_B"])


# ---------------------------------------------------------------- any model: calibrate_fit


MLP = {"width": 32, "depth": 2, "n_eval": 64}


@pytest.mark.usefixtures("one_thread")
def test_calibrate_fit_on_a_module_is_the_task_calibration_and_gives_the_model_back_as_it_was():
    """The teacher-student MLP given as a module, its batches and its loss: every probe scores what the task path's
    probe of the same point scores (same weights, init seed and batch order), so the point is the same; the model
    comes back with its own weights, dtype and no adapter."""
    from loralpha import tasks

    task = tasks.build("teacher-student", seed=0, batch_size=32, **MLP)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    grid = {"xs": [1e-3, 1e-2, 1e-1], "ys": [1e-3, 1e-2, 1e-1]}
    found = loralpha.calibrate_fit(task.model, lambda seed: tasks.build("teacher-student", seed=seed, batch_size=32,
                                                                         **MLP).batches,
                                   task.loss, steps=120, rank=2, targets=["fc1", "fc2"], **grid)
    named = calibrate("teacher-student", steps=120, rank=2, batch_size=32, task_options=MLP, **grid)
    assert found.cost_steps <= 120 and found.task is None and found.budget_steps == 120
    for mine, theirs in zip(found.probes, named.probes, strict=True):
        assert (mine["x"], mine["y"], mine["steps"], mine["status"]) == (theirs["x"], theirs["y"], theirs["steps"],
                                                                         theirs["status"])
        assert mine["score"] == (None if theirs["score"] is None else pytest.approx(theirs["score"], rel=1e-5))
    assert (found.eta_A, found.gamma_eta_B, found.unknown) == (named.eta_A, named.gamma_eta_B, named.unknown)
    after = task.model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert not any("lora" in n for n, _ in task.model.named_modules())
    assert found.command.startswith("loralpha.fit(model, batches, loss, AdapterSpec(rule='lora-alpha', rank=2, coef=")


def test_calibrate_fit_takes_a_factory_and_a_list_and_refuses_bad_input_in_one_line():
    torch.manual_seed(0)
    data = [(torch.randn(8, 6), torch.randn(8, 2)) for _ in range(4)]
    built = []

    def make():
        built.append(1)
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))

    def mse(model, batch):
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    found = loralpha.calibrate_fit(make, data, mse, steps=40, rank=2, targets=["0", "2"], full_ft_lr=1e-3)
    assert built == [1] and found.cost_steps <= 40 and found.horizons["long"] is None  # 36 steps: the map alone
    assert "no check at a longer horizon" in found.certainty["summary"]
    for kwargs, message in [({"steps": 0}, "steps of the target run must be a positive integer"),
                            ({"budget_steps": 20}, "probe budget of 20 steps is too small"),
                            ({"targets": []}, "no target modules given"),
                            ({"lr": 1e-3}, "calibrate_fit sets lr itself"),
                            ({"colour": 1}, "unknown FitOptions field 'colour'"),
                            ({"model": 3}, "model must be a torch.nn.Module or a function that builds one"),
                            ({"batches": 3}, "batches must be a re-iterable of batches or a function of the seed")]:
        args = {"model": make, "batches": data, "steps": 40, "targets": ["0"], **kwargs}
        with pytest.raises(UsageError) as info:
            loralpha.calibrate_fit(args.pop("model"), args.pop("batches"), mse, rank=2, **args)
        assert message in str(info.value) and "\n" not in str(info.value)

"""The study protocol as library features: its statistics (against bench's decisive analysis on the committed
records, and against hand-computed values), bracketing a sweep axis (planned from made-up records, and run end to
end on teacher-student), and `loralpha report` on a bracketed store."""

import math
from pathlib import Path

import pytest
from conftest import run_study_cli

from bench.decisive import analysis
from bench.decisive import plan as decisive_plan
from loralpha.errors import UsageError
from loralpha.reporting.document import fmt_lr
from loralpha.studies import bracket
from loralpha.studies.protocol import eval_curve, forgiveness, interval, paired, plateau, verdict
from loralpha.sweep import Store, parse, trial_id

TINY = {"steps": 12, "batch_size": 32, "eval_every": 4, "task_options": {"width": 16, "depth": 2, "n_eval": 32}}


def spec_of(**bracket_section):
    return parse({"task": "teacher-student", "fixed": dict(TINY), "grid": {"rule": ["lora-alpha", "2rank"]},
                  "bracket": {"max_points": 5, "choose": "rel_mse", **bracket_section}})


# --- the statistics, against bench's on the committed records


def bench_rows(task):
    """(arm, state, seed records) of each arm of a committed decisive table, as bench's analysis reads them."""
    s = decisive_plan.settings(False)[task]
    records = decisive_plan.load(task, False)
    _, state = decisive_plan.plan(task, s, records)
    out = []
    for arm, st in state.items():
        seeds = [records.get(trial_id(decisive_plan.config(task, s, arm, st["lr"], seed))) if st["lr"] else None
                 for seed in decisive_plan.SEEDS]
        out.append((arm, st, seeds))
    return s, out


@pytest.mark.parametrize("task", ["sft-gemma", "tweets@1000"])
def test_the_statistics_give_exactly_what_the_decisive_analysis_gives_on_its_records(task):
    s, rows = bench_rows(task)
    untuned = {arm.targets: seeds for arm, _, seeds in rows if not arm.tuned}
    checked = {"interval": 0, "paired": 0, "forgiveness": 0, "plateau": 0}
    for arm, st, seeds in rows:
        for name in (s.select, s.report):
            values = [analysis._metric(r, name) for r in seeds]
            assert interval(values) == analysis.interval(values)
            checked["interval"] += interval(values) is not None and interval(values)["n"] > 1
        if arm.tuned and arm.targets in untuned:
            by_seed = {seed: analysis._metric(r, s.select) for seed, r in zip(decisive_plan.SEEDS, seeds)}
            ref = {seed: analysis._metric(r, s.select) for seed, r in zip(decisive_plan.SEEDS, untuned[arm.targets])}
            pairs = [(u, b) for u, b in zip(ref.values(), by_seed.values())]
            want = analysis.interval([u - b for u, b in pairs if u is not None and b is not None])
            assert paired(ref, by_seed) == want
            checked["paired"] += want is not None
            costs = {lr: decisive_plan.cost(r, s) if r is not None else None for lr, r in st["grid"].items()}
            assert forgiveness(costs) == analysis.forgiveness(st["grid"], s)
            checked["forgiveness"] += costs != {}
        curve = [(r["step"], r.get(s.select)) for r in (seeds[0] or {}).get("curve", [])]
        assert plateau(curve) == analysis.plateau(seeds[0], s)
        checked["plateau"] += plateau(curve) is not None
    assert all(checked.values()), checked  # every function met real values


# --- the statistics, by hand


def test_a_t_interval_is_the_closed_form_and_one_value_has_none():
    d = interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t(0.975, 2) = 4.302653
    assert d["mean"] == 2.0 and d["hi"] - 2.0 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert 2.0 - d["lo"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6) and d["n"] == 3
    assert interval([1.0, 2.0, 3.0], 0.90)["hi"] - 2.0 == pytest.approx(2.919986 / math.sqrt(3), rel=1e-6)
    assert interval([1.0])["lo"] is None and interval([None, math.nan]) is None


def test_paired_differences_pair_by_seed_and_skip_a_seed_either_arm_lacks():
    d = paired({0: 1.0, 1: 2.0, 2: 4.0, 3: 9.0}, {2: 1.0, 1: 1.0, 0: 0.5, 3: None})
    assert d["values"] == [0.5, 1.0, 3.0] and d["n"] == 3


def test_forgiveness_interpolates_in_log_x_and_says_when_it_reaches_an_end():
    costs = {1e-4: 1.2, 1e-3: 1.0, 1e-2: 1.04, 1e-1: math.inf, 1.0: None}
    f = forgiveness(costs)  # within 1.01: 1/20 of a decade down, 1/4 up
    assert f["decades"] == pytest.approx(0.05 + 0.25) and not f["open"] and f["within"] == pytest.approx(1.01)
    costs[1e-2] = 1.005  # within the limit: the range runs on to the diverged point, and stops there
    assert forgiveness(costs)["decades"] == pytest.approx(0.05 + 2) and not forgiveness(costs)["open"]
    assert forgiveness({1e-3: 1.0, 1e-2: 1.001})["open"] and forgiveness({1e-3: math.inf}) is None
    higher = forgiveness({1e-3: -1.0, 1e-2: -0.98})  # accuracy 1.0 and 0.98, negated: within 1% is ≥ 0.99
    assert higher["within"] == pytest.approx(-0.99) and higher["decades"] == pytest.approx(0.5) and higher["open"]


def test_the_budget_test_reads_the_last_quarter_between_evaluations():
    p = plateau([(0, 1.0), (50, 0.5), (75, 0.40), (100, 0.39)])
    assert (p["from_step"], p["to_step"]) == (75, 100) and p["gain"] == pytest.approx(0.025) and not p["holds"]
    p = plateau([(0, 1.0), (50, 0.5), (70, 0.40), (100, 0.394)])  # none at 75: read on the line from 70 to 100
    at_75 = 0.40 - 0.006 * 5 / 30
    assert p["between"] == [70, 100] and p["gain"] == pytest.approx((at_75 - 0.394) / at_75) and p["holds"]
    assert plateau([(0, 0.4), (75, 0.5), (100, 0.6)], higher_is_better=True)["gain"] == pytest.approx(0.2)
    assert plateau([(100, 1.0)]) is None and plateau([(90, 1.0), (100, 0.9)]) is None  # nothing at the mark


def test_verdicts_ties_inside_the_margin_better_or_worse_outside_zero_else_undecided():
    near = {0: 0.01, 1: 0.02, 2: 0.03}  # d: mean 0.02, s 0.01; 90% [0.00314, 0.03686]; 95% [-0.00484, 0.04484]
    zero = dict.fromkeys(near, 0.0)
    v = verdict(near, zero, "rel_mse", higher_is_better=False, delta=0.05)
    assert v["verdict"] == "ties" and v["metric"] == "rel_mse"
    assert v["ci90"] == pytest.approx([0.02 - 2.919986 * 0.01 / math.sqrt(3), 0.02 + 2.919986 * 0.01 / math.sqrt(3)])
    assert verdict(near, zero, "rel_mse", False, delta=0.03)["verdict"] == "undecided"  # 0.0369 > δ; 0 inside 95%
    assert verdict(near, zero, "rel_mse", False)["verdict"] == "undecided"
    far = {0: 0.10, 1: 0.11, 2: 0.12}  # 95% [0.075, 0.125]: excludes 0, and 90% [0.083, 0.117] exceeds δ = 0.05
    assert verdict(far, zero, "rel_mse", False, 0.05)["verdict"] == "worse"  # higher rel_mse
    assert verdict(far, zero, "accuracy", True, 0.05)["verdict"] == "better"  # higher accuracy
    assert verdict(zero, far, "accuracy", True, 0.05)["verdict"] == "worse"
    assert verdict({0: 0.01}, {0: 0.0}, "rel_mse", False, 0.05)["verdict"] == "undecided"  # one pair: no interval


# --- bracketing, planned from made-up records


def finish(records, trials, value_of, status="done"):
    for t in trials:
        v = value_of(t.config)
        records[t.id] = {"id": t.id, "status": status if v is not None else "diverged", "final_loss": 1.0,
                         "eval": {} if v is None else {"rel_mse": v}}


def test_each_group_starts_at_three_points_half_a_decade_apart_around_its_rules_default_eta():
    trials, groups = bracket.plan(spec_of(), {})
    assert [g.label for g in groups] == ["rule=lora-alpha", "rule=2rank"]
    assert [p.x for p in groups[0].points] == [1.58e-5, 5e-5, 1.58e-4]  # lora-alpha: teacher-student's full-FT η
    assert [p.x for p in groups[1].points] == [6.32e-5, 2e-4, 6.32e-4]  # 2rank: the usual LoRA η
    assert [(t.config.rule, t.config.lr, t.config.seed) for t in trials[:3]] == [
        ("lora-alpha", 1.58e-5, 0), ("lora-alpha", 5e-5, 0), ("lora-alpha", 1.58e-4, 0)]
    assert all(g.state == "growing" for g in groups) and all(t.metric == "rel_mse" for t in trials)
    per = bracket.plan(spec_of(start={"2rank": 1e-3}, step_decades=1), {})[1]
    assert [p.x for p in per[1].points] == [1e-4, 1e-3, 1e-2] and per[0].start == 5e-5


def test_the_grid_grows_beyond_the_best_until_a_worse_point_lies_on_both_sides_then_seeds_join_at_the_best():
    spec, records = spec_of(seeds_at_best=[1, 2]), {}
    optimum = {"lora-alpha": -3.3, "2rank": -3.2}  # log10 η of each rule's best

    def value(c):
        return (math.log10(c.lr) - optimum[c.rule]) ** 2 + 0.1

    rounds = 0
    while True:
        trials, groups = bracket.plan(spec, records)
        todo = [t for t in trials if t.id not in records]
        if not todo:
            break
        finish(records, todo, value)
        rounds += 1
    assert rounds > 2 and all(g.bracketed and g.state == "bracketed" for g in groups)
    assert [g.best.x for g in groups] == [5e-4, 6.32e-4] and len(groups[0].points) == 5 and len(groups[1].points) == 4
    assert sorted(groups[0].at_best) == [0, 1, 2]
    extra = {(t.config.rule, t.config.seed) for t in trials if t.config.seed}
    assert extra == {(r, s) for r in optimum for s in (1, 2)}


def test_a_diverged_point_is_worse_all_diverged_looks_lower_and_max_points_ends_unbracketed():
    spec, records = spec_of(seeds_at_best=[1]), {}
    trials, _ = bracket.plan(spec, records)
    finish(records, [t for t in trials if t.config.rule == "lora-alpha"],
           lambda c: None if c.lr > 1e-4 else 1.0 - c.lr * 1e3)  # best at 5e-5, diverged above
    finish(records, [t for t in trials if t.config.rule == "2rank"], lambda c: None)  # all diverged
    trials, groups = bracket.plan(spec, records)
    assert groups[0].bracketed and groups[0].best.x == 5e-5 and [t.config.seed for t in trials].count(1) == 1
    assert [p.x for p in groups[1].points][0] == 2e-5 and groups[1].best is None  # one lower
    while not groups[1].settled:  # better and better lower down: stops at max_points, unbracketed
        finish(records, [t for t in trials if t.id not in records], lambda c: c.lr * 1e3)
        trials, groups = bracket.plan(spec, records)
    assert len(groups[1].points) == 5 and not groups[1].bracketed and groups[1].state.startswith("unbracketed")
    assert groups[1].best.x == groups[1].points[0].x == 6.32e-6
    assert not any(t.config.rule == "2rank" and t.config.seed == 1 for t in trials)  # no seeds where unbracketed


def test_a_higher_is_better_metric_chooses_its_highest_point():
    spec, records = spec_of(choose={"metric": "rel_mse", "higher_is_better": True}), {}
    trials, _ = bracket.plan(spec, records)
    finish(records, trials, lambda c: -abs(math.log10(c.lr) - math.log10(5e-5)))
    groups = bracket.plan(spec, records)[1]
    assert groups[0].bracketed and groups[0].best.x == 5e-5


def test_an_unknown_metric_direction_is_one_line_naming_the_key():
    with pytest.raises(UsageError, match=r"higher_is_better: true or false") as e:
        bracket.plan(spec_of(choose="score"), {})
    assert "\n" not in str(e.value)


# --- end to end on teacher-student


def test_a_bracketed_sweep_runs_end_to_end_reruns_as_nothing_and_reports_its_optima(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bracket.yaml"
    path.write_text("task: teacher-student\n"
                    "fixed: {steps: 12, batch_size: 32, eval_every: 4,\n"
                    "        task_options: {width: 16, depth: 2, n_eval: 32}}\n"
                    "grid: {rule: [lora-alpha, 2rank]}\n"
                    "bracket: {axis: lr, start: {lora-alpha: 2e-4, 2rank: 5e-2}, max_points: 5, choose: rel_mse, "
                    "seeds_at_best: [1, 2], "
                    "report: [rel_mse, eval_loss], margin: {rel_mse: 0.05}}\n")
    store = tmp_path / "study" / "study.db"
    code, out, _ = run_study_cli(["sweep", str(path), "--store", str(store), "--workers", "2", "--threads", "1",
                                  "--no-progress"], capsys, monkeypatch)
    assert code == 0 and "round 1: 6 trials" in out and "round 3:" in out and "rule=lora-alpha" in out
    spec = parse(Store(store).get_meta("spec"))
    with Store(store) as s:
        records = {r["id"]: r for r in s.records()}
    trials, groups = bracket.plan(spec, records)
    assert all(g.settled for g in groups) and set(records) == {t.id for t in trials}
    for g in groups:
        assert g.bracketed or len(g.points) == 5
        if g.bracketed:
            assert sorted(g.at_best) == [0, 1, 2] and all(records[t]["status"] == "done" for t in g.at_best.values())

    result = bracket.run(spec, store, workers=2, threads=1, progress=False)  # a rerun: nothing left to train
    assert result["rounds"] == 0 and result["counts"]["done"] + result["counts"]["diverged"] == len(records)
    with Store(store) as s:
        assert {r["id"]: r["finished_at"] for r in s.records()} == {t: r["finished_at"] for t, r in records.items()}

    assert run_study_cli(["report", str(store)], capsys, monkeypatch)[0] == 0
    md = (tmp_path / "study" / "report.md").read_text()
    summary = bracket.summarize(spec, records, tmp_path / "study" / "runs")
    best = summary["best_group"]
    assert "## The optimum of η per group" in md and f"each group − the best group ({best})" in md
    for g in summary["groups"]:
        assert f"| {g['group']} | {fmt_lr(g['best'])} | " in md
    other = next(p for p in summary["paired"] if p["metric"] == "rel_mse")
    assert other["n"] == 3 and other["verdict"] in ("ties", "better", "worse", "undecided")  # both bracketed
    lo, hi = other["ci95"]
    assert f"| {other['group']} | rel_mse | 3 | {other['mean']:+.4g} | [{lo:+.3g}, {hi:+.3g}] |" in md
    assert eval_curve(tmp_path / "study" / "runs" / next(iter(records)), "rel_mse")[0][0] == 0


def test_the_example_spec_brackets_each_rule_from_its_default_eta():
    from loralpha.sweep import load

    spec = load(Path(__file__).parent.parent / "examples" / "teacher-student-bracket.yaml")
    trials, groups = bracket.plan(spec, {})
    assert [g.start for g in groups] == [5e-5, 2e-4, 2e-4] and len(trials) == 9
    assert spec.bracket.report_seeds == (0, 1, 2) and spec.bracket.margin == {"rel_mse": 0.01}

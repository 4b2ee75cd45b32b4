import json
import math
import re

import numpy as np
import pytest
from conftest import run_study_cli as run

from loralpha import scaling
from loralpha.errors import UsageError
from loralpha.studies import laws
from loralpha.studies.records import effective_lr

GRID = tuple(2.0 ** k for k in range(15))  # α = 1 … 16384


def record(rank, alpha, seed, loss, status="done", rule="fixed", metric=None, **config):
    """A store record of one trial; `loss` goes to final_loss, or to eval[metric] when metric is given."""
    cfg = {"task": "teacher-student", "rule": rule, "rank": rank, "alpha": alpha, "coef": scaling.PAPER_COEF,
           "lr": None, "seed": seed, **config}
    done = status == "done"
    return {"id": f"r{rank}-a{alpha:g}-s{seed}-{len(config)}", "config": cfg, "status": status,
            "final_loss": loss if done and metric is None else None,
            "eval": {metric: loss} if done and metric is not None else {}, "run_dir": None,
            "error": None if status != "failed" else "boom", "wall_time_s": 0.1}


def synthetic(c, p, ranks=(1, 4, 16, 64), seeds=6, noise=0.02, curvature=0.5, grid=GRID, rng=0,
              diverge_factor=50.0):
    """A study with loss 1 + curvature·(log α − log(c·r^p))² + noise; α above diverge_factor·α* diverges."""
    g = np.random.default_rng(rng)
    records = []
    for r in ranks:
        best = c * r ** p
        for a in grid:
            for s in range(seeds):
                if a > diverge_factor * best:
                    records.append(record(r, a, s, None, status="diverged"))
                else:
                    loss = 1 + curvature * math.log(a / best) ** 2 + noise * g.standard_normal()
                    records.append(record(r, a, s, loss))
    return records


@pytest.mark.parametrize("c, p, winner", [(40.0, 0.5, "p=0.5"), (3.0, 1.0, "p=1")])
def test_fit_recovers_c_and_p_within_the_bootstrap_intervals(c, p, winner):
    study = laws.fit(synthetic(c, p))
    assert all(o.interior and o.refined for o in study.optima)
    law = study.law
    assert law.c_ci[0] <= c <= law.c_ci[1] and law.p_ci[0] <= p <= law.p_ci[1]
    assert law.p_ci[1] - law.p_ci[0] < 0.1 and law.c_ci[1] / law.c_ci[0] < 1.2  # informative, not just wide
    assert law.bootstrap["method"] == "seeds" and law.bootstrap["valid"] == 1000
    fixed = [m for m in law.models if m["name"] != "free"]
    assert min(fixed, key=lambda m: m["loo_rmse"])["name"] == winner
    right = next(m for m in law.models if m["name"] == winner)
    assert all(m["loo_rmse"] > 10 * right["loo_rmse"] for m in fixed if m is not right)
    assert law.best_model in (winner, "free")  # free p may edge out the true fixed p on noise
    assert right["c"] == pytest.approx(c, rel=0.05)
    row = study.to_dict()["optima"][0]  # rank 1: the paper predicts 256
    assert row["paper"] == 256 and row["alpha_r"] == 1 and row["alpha_2r"] == 2
    assert row["ratio_to_paper"] == pytest.approx(c / 256, rel=0.1)


def test_fit_is_deterministic_under_its_seed():
    records = synthetic(40.0, 0.5, seeds=3)
    a, b = laws.fit(records, seed=3), laws.fit(records, seed=3)
    assert a.law.c_ci == b.law.c_ci and a.law.p_ci == b.law.p_ci


def test_parabola_refinement_finds_the_minimum_of_a_quadratic_exactly():
    u0 = math.log(37.3)
    xs = [1.0, 3.0, 10.0, 30.0, 55.0, 200.0, 1000.0]  # uneven in log α
    costs = [2.5 * (math.log(x) - u0) ** 2 + 1.0 for x in xs]
    found = laws.locate(xs, costs)
    assert found.refined and not found.edge and found.x_star == pytest.approx(37.3, rel=1e-12)
    records = [record(8, x, s, 2.5 * (math.log(x) - u0) ** 2 + 1.0) for x in xs for s in range(2)]
    (opt,) = laws.optimum(records)
    assert opt.x_star == pytest.approx(37.3, rel=1e-12) and opt.grid_best == 30.0 and opt.seeds == 2


def test_a_parabola_that_does_not_open_upward_keeps_the_grid_point():
    assert laws.parabola_vertex([0.0, 1.0, 2.0], [1.0, 1.0, 1.0]) is None
    found = laws.locate([1.0, 2.0, 4.0], [1.0, 1.0, 1.0])  # flat: the first of equals, at the edge
    assert found.index == 0 and found.edge
    found = laws.locate([1.0, 2.0, 4.0, 8.0], [3.0, 1.0, 1.0, 3.0])
    assert found.refined and found.x_star == pytest.approx(math.sqrt(8.0))


@pytest.mark.parametrize("best, bound, sign", [(0.1, "upper", "≤"), (1e6, "lower", "≥")])
def test_edge_optima_are_flagged_as_bounds(best, bound, sign):
    records = [record(4, a, 0, (math.log(a) - math.log(best)) ** 2) for a in GRID]
    (opt,) = laws.optimum(records)
    assert opt.edge and opt.bound == bound and not opt.refined and not opt.interior
    assert opt.x_star == (GRID[0] if bound == "upper" else GRID[-1])
    assert opt.describe().startswith(sign)


def test_fewer_than_two_interior_ranks_give_no_power_law_and_say_why():
    records = synthetic(40.0, 0.5, ranks=(4,), seeds=2)
    records += [record(16, a, 0, (math.log(a) - math.log(1e6)) ** 2) for a in GRID]  # optimum beyond the grid
    study = laws.fit(records)
    assert study.law is None
    assert "interior optima at 2 or more ranks, found 1" in study.reason and "rank 16" in study.reason
    assert study.to_dict()["fit"] is None
    with pytest.raises(UsageError, match="found 1"):
        laws.power_law(study.optima)


def test_diverged_trials_count_as_worst_and_other_statuses_are_ignored():
    u0 = math.log(64.0)
    records = [record(4, a, s, (math.log(a) - u0) ** 2) for a in GRID[:12] for s in range(3)]
    (opt,) = laws.optimum(records)
    assert opt.x_star == pytest.approx(64.0) and opt.refined
    # one diverged seed at α = 64 makes the whole cell the worst; the neighbours then bracket a diverged cell
    records.append(record(4, 64.0, 3, None, status="diverged"))
    (opt,) = laws.optimum(records)
    assert opt.grid_best in (32.0, 128.0) and not opt.refined and not opt.edge
    cell = next(g for g in opt.grid if g["x"] == 64.0)
    assert cell["mean"] is None and cell["diverged"] == 1 and cell["n"] == 4
    # failed and pending trials never count, however good their loss would look
    records = records[:-1] + [record(4, 2.0, 0, -100.0, status="failed"), record(4, 2.0, 1, None, status="pending")]
    study = laws.fit(records)
    assert study.optima[0].x_star == pytest.approx(64.0)
    assert study.counts["ignored"] == 2 and study.counts["done"] == 36


def test_everything_diverged_at_a_rank():
    records = [record(2, a, 0, None, status="diverged") for a in GRID[:4]]
    (opt,) = laws.optimum(records)
    assert opt.x_star is None and opt.describe() == "all diverged" and not opt.interior


def test_higher_is_better_metrics_are_maximised():
    u0 = math.log(300.0)
    records = [record(8, a, s, 0.9 - 0.01 * (math.log(a) - u0) ** 2, metric="accuracy") for a in GRID for s in range(2)]
    (opt,) = laws.optimum(records, metric="accuracy")  # known to be higher-is-better
    assert opt.x_star == pytest.approx(300.0) and opt.best == pytest.approx(0.9 - 0.01 * math.log(256 / 300) ** 2)
    (low,) = laws.optimum(records, metric="accuracy", higher_is_better=False)
    assert low.edge  # minimising accuracy runs to the grid's edge
    renamed = [dict(r, eval={"score": r["eval"]["accuracy"]}) for r in records]
    with pytest.raises(UsageError, match="cannot tell whether a higher score is better"):
        laws.optimum(renamed, metric="score")
    (opt,) = laws.optimum(renamed, metric="score", higher_is_better=True)
    assert opt.x_star == pytest.approx(300.0)
    with pytest.raises(UsageError, match="reports metric 'f1'"):
        laws.optimum(records, metric="f1")


def test_alpha_is_the_effective_lora_alpha_of_the_rule():
    u0 = math.log(2 * 256.0)  # α* = 512 at rank 4 under lora-alpha: c = 256 ⇒ α = 256·√4 = 512
    records = [record(4, 16.0, 0, (math.log(c * 2) - u0) ** 2, rule="lora-alpha", coef=c) for c in GRID[2:14]]
    records.append(record(4, 16.0, 0, 0.0, rule="full"))  # no α: left out
    study = laws.fit(records)
    assert study.optima[0].x_star == pytest.approx(512.0) and study.counts["no_alpha"] == 1


def test_optimal_learning_rate_at_fixed_alpha():
    lrs = [1e-5 * 2 ** k for k in range(10)]
    records = []
    for r in (2, 8, 32):
        best = 1e-4 * r ** -0.5
        records += [record(r, 16.0, s, (math.log(lr / best)) ** 2 + 0.01 * s, lr=lr) for lr in lrs for s in range(2)]
    study = laws.fit(records, x="lr")
    assert [o.x_star for o in study.optima] == pytest.approx([1e-4 * r ** -0.5 for r in (2, 8, 32)])
    assert study.law.p == pytest.approx(-0.5) and study.law.c == pytest.approx(1e-4)
    assert all(o.other == 16.0 for o in study.optima) and study.references(study.optima[0]) is None
    # lr None is the rule's default: 5e-5 (teacher-student full-FT η) under lora-alpha, 2e-4 under fixed
    assert effective_lr({"task": "teacher-student", "rule": "lora-alpha", "lr": None}) == 5e-5
    assert effective_lr({"task": "teacher-student", "rule": "fixed", "lr": None}) == scaling.LORA_LR
    for task in ("sft", "sft-gemma"):  # every task's rate comes from the registry
        assert effective_lr({"task": task, "rule": "full", "lr": None}) == 2e-5
    # two α at one rank: ambiguous until one is picked
    mixed = records + [record(2, 32.0, 0, 0.5, lr=1e-4)]
    with pytest.raises(UsageError, match="rank 2 has trials at 2 values of alpha"):
        laws.fit(mixed, x="lr")
    assert laws.fit(mixed, x="lr", at=16.0).counts["other_filtered"] == 1


def test_one_seed_per_cell_resamples_ranks():
    study = laws.fit(synthetic(40.0, 0.5, ranks=(1, 2, 4, 8, 16, 32), seeds=1, noise=0.0))
    law = study.law
    assert law.bootstrap["method"] == "ranks" and law.c == pytest.approx(40.0) and law.p == pytest.approx(0.5)
    assert law.p_ci[0] <= 0.5 <= law.p_ci[1]
    two = laws.fit(synthetic(40.0, 0.5, ranks=(1, 16), seeds=1)).law
    assert two.c_ci is None and "no interval" in two.bootstrap["note"]
    assert next(m for m in two.models if m["name"] == "free")["loo_rmse"] is None  # free p needs 3 ranks


def test_bad_records_and_arguments():
    with pytest.raises(UsageError, match="no finished trials"):
        laws.fit([record(4, 16.0, 0, None, status="pending")])
    with pytest.raises(UsageError, match="x must be alpha or lr"):
        laws.fit(synthetic(40.0, 0.5, seeds=1), x="beta")
    mixed = [record(4, 16.0, 0, 1.0), record(4, 32.0, 0, 1.0, task="tweets")]
    with pytest.raises(UsageError, match="several tasks"):
        laws.fit(mixed)


def test_load_records_reads_json_and_jsonl(tmp_path):
    records = synthetic(40.0, 0.5, ranks=(1,), seeds=1)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    (tmp_path / "b.json").write_text(json.dumps(records))
    (tmp_path / "c.json").write_text(json.dumps({"records": records}))
    for name in ("a.jsonl", "b.json", "c.json"):
        assert laws.load_records(tmp_path / name) == records
    (tmp_path / "bad.jsonl").write_text('{"config": {}}\nnot json\n')
    (tmp_path / "x.csv").write_text("a,b\n")
    (tmp_path / "d.json").write_text('[{"status": "done"}]')
    for name, message in [("missing.jsonl", "does not exist"), ("bad.jsonl", "line 2 is not JSON"),
                          ("x.csv", "not .csv"), ("d.json", "does not hold trial records")]:
        with pytest.raises(UsageError, match=message):
            laws.load_records(tmp_path / name)


def test_load_records_reads_a_sweep_store(tmp_path):
    store_module = pytest.importorskip("loralpha.sweep.store")
    from loralpha.loop import TrainConfig
    from loralpha.sweep.spec import Trial

    store = store_module.Store(tmp_path / "study.db")
    configs = [TrainConfig(rule="fixed", rank=4, alpha=a, seed=0) for a in (8.0, 16.0, 32.0)]
    store.add([Trial(f"t{i}", c) for i, c in enumerate(configs)])
    for i, loss in enumerate((0.5, 0.2, 0.4)):
        store.finish(f"t{i}", {"status": "done", "final_loss": loss, "eval": {"rel_mse": loss}, "wall_time_s": 1.0})
    store.add([Trial("t3", TrainConfig(rule="fixed", rank=4, alpha=64.0))])  # pending
    store.close()
    records = laws.load_records(tmp_path / "study.db")
    assert len(records) == 4
    (opt,) = laws.optimum(records, metric="rel_mse")
    assert opt.grid_best == 16.0 and opt.refined


# ---------------------------------------------------------------- the CLI




def test_fit_command_prints_the_table_and_writes_fit_json(tmp_path, capsys, monkeypatch):
    path = tmp_path / "study.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in synthetic(40.0, 0.5, seeds=3)))
    code, out, err = run(["fit", str(path), "--resamples", "200"], capsys, monkeypatch)
    assert code == 0, err
    for text in ("α* per rank", "256·√r", "α = 2r", "held-out RMSE", "best by held-out error", "p=0.5 (∝ √r)"):
        assert text in out
    assert re.search(r"c = [\d.]+ \[[\d.]+, [\d.]+\],  p = 0\.\d+ \[0\.\d+, 0\.\d+\]", out)
    assert "512" in out and "128" in out  # 256·√4 and α = 2r at rank 64
    saved = json.loads((tmp_path / "fit.json").read_text())
    assert saved["x"] == "alpha" and saved["metric"] == "final_loss" and not saved["higher_is_better"]
    assert [o["rank"] for o in saved["optima"]] == [1, 4, 16, 64]
    assert saved["fit"]["p_ci"][0] <= 0.5 <= saved["fit"]["p_ci"][1]
    assert {m["name"] for m in saved["fit"]["models"]} == {"p=0", "p=0.5", "p=1", "free"}
    assert saved["counts"]["diverged"] > 0


def test_fit_command_says_what_is_missing(tmp_path, capsys, monkeypatch):
    path = tmp_path / "study.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in synthetic(40.0, 0.5, ranks=(4,), seeds=1)))
    code, out, err = run(["fit", str(path), "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 1 and "α* per rank" in out
    assert err.count("\n") == 1 and "no power-law fit: a power law needs interior optima at 2 or more ranks" in err
    assert json.loads((tmp_path / "o" / "fit.json").read_text())["fit"] is None


@pytest.mark.parametrize("content, args, message", [
    (None, [], "does not exist"),
    ("", [], "no finished trials (done or diverged) among 0 records"),
    ("records", ["--x", "beta"], "x must be alpha or lr"),
    ("records", ["--metric", "bogus"], "cannot tell whether a higher bogus is better"),
    ("records", ["--resamples", "0"], "resamples must be a positive integer"),
])
def test_fit_command_bad_input_is_one_line(tmp_path, capsys, monkeypatch, content, args, message):
    path = tmp_path / "study.jsonl"
    if content is not None:
        records = synthetic(40.0, 0.5, ranks=(1, 4), seeds=1) if content == "records" else []
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = run(["fit", str(path), *args], capsys, monkeypatch)
    assert code == 2 and message in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def lr_records():
    lrs = [1e-5 * 2 ** k for k in range(8)]
    return [record(r, 16.0, s, (math.log(lr / (1e-4 * r ** -0.5))) ** 2 + 0.01 * s, lr=lr)
            for r in (2, 8, 32) for lr in lrs for s in range(2)]


def test_fit_infers_the_swept_axis():
    assert laws.swept_axis(synthetic(40.0, 0.5, seeds=2)) == "alpha"
    assert laws.swept_axis(lr_records()) == "lr"
    coefs = [record(r, 16.0, 0, 1.0 / c, rule="lora-alpha", coef=c) for r in (2, 8) for c in (64.0, 256.0, 1024.0)]
    assert laws.swept_axis(coefs) == "alpha"  # c moves α = c·√r
    study = laws.fit(lr_records())
    assert study.x == "lr" and [o.x_star for o in study.optima] == pytest.approx([1e-4 * r ** -0.5 for r in (2, 8, 32)])
    both = lr_records() + [record(2, 32.0, 0, 0.5, lr=1e-4)]
    with pytest.raises(UsageError, match=r"vary in alpha, lr besides rank and seed; pick the axis to fit with "
                                         r"x='alpha' or x='lr'"):
        laws.fit(both)
    steps = synthetic(40.0, 0.5, seeds=1) + [record(4, 16.0, 0, 1.0, steps=50)]
    with pytest.raises(UsageError, match="vary in alpha, steps besides rank and seed"):
        laws.swept_axis(steps)
    with pytest.raises(UsageError, match="vary only in rank and seed"):
        laws.swept_axis([record(r, 16.0, s, 1.0) for r in (2, 4) for s in (0, 1)])


def test_fit_command_fits_an_lr_study_without_flags_and_names_the_flag_when_it_cannot(tmp_path, capsys, monkeypatch):
    path = tmp_path / "study.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lr_records()))
    code, out, err = run(["fit", str(path), "--resamples", "50"], capsys, monkeypatch)
    assert code == 0, err
    assert "η* per rank" in out and json.loads((tmp_path / "fit.json").read_text())["x"] == "lr"
    path.write_text("".join(json.dumps(r) + "\n" for r in lr_records() + [record(2, 32.0, 0, 0.5, lr=1e-4)]))
    code, _, err = run(["fit", str(path)], capsys, monkeypatch)
    assert code == 2 and "pick the axis to fit with --x alpha or --x lr" in err and err.count("\n") == 1

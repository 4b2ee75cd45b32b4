"""The calibration benchmark's reading of its records (bench/calibration/analysis.py): the verdict against the best
tuned rule's interval, the comparison rows it picks from the decisive table, the probes' share of the grid, and the
stored calibration.json being what the committed records give."""

import json
from pathlib import Path

import pytest

from bench.calibration import analysis
from bench.calibration import plan as calibration
from bench.calibration import tables as calibration_tables

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "bench" / "results"


def test_v1s_verdict_read_the_best_rules_interval_unpaired_and_is_kept_for_the_record():
    best = {"mean": 0.55, "lo": 0.52, "hi": 0.58}
    assert analysis.verdict(0.50, best)["said"] == "better than its interval"
    assert analysis.verdict(0.57, best) == {"said": "within its interval", "within": True, "beyond": 0.0}
    worse = analysis.verdict(0.60, best)
    assert not worse["within"] and worse["beyond"] == pytest.approx(0.02)
    assert worse["said"] == "worse: 0.02 above its upper end (3.4%)"
    assert analysis.verdict(0.5, {"mean": 0.5, "lo": None, "hi": None})["within"] is None


def _row(arm, rule, targets, tuned, lr, values, points=3):
    mean = sum(values) / len(values)
    grid = {f"{lr * 10 ** (k / 2):.3g}": {"status": "done"} for k in range(-1, points - 1)} if tuned else {}
    return {"arm": arm, "rule": rule, "targets": targets, "tuned": tuned, "lr": lr, "grid": grid,
            "select": {"mean": mean, "lo": mean - 0.01, "hi": mean + 0.01, "n": len(values), "values": values}}


def test_a_table_is_compared_with_its_own_targets_rows_and_full_model(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "OUT", tmp_path / "calibration")
    monkeypatch.setattr(analysis, "grid_steps", lambda name, quick: 4000)  # (read from the records: next test)
    d = calibration.where("tweets@1000 (qv)", False)
    d.mkdir(parents=True)
    cal = {"eta_A": 1e-3, "gamma_eta_B": 4e-3, "settings": {"lora-alpha": {"coef": 11.31, "lr": 1e-3}},
           "command": "loralpha train ...", "horizons": {"short": 85, "long": 255, "target": 1000}, "cost_steps": 2975,
           "budget_steps": 3000, "wall_time_s": 1.0, "certainty": {"summary": "sure enough"}}
    (d / "calibration.json").write_text(json.dumps(cal))
    for seed, v in enumerate([0.60, 0.61, 0.59]):
        (d / f"s{seed}.json").write_text(json.dumps({"config": {"seed": seed}, "status": "done",
                                                     "eval": {"eval_loss": v}}))
    decisive = {"tweets@1000": {"task": "tweets", "record_ids": ["r0", "r1", "r2"], "rows": [
        _row("rank", "rank", "all", True, 2e-3, [0.50, 0.50, 0.50]),  # another target choice: not compared
        _row("2rank (qv)", "2rank", "qv", True, 2e-3, [0.595, 0.60, 0.59]),
        _row("lora-alpha (qv)", "lora-alpha", "qv", True, 2e-4, [0.62, 0.62, 0.62]),
        _row("full-model", "full-model", "all", True, 6.32e-5, [0.55, 0.56, 0.54], 4),  # every weight: both choices
        _row("lora-alpha untuned", "lora-alpha", "all", False, 2e-5, [0.60, 0.60, 0.60]),
        _row("lora-alpha untuned (qv)", "lora-alpha", "qv", False, 2e-5, [0.70, 0.71, 0.69])]}}
    t = analysis.summarize("tweets@1000 (qv)", decisive, quick=False)
    assert t["state"] == "complete" and t["held_out"] and t["seeds"]["mean"] == pytest.approx(0.60)
    assert t["best"]["arm"] == "full-model" and t["best_lora"]["arm"] == "2rank (qv)"
    assert t["paper"]["arm"] == "lora-alpha untuned (qv)"
    assert t["grid_steps"] == 4000 and t["cost_share"] == pytest.approx(2975 / 4000)
    assert t["v1"]["best"]["said"] == "worse: 0.04 above its upper end (7.1%)"  # 0.60 against 0.54 … 0.56, unpaired
    assert t["paired_vs_best"]["values"] == pytest.approx([0.05, 0.05, 0.05])
    assert t["verdict"]["arm"] == "full-model" and t["verdict"]["verdict"] == "worse"  # paired, v2's word
    assert t["v1"]["best_lora"]["said"] == "within its interval"  # v1: 0.60 inside 2rank (qv)'s 0.585 … 0.605
    assert t["paired_vs_best_lora"]["values"] == pytest.approx([0.005, 0.01, 0.0])
    words = {a["arm"]: a["verdict"] for a in t["against"]}
    assert words == {"2rank (qv)": "undecided", "lora-alpha (qv)": "undecided", "full-model": "worse",
                     "lora-alpha untuned (qv)": "better"}  # v1 declared no margin: no "ties", no "within"
    # the cost against what a user would otherwise run: one rule's seed-0 η sweep (3 or 4 points of 1000 steps)
    assert t["sweep_steps"] == {"2rank (qv)": 3000, "lora-alpha (qv)": 3000, "full-model": 4000}
    assert t["cost_vs_sweep"]["full-model"] == pytest.approx(2975 / 4000) and t["cost_runs"] == pytest.approx(2.975)
    assert t["paired_vs_paper"]["values"] == pytest.approx([-0.1, -0.1, -0.1])  # against untuned LoRA-α on qv
    assert [m["label"] for m in t["marks"]] == ["2rank (qv) (tuned, η = 0.002)", "lora-alpha (qv) (tuned, η = 0.0002)",
                                                "lora-alpha untuned (c = 256)"]
    line = next(x for x in calibration_tables.calibration({"calibration": {"tables": {"tweets@1000 (qv)": t}}},
                                                          RESULTS)
                if x.startswith("| tweets@1000 (qv) (held out) |"))
    assert "(0.001, 0.004): LoRA-α c = 11.31, η = 0.001 | 0.6 [0.5752, 0.6248] | full-model at η = 6.32e-05:" in line
    assert "| +0.05 [+0.05, +0.05] worse | 74%–99% | 2.98 | 2975 / 4000 = 74.4% |" in line
    assert "within" not in "\n".join(calibration_tables.calibration({"calibration": {"tables": {"q": t}}}, RESULTS))


def test_the_grid_cost_counts_the_tables_own_trials_not_those_of_the_folder_it_shares():
    folder = RESULTS / "decisive" / "tweets"
    if not folder.is_dir():
        pytest.skip("no decisive tweets records stored")
    steps = [json.loads(p.read_text())["config"]["steps"] for p in folder.glob("*.json")]
    at_1000 = sum(n for n in steps if n in (1000, 2000))  # tweets@1000's budget and its longer one
    assert analysis.grid_steps("tweets@1000", False) == at_1000 < sum(steps)  # tweets (500 steps) shares the folder
    assert analysis.grid_steps("tweets@1000 (qv)", False) == at_1000  # the qv rows are that table's too


def test_a_table_without_its_seeds_is_pending(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "OUT", tmp_path / "calibration")
    t = analysis.summarize("sft-gemma", {}, quick=False)
    assert t["state"] == "not started" and "calibration" not in t
    d = calibration.where("sft-gemma", False)
    d.mkdir(parents=True)
    (d / "probes.jsonl").write_text('{"stage": "map"}\n{"stage": "map"}\n')
    assert analysis.summarize("sft-gemma", {}, quick=False)["state"] == "calibrating"


def test_the_stored_calibration_tables_are_what_the_committed_records_give():
    # (the committed results only: a smoke run's, in quick/, is not kept and reads a decisive smoke table that may be
    # written after it)
    path = RESULTS / "calibration.json"
    if not path.is_file():
        pytest.skip("no calibration results stored")
    stored = json.loads(path.read_text())["tables"]
    decisive = json.loads((RESULTS / "decisive.json").read_text())["tasks"]
    for name, kept in stored.items():
        fresh = json.loads(json.dumps(analysis.summarize(name, decisive, False), default=float))
        assert fresh == kept, f"{name}: rerun python -m bench.calibration.run --render && python -m bench.render"


def test_the_stored_calibrator_is_said_paired_with_v2s_words_and_its_cost_against_one_rules_sweep():
    path = RESULTS / "calibration.json"
    if not path.is_file():
        pytest.skip("no calibration results stored")
    from loralpha.studies import protocol

    decisive = json.loads((RESULTS / "decisive.json").read_text())["tasks"]
    for name, t in json.loads(path.read_text())["tables"].items():
        if t.get("state") != "complete":
            continue
        rows = {r["arm"]: r for r in decisive[t["decisive"]]["rows"]}
        mine = dict(enumerate(t["seeds"]["values"]))
        for a, late in zip(t["against"], t["against_1_2"]):  # recomputed from the two tables' seed values
            theirs = dict(enumerate(rows[a["arm"]]["select"]["values"]))
            assert a["verdict"] == protocol.verdict(mine, theirs, t["metric"], False)["verdict"], (name, a["arm"])
            assert late["mean"] == pytest.approx(sum(mine[k] - theirs[k] for k in (1, 2)) / 2), (name, a["arm"])
        for arm, share in t["cost_vs_sweep"].items():  # probe steps ÷ (seed-0 grid points × the table's steps)
            points = sum(g["status"] is not None for g in rows[arm]["grid"].values())
            assert share == pytest.approx(t["calibration"]["cost_steps"] / (points * t["steps"])), (name, arm)
    said = [(ROOT / "README.md").read_text(), (ROOT / "docs" / "calibrate.md").read_text(),
            (ROOT / "BENCHMARKS.md").read_text().split("## 9. ")[1]]
    assert not any("within its interval" in text.split("### Criteria changed")[0] for text in said)
    tweets = json.loads(path.read_text())["tables"].get("tweets@1000")
    if tweets and tweets.get("against"):  # behind 2rank, paired: worse (v1 said "within" the best rule's interval)
        a = next(a for a in tweets["against"] if a["arm"] == "2rank")
        assert a["verdict"] == "worse"
        assert f"| 2rank | {a['mean']:+.3g} [{a['ci95'][0]:+.3g}, {a['ci95'][1]:+.3g}] worse |" in said[2]

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


def test_the_verdict_reads_the_best_rules_interval_lower_is_better():
    best = {"mean": 0.55, "lo": 0.52, "hi": 0.58}
    assert analysis.verdict(0.50, best)["said"] == "better than its interval"
    assert analysis.verdict(0.57, best) == {"said": "within its interval", "within": True, "beyond": 0.0}
    worse = analysis.verdict(0.60, best)
    assert not worse["within"] and worse["beyond"] == pytest.approx(0.02)
    assert worse["said"] == "worse: 0.02 above its upper end (3.4%)"
    assert analysis.verdict(0.5, {"mean": 0.5, "lo": None, "hi": None})["within"] is None


def _row(arm, rule, targets, tuned, lr, values):
    mean = sum(values) / len(values)
    return {"arm": arm, "rule": rule, "targets": targets, "tuned": tuned, "lr": lr,
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
        _row("full-model", "full-model", "all", True, 6.32e-5, [0.55, 0.56, 0.54]),  # every weight: both choices
        _row("lora-alpha untuned", "lora-alpha", "all", False, 2e-5, [0.60, 0.60, 0.60]),
        _row("lora-alpha untuned (qv)", "lora-alpha", "qv", False, 2e-5, [0.70, 0.71, 0.69])]}}
    t = analysis.summarize("tweets@1000 (qv)", decisive, quick=False)
    assert t["state"] == "complete" and t["held_out"] and t["seeds"]["mean"] == pytest.approx(0.60)
    assert t["best"]["arm"] == "full-model" and t["best_lora"]["arm"] == "2rank (qv)"
    assert t["paper"]["arm"] == "lora-alpha untuned (qv)"
    assert t["grid_steps"] == 4000 and t["cost_share"] == pytest.approx(2975 / 4000)
    assert t["verdict"]["said"] == "worse: 0.04 above its upper end (7.1%)"  # 0.60 against full-model: 0.54 … 0.56
    assert t["paired_vs_best"]["values"] == pytest.approx([0.05, 0.05, 0.05])
    assert t["verdict_lora"]["said"] == "within its interval"
    assert t["paired_vs_best_lora"]["values"] == pytest.approx([0.005, 0.01, 0.0])
    assert t["paired_vs_paper"]["values"] == pytest.approx([-0.1, -0.1, -0.1])  # against untuned LoRA-α on qv
    assert [m["label"] for m in t["marks"]] == ["2rank (qv) (tuned, η = 0.002)", "lora-alpha (qv) (tuned, η = 0.0002)",
                                                "lora-alpha untuned (c = 256)"]
    line = next(x for x in calibration_tables.calibration({"calibration": {"tables": {"tweets@1000 (qv)": t}}},
                                                          RESULTS)
                if x.startswith("| tweets@1000 (qv) (held out) |"))
    assert "(0.001, 0.004): LoRA-α c = 11.31, η = 0.001 | 0.6 [0.5752, 0.6248] | full-model at η = 6.32e-05:" in line
    assert "| 2975 / 4000 = 74.4% |" in line


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

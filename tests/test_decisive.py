"""The decisive benchmark's protocol (bench/decisive/plan.py) and analysis (bench/decisive/analysis.py) on
made-up records, and BENCHMARKS.md's decisive tables against the committed records."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from bench import records
from bench.decisive import analysis, criteria, figures
from bench.decisive import plan as protocol
from bench.decisive import run as decisive
from bench.decisive.plan import Arm, Setting
from loralpha.studies import protocol as protocol_stats
from loralpha.sweep import trial_id

BENCH = Path(__file__).parent.parent / "bench"

TASK = "teacher-student"
S = Setting(steps=10, batch_size=8, targets=None, starts={"2rank": 3}, evals=2, select="rel_mse", report="rel_mse")
ARM = Arm("2rank", "all", True, 3)
FULL_FT = 5e-5  # teacher-student's full-FT η


def record(c, value, status="done"):
    return {"id": trial_id(c), "config": {"rule": c.rule, "lr": c.lr, "seed": c.seed, "targets": c.targets},
            "status": status, "eval": {} if value is None else {"rel_mse": value}, "curve": [], "motion": []}


def fill(records, losses):
    """Seed-0 records of ARM at lattice points k -> value (None: diverged)."""
    for k, v in losses.items():
        c = protocol.config(TASK, S, ARM, protocol.lattice(k, TASK), 0)
        records[trial_id(c)] = record(c, v, "done" if v is not None else "diverged")


def wanted_points(records):
    """The seed-0 η of ARM's grid the plan wants (its convergence pair at the full-FT η aside)."""
    configs, state = protocol.plan(TASK, S, records)
    return sorted({c.lr for c in configs if c.rule == "2rank" and c.seed == 0} - {FULL_FT}), state[ARM], configs


def test_the_grid_starts_at_three_points_around_the_guess():
    lrs, state, _ = wanted_points({})
    assert lrs == [protocol.lattice(k, TASK) for k in (2, 3, 4)] and not state["bracketed"]


def test_a_best_point_at_an_end_grows_the_grid_that_way_one_point_at_a_time():
    records = {}
    fill(records, {2: 0.9, 3: 0.7, 4: 0.5})
    lrs, state, _ = wanted_points(records)
    assert lrs[-1] == protocol.lattice(5, TASK) and len(lrs) == 4 and not state["bracketed"]
    fill(records, {5: 0.6})  # worse than 4: the best (4) now has a worse point on both sides
    lrs, state, configs = wanted_points(records)
    assert state["bracketed"] and state["lr"] == protocol.lattice(4, TASK)
    assert sorted(c.seed for c in configs if c.rule == "2rank" and c.lr == state["lr"]) == [0, 1, 2]


def test_a_diverged_point_counts_as_worse_and_an_all_diverged_grid_looks_lower():
    records = {}
    fill(records, {2: 0.9, 3: 0.7, 4: None})
    _, state, _ = wanted_points(records)
    assert state["bracketed"] and state["lr"] == protocol.lattice(3, TASK)
    records = {}
    fill(records, {2: None, 3: None, 4: None})
    lrs, state, _ = wanted_points(records)
    assert lrs[0] == protocol.lattice(1, TASK) and not state["bracketed"] and state["lr"] is None


def test_the_best_tuned_baseline_runs_again_at_the_longer_budgets_before_the_seeds_are_spent():
    s = Setting(steps=10, batch_size=8, targets=None, starts={"2rank": 3, "rslora": 3}, evals=2, select="rel_mse",
                report="rel_mse", longer=(40,))
    rslora = Arm("rslora", "all", True, 3)
    records = {}

    def put(arm, k, seed, value):
        c = protocol.config(TASK, s, arm, protocol.lattice(k, TASK), seed)
        records[trial_id(c)] = record(c, value)

    def longer():
        return [(c.rule, c.lr, c.seed, c.steps, c.eval_every) for c in protocol.plan(TASK, s, records)[0]
                if c.steps != 10]

    for k, v in {2: 0.9, 3: 0.5, 4: 0.7}.items():
        put(ARM, k, 0, v)
    assert longer() == []  # rslora's grid is not bracketed yet: no best baseline to name
    for k, v in {2: 0.9, 3: 0.55, 4: 0.7}.items():
        put(rslora, k, 0, v)
    best = protocol.lattice(3, TASK)
    assert longer() == [("2rank", best, 0, 40, 20)]  # the best of the seed-0 grids, at once
    order = [(c.rule, c.seed, c.steps) for c in protocol.plan(TASK, s, records)[0]]
    assert order.index(("2rank", 0, 40)) < min(order.index((rule, seed, 10)) for rule in ("2rank", "rslora")
                                               for seed in (1, 2))  # before any seed is spent on this budget
    for seed in (1, 2):  # the seeds make rslora the best: its longer run takes 2rank's place
        put(ARM, 3, seed, 0.7)
        put(rslora, 3, seed, 0.55)
    assert longer() == [("rslora", best, 0, 40, 20)]


def test_a_table_at_another_budget_runs_its_task_and_shares_its_records_folder():
    configs, _ = protocol.plan(f"{TASK}@40", S, {})
    assert {c.task for c in configs} == {TASK}
    assert protocol.folder(f"{TASK}@40", quick=False) == protocol.folder(TASK, quick=False)
    assert protocol.lattice(0, f"{TASK}@40") == protocol.lattice(0, TASK) == FULL_FT


def test_the_untuned_arm_runs_three_seeds_at_the_full_ft_rate():
    s = Setting(steps=10, batch_size=8, targets=None, starts={}, select="rel_mse")
    configs, state = protocol.plan(TASK, s, {})
    assert [(c.rule, c.lr, c.seed) for c in configs] == [("lora-alpha", 5e-5, seed) for seed in (0, 1, 2)]


def test_2rank_also_runs_at_the_full_ft_rate_beside_untuned_lora_alpha_whatever_its_grid():
    configs, _ = protocol.plan(TASK, S, {})
    pair = [(c.rule, c.seed) for c in configs if c.lr == FULL_FT]
    assert ("2rank", 0) in pair and ("lora-alpha", 0) in pair
    assert FULL_FT not in [protocol.lattice(k, TASK) for k in (2, 3, 4)]  # 2rank's grid starts elsewhere


def test_forgiveness_interpolates_in_log_eta_and_says_when_it_reaches_an_end():
    grid = {1e-4: {"status": "done", "eval": {"rel_mse": 1.2}}, 1e-3: {"status": "done", "eval": {"rel_mse": 1.0}},
            1e-2: {"status": "done", "eval": {"rel_mse": 1.04}}}
    f = analysis.forgiveness(grid, S)
    # within 1.01: from 1e-3 down to where 1.0→1.2 crosses 1.01 (1/20 of a decade), up to 1/4 of a decade
    assert f["decades"] == pytest.approx(0.05 + 0.25) and not f["open"]
    grid[1e-2]["eval"]["rel_mse"] = 1.005
    assert analysis.forgiveness(grid, S)["open"]


def test_intervals_are_t_intervals_and_one_value_has_none():
    d = analysis.interval([1.0, 2.0, 3.0])
    assert d["mean"] == 2.0 and d["hi"] - 2.0 == pytest.approx(4.302653 * 1 / math.sqrt(3), rel=1e-5)
    assert analysis.interval([1.0])["lo"] is None and analysis.interval([None, math.nan]) is None


def test_the_budget_test_reads_the_last_quarter_of_the_curve():
    rec = {"curve": [{"step": 0, "rel_mse": 1.0}, {"step": 50, "rel_mse": 0.5}, {"step": 75, "rel_mse": 0.40},
                     {"step": 100, "rel_mse": 0.39}]}
    p = analysis.plateau(rec, S)
    assert (p["from_step"], p["to_step"]) == (75, 100) and p["gain"] == pytest.approx(0.025) and not p["holds"]
    rec["curve"][2:] = [{"step": 70, "rel_mse": 0.40}, {"step": 100, "rel_mse": 0.394}]  # none at 75: read between
    p = analysis.plateau(rec, S)
    at_75 = 0.40 - 0.006 * 5 / 30
    assert (p["from_step"], p["between"]) == (75, [70, 100]) and p["gain"] == pytest.approx((at_75 - 0.394) / at_75)
    assert p["holds"]  # 1.3%, where the evaluation at 70 alone would say 1.5%


def stored(quick):
    path = BENCH / "results" / ("quick" if quick else "") / "decisive.json"
    return json.loads(path.read_text())["tasks"] if path.is_file() else {}


@pytest.mark.parametrize("quick", [False, True])
def test_the_stored_decisive_tables_are_what_the_committed_records_give(quick):
    for task, kept in stored(quick).items():  # (records that landed after the rendering wait for the next one)
        ids = set(kept["record_ids"])
        assert set(protocol.load(task, quick, ids)) == ids, f"{task}: a rendered record is missing"
        fresh = json.loads(json.dumps(analysis.table(task, quick=quick, only=ids), default=float))
        assert fresh == kept, f"{task}: rerun python -m bench.decisive.run --render && python -m bench.render"


@pytest.mark.parametrize("quick", [False, True])
def test_no_table_marked_complete_has_an_optimum_at_the_edge_of_its_grid(quick):
    tables = stored(quick)
    assert quick or not tables or "## 7. The decisive benchmark" in (BENCH.parent / "BENCHMARKS.md").read_text()
    for task, t in tables.items():
        if not t["complete"]:
            continue
        for row in (r for r in t["rows"] if r["tuned"]):
            lrs = sorted(float(x) for x in row["grid"])
            assert lrs[0] < row["lr"] < lrs[-1], (task, row["arm"])
            best = row["grid"][f"{row['lr']:.3g}"][t["select"]]
            below = max(x for x in lrs if x < row["lr"])
            above = min(x for x in lrs if x > row["lr"])
            for x in (below, above):
                other = row["grid"][f"{x:.3g}"][t["select"]]
                assert other is None or other > best, (task, row["arm"], x)


@pytest.mark.parametrize("quick", [False, True])
def test_an_incomplete_table_gives_no_verdict_but_pending(quick):
    for task, t in stored(quick).items():
        verdicts = {v["verdict"] for v in t["verdicts"]}
        if not t["complete"]:
            assert verdicts <= {"pending", "not tested"}, task
        else:  # complete: every baseline has its 3 paired seeds, so the first claim has its verdict
            assert next(v for v in t["verdicts"] if v["claim"] == "untuned")["verdict"] != "pending", task


def test_no_trial_starts_after_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(decisive, "WORK", tmp_path / "work")
    task, s = "teacher-student", protocol.QUICK["teacher-student"]
    assert protocol.plan(task, s, {})[0]  # there is something to run
    decisive.run([task], quick=True, workers=2, deadline_min=0)
    assert protocol.load(task, quick=True) == {} and not (tmp_path / "work").exists()


def test_a_record_states_the_threads_its_trial_ran_on_not_the_runners(tmp_path):
    import torch

    run = tmp_path / "run"
    run.mkdir()
    threads = torch.get_num_threads() + 3  # what a sweep worker was given, unlike this process
    (run / "config.json").write_text(json.dumps({"runtime": {"device": "cuda", "threads": threads}}))
    trial = {"id": "t", "config": {}, "status": "done", "run_dir": str(run)}
    rec = records.record_of(trial)
    assert (rec["device"], rec["machine"]["torch_threads"]) == ("cuda", threads)


def test_a_tables_compute_counts_its_own_trials_not_those_of_the_folder_it_shares(tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "RESULTS", tmp_path)
    s = protocol.QUICK[TASK]
    monkeypatch.setitem(protocol.QUICK, f"{TASK}@24", replace(s, steps=24))
    c = protocol.config(TASK, s, Arm("2rank", "all", True, 3), protocol.lattice(3, TASK), 0)  # the 12-step table's
    out = protocol.folder(TASK, quick=True)
    out.mkdir(parents=True)
    (out / f"{trial_id(c)}.json").write_text(json.dumps({**record(c, 0.5), "wall_time_s": 100.0}))
    assert analysis.summarize(TASK, quick=True)["compute_s"] == 100.0
    other = analysis.summarize(f"{TASK}@24", quick=True)
    assert (other["compute_s"], other["trials_done"], other["devices"]) == (0, 0, [])


def test_a_tables_drift_verdict_reads_its_own_trials_not_those_of_the_folder_it_shares(tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "RESULTS", tmp_path)
    s = protocol.QUICK[TASK]
    monkeypatch.setitem(protocol.QUICK, f"{TASK}@24", replace(s, steps=24))
    out = protocol.folder(TASK, quick=True)
    out.mkdir(parents=True)
    lr = FULL_FT  # on lora-alpha's first grid, and 2rank's convergence pair
    for rule, k in (("lora-alpha", 1), ("2rank", 3)):  # two LoRA rules at one η, seed 0: the 12-step table's
        c = protocol.config(TASK, s, Arm(rule, "all", True, k), lr, 0)
        motion = [{"step": 12, "signal": 1e-3 * (2 if rule == "lora-alpha" else 1), "drift_ratio": 5.0,
                   "a_motion": 0.1, "b_norm": 0.1}]
        rec = {**record(c, 0.5), "motion": motion}
        rec["config"]["targets"] = c.targets
        (out / f"{trial_id(c)}.json").write_text(json.dumps(rec))

    def drift(table):
        t = analysis.summarize(table, quick=True)
        return next(v for v in analysis.verdicts(table, True, t) if v["claim"] == "drift")

    assert drift(TASK)["verdict"] == "holds"  # signal up, drift ratio flat
    assert drift(f"{TASK}@24")["verdict"] == "pending"  # none of its own trials has run


def test_the_drift_verdict_is_read_at_the_full_ft_eta_with_the_eta_most_rules_share_beside_it(tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "RESULTS", tmp_path)
    s = replace(protocol.QUICK[TASK], starts={**protocol.QUICK[TASK].starts, "rslora": 3})
    monkeypatch.setitem(protocol.QUICK, TASK, s)
    out = protocol.folder(TASK, quick=True)
    out.mkdir(parents=True)
    higher = protocol.lattice(2, TASK)  # on the first grids of lora-alpha, 2rank and rslora, above the full-FT η
    runs = [("lora-alpha", 1, FULL_FT, 2.0, 5.0), ("2rank", 3, FULL_FT, 1.0, 5.0),  # the paper's regime: holds
            ("lora-alpha", 1, higher, 0.5, 9.0), ("2rank", 3, higher, 1.0, 5.0),  # more rules, where a larger γ
            ("rslora", 3, higher, 0.8, 5.0)]  # has less signal: does not
    for rule, k, lr, signal, ratio in runs:
        c = protocol.config(TASK, s, Arm(rule, "all", True, k), lr, 0)
        rec = {**record(c, 0.5), "motion": [{"step": 12, "signal": 1e-3 * signal, "drift_ratio": ratio,
                                             "a_motion": 0.1, "b_norm": 0.1}]}
        rec["config"]["targets"] = c.targets
        (out / f"{trial_id(c)}.json").write_text(json.dumps(rec))
    t = analysis.summarize(TASK, quick=True)
    v = next(v for v in analysis.verdicts(TASK, True, t) if v["claim"] == "drift")
    assert v["verdict"] == "holds" and v["figure"].startswith(f"η = {FULL_FT:.3g},")
    assert f"(elsewhere, η = {higher:.3g}," in v["figure"] and v["figure"].endswith("does not)")


def test_a_tables_figure_draws_each_row_at_its_best_eta_and_the_best_baseline_at_each_budget(tmp_path, monkeypatch):
    s = Setting(steps=10, batch_size=8, targets=None, starts={"2rank": 3}, evals=2, select="rel_mse",
                report="rel_mse", longer=(40,))
    monkeypatch.setattr(protocol, "RESULTS", tmp_path)
    monkeypatch.setitem(protocol.QUICK, TASK, s)
    out = protocol.folder(TASK, quick=True)
    out.mkdir(parents=True)

    def put(c, value, status="done", motion=()):
        rec = {**record(c, value, status), "motion": list(motion),
               "curve": [{"step": 0, "rel_mse": 1.0}, {"step": c.steps, "rel_mse": value}]}
        (out / f"{trial_id(c)}.json").write_text(json.dumps(rec))

    best = protocol.lattice(3, TASK)
    for k, v in {2: 0.9, 3: 0.5, 4: None}.items():  # 2rank bracketed at k = 3 (k = 4 diverged)
        put(protocol.config(TASK, s, ARM, protocol.lattice(k, TASK), 0), v, "done" if v else "diverged",
            [{"step": 0, "a_motion": 0.0, "b_norm": 0.0}, {"step": 5, "a_motion": 0.1 * k, "b_norm": 0.2}])
    data = figures.series(TASK, quick=True)
    assert list(data["rows"]) == ["2rank"] and data["rows"]["2rank"]["lr"] == best
    assert data["rows"]["2rank"]["eval"] == [(0, 1.0), (10, 0.5)]
    assert data["rows"]["2rank"]["a_motion"] == [(5, 0.1 * 3)]  # the best η's run; a zero has no place on a log axis
    assert data["baseline"] == "2rank" and data["budgets"] == {10: [(0, 1.0), (10, 0.5)]}  # seed 0's best; no 40 yet
    for seed in (1, 2):
        put(protocol.config(TASK, s, ARM, best, seed), 0.5)
    put(protocol.config(TASK, s, ARM, best, 0, steps=40), 0.3)
    data = figures.series(TASK, quick=True)
    assert data["baseline"] == "2rank" and data["budgets"] == {10: [(0, 1.0), (10, 0.5)], 40: [(0, 1.0), (40, 0.3)]}
    assert figures.draw(TASK, quick=True) == figures.path_of(TASK, quick=True) and figures.path_of(TASK, True).is_file()


def test_every_stored_table_has_its_figure_linked_in_benchmarks():
    text = (BENCH.parent / "BENCHMARKS.md").read_text()
    for task in stored(False):
        path = figures.path_of(task, quick=False)
        assert path.is_file() and f"]({path.relative_to(BENCH.parent)})" in text, task


# ------------------------------------------------------------------ protocol v1's framing: criteria changed after
# the records existed (bench/decisive/criteria.py keeps the earlier rules), seeds 1–2 alone, v2's words


def test_the_budget_test_before_f606a72_read_the_nearest_evaluation_not_the_quarter_mark():
    curve = [(0, 1.0), (700, 0.60), (800, 0.58), (1000, 0.58)]
    old = criteria.plateau_nearest(curve)  # 750 is as near to 700 as to 800: the earlier one
    assert (old["from_step"], old["gain"]) == (700, pytest.approx(0.02 / 0.60)) and not old["holds"]
    now = protocol_stats.plateau(curve)
    assert now["from_step"] == 750 and now["gain"] == pytest.approx(0.01 / 0.59) and now["holds"]


def test_tweets_at_1000_steps_fails_its_budget_test_under_the_earlier_reading_and_says_so():
    t = stored(False).get("tweets@1000")
    if not t or not t["complete"]:
        pytest.skip("no complete tweets@1000 table stored")
    arm = next(a for a in protocol.SETTINGS["tweets@1000"].arms() if a.name == t["best_baseline"])
    s = protocol.SETTINGS["tweets@1000"]
    records = protocol.load("tweets@1000", False)
    runs = [records[trial_id(protocol.config("tweets@1000", s, arm, protocol.lattice(1, "tweets"), seed))]
            for seed in protocol.SEEDS]  # full-model at its best η, 6.32e-5 (lattice point 1)
    curves = [[(p["step"], p["eval_loss"]) for p in r["curve"]] for r in runs]
    nearest = [criteria.plateau_nearest(c)["gain"] for c in curves]
    now = [protocol_stats.plateau(c)["gain"] for c in curves]
    assert t["budget"]["holds"] and t["budget"]["gain"] == pytest.approx(now[0])
    assert not t["budget_nearest"]["holds"] and t["budget_nearest"]["gain"] == pytest.approx(nearest[0])
    assert t["budget_means"]["nearest"] == pytest.approx(sum(nearest) / 3)
    assert t["budget_means"]["interpolated"] == pytest.approx(sum(now) / 3) and sum(now) / 3 >= 0.02  # fails too
    text = (BENCH.parent / "BENCHMARKS.md").read_text()
    section = text[text.index("### tweets@1000"):text.index("### Verdicts")]
    assert f"improved {100 * nearest[0]:.2f}%: the test **fails**" in section
    row = next(line for line in text.splitlines() if line.startswith("| budget | f606a72 |"))
    assert f"tweets@1000: full-model seed 0 {100 * nearest[0]:.2f}% from step 700, **fails**" in row
    assert f"3 seeds' mean {100 * sum(now) / 3:.2f}%, ≥ 2%" in row


def _base(pairs):
    """Made-up baseline rows: arm -> the paired differences untuned − rule of seeds 0, 1, 2."""
    rows = []
    for arm, d in pairs.items():
        zero = {k: 0.0 for k in protocol.SEEDS}
        diff = dict(zip(protocol.SEEDS, d))
        late = {k: diff[k] for k in protocol.SEEDS[1:]}
        rows.append({"arm": arm, "paired_select": protocol_stats.paired(diff, zero),
                     "word_select": protocol_stats.verdict(diff, zero, "eval_loss", False)["verdict"],
                     "seeds_1_2": {"paired_select": protocol_stats.paired(late, {k: 0.0 for k in late}),
                                   "word_select": protocol_stats.verdict(late, {k: 0.0 for k in late}, "eval_loss",
                                                                         False)["verdict"]}})
    return rows


def test_an_interval_that_contains_0_is_undecided_not_a_tie_and_the_claim_does_not_hold_on_it():
    base = _base({"rank": [0.01, -0.01, 0.005], "2rank": [-0.02, 0.01, 0.0]})  # both intervals contain 0
    v = analysis.untuned_said(base, "select", "eval_loss", False)
    assert v["v1"]["verdict"] == "holds" and "tied with 2 of 2" in v["v1"]["figure"]  # v1: "tied", so "holds"
    assert v["verdict"] == "undecided" and "undecided on 2 of 2" in v["figure"]  # no margin δ: no tie
    base = _base({"rank": [0.03, 0.031, 0.029], "2rank": [-0.02, 0.01, 0.0]})
    assert analysis.untuned_said(base, "select", "eval_loss", False)["verdict"] == "does not"  # v1: partly
    base = _base({"rank": [-0.03, -0.031, -0.029], "2rank": [-0.02, -0.021, -0.019]})
    assert analysis.untuned_said(base, "select", "eval_loss", False)["verdict"] == "holds"  # beaten, each


def test_the_stored_tables_give_each_paired_difference_on_seeds_1_and_2_alone_and_v2s_words():
    for task, t in stored(False).items():
        for r in (r for r in t["rows"] if r.get("paired_select") and r["paired_select"]["n"] == 3):
            d = r["paired_select"]["values"]
            late = r["seeds_1_2"]["paired_select"]
            assert late["values"] == d[1:] and late["mean"] == pytest.approx(sum(d[1:]) / 2), (task, r["arm"])
            lo, hi = r["paired_select"]["lo"], r["paired_select"]["hi"]
            assert r["word_select"] == ("worse" if lo > 0 else "better" if hi < 0 else "undecided"), (task, r["arm"])
    t = stored(False).get("tweets@1000")
    if t and t["complete"]:  # the largest gap, 3 seeds → seeds 1–2 alone, in the verdict and in README
        full = next(r for r in t["rows"] if r["arm"] == "full-model")
        v = next(v for v in t["verdicts"] if v["claim"] == "untuned")
        assert f"{full['paired_select']['mean']:+.3g} [" in v["figure"]
        assert f"{full['seeds_1_2']['paired_select']['mean']:+.3g} [" in v["figure"]
        readme = (BENCH.parent / "README.md").read_text()
        assert (f"{full['paired_select']['mean']:+.3g} → {full['seeds_1_2']['paired_select']['mean']:+.3g} "
                "(vs full-model) on tweets@1000") in readme


def test_every_tweets_verdict_names_its_metric_and_is_said_by_accuracy_too():
    for task, t in stored(False).items():
        for v in t["verdicts"]:
            if v["claim"] in ("untuned", "faster", "search") and v["verdict"] != "pending":
                assert v["metric"] == t["select"] and f"by {t['select']}" in v["figure"], (task, v["claim"])
                if t["report"] != t["select"]:
                    assert v["by_report"]["metric"] == t["report"], (task, v["claim"])
                    assert f"by {t['report']}" in v["by_report"]["figure"], (task, v["claim"])


def test_a_drift_ratio_that_rises_with_gamma_means_the_claim_does_not_hold_whatever_the_signal_did(tmp_path,
                                                                                                   monkeypatch):
    monkeypatch.setattr(protocol, "RESULTS", tmp_path)
    s = protocol.QUICK[TASK]
    out = protocol.folder(TASK, quick=True)
    out.mkdir(parents=True)
    for rule, k, signal, ratio in (("lora-alpha", 1, 2.0, 6.5), ("2rank", 3, 1.0, 5.0)):  # signal up, ratio ×1.3
        c = protocol.config(TASK, s, Arm(rule, "all", True, k), FULL_FT, 0)
        rec = {**record(c, 0.5), "motion": [{"step": 12, "signal": 1e-3 * signal, "drift_ratio": ratio,
                                             "a_motion": 0.1, "b_norm": 0.1}]}
        rec["config"]["targets"] = c.targets
        (out / f"{trial_id(c)}.json").write_text(json.dumps(rec))
    t = analysis.summarize(TASK, quick=True)
    v = next(v for v in analysis.verdicts(TASK, True, t) if v["claim"] == "drift")
    assert v["verdict"] == "does not" and "(×1.30)" in v["figure"]
    assert v["v1"]["verdict"] == "partly"  # v1's rule, kept for the table of changed criteria

"""The tuning frontier's criteria (bench/frontier/plan.py and specs), fixed before its trials: the recipes as their
sources write them, the splits and seeds that choose and report, the budget test's reading, the oracle and a
sweep's cost; and no choice reads the test split (poisoned test metrics change no choice)."""

import math
import random

import pytest

from bench.frontier import plan as frontier
from loralpha import scaling
from loralpha.studies import bracket


def test_recipes_are_written_as_their_sources_write_them():
    alpha = {r.name: scaling.lora_alpha(r.rule, 8, alpha=r.alpha or scaling.DEFAULT_ALPHA) for r in frontier.RECIPES}
    assert alpha == pytest.approx({"PEFT + Trainer defaults": 8, "unsloth": 8, "LLaMA-Factory": 16, "torchtune": 16,
                                   "LoRA Without Regret": 32, "LoRA-α (paper)": 256 * math.sqrt(8)})
    eta = {r.name: r.eta("sft-gemma") for r in frontier.RECIPES}
    assert eta == pytest.approx({"PEFT + Trainer defaults": 5e-5, "unsloth": 2e-4, "LLaMA-Factory": 1e-4,
                                 "torchtune": 3e-4, "LoRA Without Regret": 2e-4, "LoRA-α (paper)": 2e-5})
    config = frontier.recipe_config("teacher-student", frontier.RECIPES[0], seed=1)
    assert (config.rule, config.alpha, config.lr, config.rank, config.steps) == ("fixed", 8, 5e-5, 8, 3000)


@pytest.mark.parametrize("task", frontier.ORDER)
def test_each_spec_chooses_on_validation_at_seed_0_and_reports_on_test_at_seeds_1_to_3(task):
    s = frontier.spec(task)
    b = s.bracket
    assert (b.choose, b.choose_seeds, b.report_seeds) == (frontier.CHOOSE, (frontier.CHOOSE_SEED,),
                                                          frontier.REPORT_SEEDS)
    assert not b.choose.startswith("test:") and all(m.startswith("test:") for m in b.report)
    assert set(b.margin) == set(b.report) and all(d > 0 for d in b.margin.values())  # δ declared for each
    assert s.fixed["task_options"]["n_test"] > 0 and s.fixed["rank"] == 8
    assert set(s.grid["rule"]) == {*frontier.ORACLE_RULES, *frontier.SWEEPS, frontier.REFERENCE}
    steps, every = s.fixed["steps"], s.fixed["eval_every"]
    assert (steps * 3 // 4) % every == 0 and steps * 3 % 4 == 0  # the ¾ mark is an evaluation step
    assert (b.step_decades, b.first_points, b.max_points) == (0.5, 3, 8)


def test_a_sweep_starts_at_the_rules_usual_eta():
    groups = bracket.plan(frontier.spec("tweets"), {})[1]
    assert {g.values["rule"]: g.start for g in groups} == {"lora-alpha": 2e-5, "full-model": 2e-5, "rank": 2e-4,
                                                          "2rank": 2e-4, "rslora": 2e-4, "loraplus": 2e-4}


def curve(at_mark, at_end, steps=160):
    return {0: 3.0, steps * 3 // 4: at_mark, steps: at_end}


def test_the_budget_test_reads_the_mean_of_the_seeds_at_the_three_quarter_mark_and_the_end():
    holds = frontier.budget_test([curve(2.00, 1.97), curve(2.10, 2.06)], 160)  # mean 2.05 → 2.015: 1.71%
    assert holds["holds"] and holds["improvement"] == pytest.approx(0.035 / 2.05) and holds["mark"] == 120
    fails = frontier.budget_test([curve(2.00, 1.95), curve(2.10, 2.06)], 160)  # 2.05 → 2.005: 2.20%
    assert fails["holds"] is False and fails["improvement"] == pytest.approx(0.045 / 2.05)
    up = frontier.budget_test([curve(0.70, 0.72)], 160, higher_is_better=True)  # accuracy: +2.86%
    assert up["holds"] is False and up["improvement"] == pytest.approx(0.02 / 0.70)
    # no evaluation at the mark: nothing is interpolated, the test cannot be read
    assert frontier.budget_test([{0: 3.0, 100: 2.0, 160: 1.99}], 160)["holds"] is None


def group(rule, state, best_cost, points=("done", "done", "done")):
    return {"values": {"rule": rule}, "state": state, "best_cost": best_cost,
            "points": [{"status": s} for s in points]}


def test_the_oracle_is_the_best_bracketed_lora_setting_once_every_lora_rule_is_settled():
    groups = [group("lora-alpha", "bracketed", 2.45), group("rank", "bracketed", 2.43),
              group("2rank", "bracketed", 2.44), group("rslora", "unbracketed", 2.42),
              group("loraplus", "bracketed", 2.44), group("full-model", "bracketed", 2.40)]
    assert frontier.oracle(groups)["values"]["rule"] == "rslora"  # full-model is the reference, not the oracle
    groups[1]["state"] = "growing"
    assert frontier.oracle(groups) is None
    assert frontier.sweep_cost(group("2rank", "bracketed", 1.0, ("done", "diverged", "done", "pending"))) == 3


def fake_records(task, poison=None):
    """Records for every trial the frontier plans, round after round until nothing new is planned: validation
    eval_loss a parabola in log η (minimum at 10^-3.6 plus a rule's offset), test metrics from `poison` (or the
    validation value plus noise)."""
    rng = random.Random(0)
    records = {}
    while True:
        new = [t for t in frontier.planned(task, records) if t.id not in records]
        if not new:
            return records
        for t in new:
            c = t.config
            x = math.log10(c.lr) + 3.6 + 0.3 * ("rank" in c.rule) - 0.2 * (c.rule == "full-model")
            valid = 2.4 + 0.05 * x * x + 0.001 * c.seed
            test = valid + rng.gauss(0, 0.01) if poison is None else poison(rng)
            records[t.id] = {"id": t.id, "config": c, "status": "done",
                             "eval": {"eval_loss": valid, "test:eval_loss": test}}


def test_no_choice_reads_the_test_split():
    task = "sft-gemma"
    clean = fake_records(task)
    poisoned = fake_records(task, poison=lambda rng: rng.uniform(-100, 100))
    assert set(clean) == set(poisoned)  # the same trials planned, round after round
    s = frontier.spec(task)
    a, b = bracket.summarize(s, clean), bracket.summarize(s, poisoned)
    assert [(g["group"], g["best"], g["state"]) for g in a["groups"]] == \
           [(g["group"], g["best"], g["state"]) for g in b["groups"]]
    assert frontier.oracle(a["groups"])["group"] == frontier.oracle(b["groups"])["group"]
    assert a["groups"][0]["report"] != b["groups"][0]["report"]  # while the reported figures do move


def test_no_reported_figure_reads_the_validation_split():
    task = "sft-gemma"
    records = fake_records(task)
    s = frontier.spec(task)
    before = bracket.summarize(s, records)
    for rec in records.values():  # the reporting seeds' validation changes; their choice stays made at seed 0
        if rec["config"].seed in frontier.REPORT_SEEDS:
            rec["eval"]["eval_loss"] += 7.0
    after = bracket.summarize(s, records)
    assert [g["report"] for g in before["groups"]] == [g["report"] for g in after["groups"]]
    assert [g["best"] for g in before["groups"]] == [g["best"] for g in after["groups"]]  # seed 0 still chose


def test_the_stored_frontier_is_what_the_committed_records_give():
    import json

    from bench.common import RESULTS
    from bench.frontier import analysis

    stored = json.loads((RESULTS / "frontier.json").read_text())["tasks"]
    assert stored, "no frontier task has records yet"
    for task, kept in stored.items():
        fresh = json.loads(json.dumps(analysis.summarize(task), default=float))
        assert fresh == kept, f"{task}: rerun python -m bench.frontier.analysis && python -m bench.render"


def test_two_runners_sharing_a_task_never_run_the_same_calibration(tmp_path, monkeypatch):
    import fcntl

    from bench.frontier import run

    monkeypatch.setattr(run, "store_path", lambda task: tmp_path / task / "study.db")
    monkeypatch.setattr(run, "calibrated", lambda task, runs: None)
    ran = []
    monkeypatch.setattr(run, "calibrate_at", lambda task, runs, threads: ran.append(runs))
    (tmp_path / "toy").mkdir()
    with (tmp_path / "toy" / "toy-calibrate-1.lock").open("w") as other:  # another runner is calibrating at 1 run
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert not run.calibrate_if_free("toy", 1, None)
        assert run.calibrate_if_free("toy", 3, None)
    assert ran == [3]


def test_a_calibrator_method_changed_after_its_records_is_listed_with_the_before(tmp_path, monkeypatch):
    import json

    from bench.frontier import tables

    monkeypatch.setattr(frontier, "folder", lambda task: tmp_path / task)
    old = tmp_path / "teacher-student" / "calibrations-v1" / "1-runs"
    old.mkdir(parents=True)
    (old / "calibrate.json").write_text(json.dumps({"unknown": True, "cost_steps": 2895}))
    earlier = frontier.earlier_calibrations("teacher-student")
    assert earlier == [{"folder": "calibrations-v1", "commit": "e50a2f6", "change": frontier.EARLIER_METHODS[0][2],
                        "states": {"1": "unknown after 0.96 runs of probes: it gave no point"}}]
    section = "\n".join(tables.task_section({
        "task": "teacher-student", "steps": 3000, "metrics": ["test:rel_mse"], "margin": {"test:rel_mse": 0.01},
        "rows": [], "oracle": None, "budget": {"holds": None}, "complete": False, "trials": {"done": 0, "planned": 1},
        "trial_hours": 0.0, "earlier_calibrations": earlier}))
    assert ("Changed after the records existed: the calibrator's method (e50a2f6: " in section
            and "1 run: unknown after 0.96 runs of probes: it gave no point" in section)
    assert frontier.earlier_calibrations("sft-gemma") == []  # no earlier method's records: nothing said


def test_a_failed_budget_test_also_states_the_absolute_change_against_the_tasks_delta():
    from bench.frontier import tables

    def section(holds, margin):
        return "\n".join(tables.task_section({
            "task": "x", "steps": 3000, "metrics": ["test:rel_mse"], "margin": margin, "rows": [], "oracle": None,
            "complete": True, "trials": {"done": 1, "planned": 1}, "trial_hours": 0.0,
            "budget": {"holds": holds, "group": "rule=rank", "improvement": 0.47, "at_mark": 2e-8, "at_end": 1e-8,
                       "mark": 2250, "steps": 3000, "seeds": 4}}))
    both = {"test:rel_mse": 0.01, "test:eval_loss": 0.004}
    assert ("Budget test: **fails** (rank: 47.00% better from step 2250 to 3000, mean of 4 seeds); in absolute "
            "terms validation eval_loss went from 2e-08 to 1e-08, a change of 1e-08 against the task's δ of 0.004. "
            in section(False, both))
    assert "in absolute terms" not in section(True, both)  # a budget that holds needs no second reading
    assert "in absolute terms" not in section(False, {"test:rel_mse": 0.01})  # no δ declared on the choosing metric


def test_the_calibrator_is_held_against_each_recipe_paired_by_seed():
    from bench.frontier import analysis

    t = analysis.summarize("teacher-student")  # complete in the committed records
    metric = t["metrics"][0]
    cal = next(r for r in t["rows"] if r["method"] == "loralpha calibrate (1 run of probes)")
    for recipe in (r for r in t["rows"] if r["kind"] == "recipe"):
        mine, theirs = cal["seeds"][metric], recipe["seeds"][metric]
        diffs = [mine[s] - theirs[s] for s in frontier.REPORT_SEEDS]  # seed by seed, calibrated − recipe
        said = cal["vs_recipes"][recipe["method"]][metric]
        assert said["mean"] == pytest.approx(sum(diffs) / len(diffs), rel=1e-9)
        assert said["verdict"] in ("better", "ties")  # lower rel_mse is better: it beats or ties each recipe


def test_the_readme_headline_speaks_of_complete_tasks_only_and_counts_what_tied():
    from bench.frontier.tables import headline

    def row(method, kind, word, cost=0, **more):
        return {"method": method, "kind": kind, "cost_runs": cost, "gap": {"test:m": {"verdict": word}}, **more}

    done = {"complete": True, "metrics": ["test:m"], "rows": [
        row("A", "recipe", "ties"), row("B", "recipe", "worse"), row("C", "recipe", "worse"),
        row("2rank η sweep", "sweep", "ties", 5, users_sweep=True), row("rslora η sweep", "sweep", "worse", 7,
                                                                        users_sweep=True),
        row("lora-alpha η sweep", "sweep", "worse", 4, users_sweep=False),
        row("loralpha calibrate (1 run of probes)", "calibrator", "ties", 0.8)]}
    running = {"complete": False, "metrics": ["test:m"], "rows": [row("C", "recipe", "ties")]}
    said = headline({"one": done, "two": running})
    total = len(set(frontier.ORDER) | {"one", "two"})  # the count is over the frontier's planned tasks and these
    assert said[0] == f"Without tuning, A tied the oracle on one (1 of {total} tasks complete)."
    assert said[1] == "Worse than the oracle everywhere: B, C."  # the running task's word on C is not read
    assert said[2] == "A one-rule η sweep (5–7 runs) tied it in 1 of 2 cases."  # lora-alpha is not a user's sweep
    assert said[3] == "`loralpha calibrate` at one run of probes (0.8 runs spent) tied it in 1 of 1."
    assert headline({"two": running}) == []
    other = {**done, "rows": [row("A", "recipe", "worse"), row("B", "recipe", "ties"), row("C", "recipe", "worse")]}
    assert headline({"one": done, "three": other})[0] == (  # none ties everywhere: which tied it where
        "Without tuning, no recipe tied the oracle on all 2 complete tasks; A tied it on one; B tied it on three.")


def test_claim_one_reads_from_the_v2_frontier_where_it_is_complete():
    from bench.common import RESULTS
    from bench.decisive.analysis import claim_word
    from bench.frontier import analysis
    from bench.frontier.tables import claim_said
    from bench.render.benchmarks import render
    from loralpha.studies.protocol import verdict

    t = analysis.summarize("teacher-student")
    paper = next(r for r in t["rows"] if r["method"] == frontier.PAPER)
    tuned = [r for r in t["rows"] if r["kind"] in ("sweep", "reference")]
    for m in t["metrics"]:
        said = t["claims"]["untuned"][m]
        words = {r["rule"]: verdict(paper["seeds"][m], r["seeds"][m], m, False, t["margin"][m])["verdict"]
                 for r in tuned}
        assert said["words"] == words and said["verdict"] == claim_word(list(words.values()))
    assert claim_word(["worse"] * 6) == "does not" and claim_word(["better", "ties"]) == "holds"
    assert claim_word(["better", "worse"]) == "partly" and claim_word(["undecided", "worse"]) == "does not"
    page = render(RESULTS)  # §7's verdict table gains the v2-only task, claim 1 from its frontier, the rest unmeasured
    def cells(start: str) -> list[str]:
        return next(line for line in page.splitlines() if line.startswith(start)).strip("| ").split(" | ")

    head = cells("| claim |")
    v2_only = [k for k, name in enumerate(head) if name.endswith(" (v2 only)")]
    assert [head[k] for k in v2_only] == ["teacher-student (v2 only)", "clip-digits (v2 only)"]
    at = head.index("teacher-student (v2 only)")
    assert cells("| LoRA-α at the full-FT η (untuned)")[at] == claim_said(t) and claim_said(t).startswith(
        "v2, test, seeds 1–3: does not: by rel_mse, worse than 6 of 6 tuned rules; largest gap vs rank: +0.163")
    other = cells("| at the full-FT η it converges faster")
    assert [other[k] for k in v2_only] == ["not measured under v2"] * 2


def test_the_calibrators_block_gives_each_budget_its_cost_point_and_paired_gaps():
    import json

    from bench.common import RESULTS
    from bench.frontier.tables import calibrator_block

    t = json.loads((RESULTS / "frontier.json").read_text())["tasks"]["teacher-student"]
    row = next(r for r in t["rows"] if r["method"] == "loralpha calibrate (1 run of probes)")
    line = next(x for x in calibrator_block().splitlines() if x.startswith("| teacher-student | 1 run of probes |"))
    assert f"| {row['cost_runs']:.2g} | c = {row['coef']:.4g}, η = {row['lr']:.3g} | rel_mse " in line
    versus = {n: v["test:rel_mse"] for n, v in row["vs_recipes"].items()}
    worst = max(versus, key=lambda n: versus[n]["mean"])  # calibrated − recipe, lower is better
    words = [v["verdict"] for v in versus.values()]
    assert (f" ties | better {words.count('better')}, ties {words.count('ties')}; worst: {worst} "
            f"{versus[worst]['mean']:+.3g} [") in line  # every recipe counted, its worst named, paired
    assert worst == "LoRA Without Regret" and sum(map(words.count, ("better", "ties"))) == 6


def test_the_calibrators_held_out_tasks_are_named_wherever_their_calibrations_are_shown(monkeypatch):
    from bench.frontier.tables import calibrator_block, headline

    held = frontier.CALIBRATOR_HELD_OUT
    assert set(held) <= set(frontier.ORDER) and "teacher-student" not in held  # the task the method was designed on
    assert "teacher-student (held out)" not in calibrator_block()
    monkeypatch.setattr(frontier, "CALIBRATOR_HELD_OUT", {"teacher-student": "how"})
    block = calibrator_block().splitlines()
    assert any(x.startswith("| teacher-student (held out) | 1 run of probes |") for x in block)
    assert block[-1] == "teacher-student: how." and not any(x.startswith("| sft-gemma (held out)") for x in block)

    def task(word):
        return {"complete": True, "metrics": ["test:m"], "rows": [
            {"method": "loralpha calibrate (1 run of probes)", "kind": "calibrator", "cost_runs": 0.8,
             "gap": {"test:m": {"verdict": word}}}]}
    said = headline({"teacher-student": task("worse"), "other": task("ties")})[-1]
    assert said == ("`loralpha calibrate` at one run of probes (0.8 runs spent) tied it in 1 of 2; held out from its "
                    "design, it was worse on teacher-student.")
    monkeypatch.setattr(frontier, "CALIBRATOR_HELD_OUT", {"teacher-student": "how", "other": "how"})
    said = headline({"teacher-student": task("worse"), "other": task("ties")})[-1]
    assert said.endswith("held out from its design, it was worse on teacher-student and tied it on other.")


def test_a_calibration_whose_seeds_have_not_landed_shows_its_point_and_no_gap(tmp_path, monkeypatch):
    import json

    import bench.common
    from bench.frontier.tables import calibrator_block

    none = {"test:m": {"verdict": "undecided", "n": 0, "mean": None, "ci95": None, "ci90": None, "delta": 0.01}}
    row = {"method": "loralpha calibrate (1 run of probes)", "kind": "calibrator", "probe_runs": 1, "cost_runs": 0.9,
           "coef": 0.04, "lr": 0.0115, "gap": none, "vs_recipes": {"unsloth": none}}
    (tmp_path / "frontier.json").write_text(json.dumps({"tasks": {"x": {"metrics": ["test:m"], "rows": [row]}}}))
    monkeypatch.setattr(bench.common, "RESULTS", tmp_path)
    assert "| x | 1 run of probes | 0.9 | c = 0.04, η = 0.0115 | m — | — |" in calibrator_block().splitlines()


def test_the_calibrators_bar_is_the_oracle_or_every_sweep_and_every_recipe_beaten():
    meets = frontier.calibrator_meets
    assert meets(True, [(1, 5, "worse")], ["better"] * 6)["meets"]  # ties the oracle: the sweeps do not matter
    assert meets(False, [(1, 5, "ties"), (1, 6, "better")], ["better"] * 6)["meets"]  # below every sweep, cheaper
    assert not meets(False, [(1, 5, "ties"), (6, 5, "better")], ["better"] * 6)["meets"]  # one sweep cost less
    assert not meets(False, [(1, 5, "ties"), (1, 5, "undecided")], ["better"] * 6)["below_every_sweep"]
    said = meets(True, [], ["better"] * 5 + ["ties"])  # a recipe tied, not beaten: the bar is not met
    assert not said["meets"] and said["recipes"] == {"better": 5, "ties": 1, "undecided": 0, "worse": 0}
    assert not meets(True, [], [])["meets"]  # no recipe measured yet: nothing is claimed


def test_what_the_frontier_leaves_out_is_costed_from_measured_runs(tmp_path, monkeypatch):
    import json

    from bench.frontier import tables

    for k, wall in enumerate((1200.0, 1800.0)):
        (tmp_path / f"rule-s{k}-100steps.json").write_text(json.dumps({"wall_time_s": wall}))
    monkeypatch.setattr(tables, "RL_ARITH", tmp_path)
    monkeypatch.setattr(tables, "DECISIVE", tmp_path / "none.json")
    said = tables.not_planned()[0]  # 25 min a trial, × 60 trials = 25 trial-hours
    assert "a 100-step trial took 25 min on this machine (2 runs" in said and "about 25 trial-hours, 12 h on 2" in said
    v1 = {"steps": 300, "median_trial_s": 720.0, "best_baseline": "rank", "budget_means": {"n": 1},
          "budget_nearest": {"gain": 0.158, "from_step": 200, "to_step": 300}}
    (tmp_path / "decisive.json").write_text(json.dumps({"tasks": {"bbc-news": v1}}))
    monkeypatch.setattr(tables, "DECISIVE", tmp_path / "decisive.json")
    said = tables.not_planned()[0]  # 12 min a trial, × 60 trials = 12 trial-hours
    assert said.startswith("Not run yet: bbc-news") and "300-step trials took a median 12 min" in said
    assert "(rank, 1 seed: 15.8% better from step 200 to 300)" in said and "about 12 trial-hours." in said
    monkeypatch.setattr(tables, "RL_ARITH", tmp_path / "none")
    monkeypatch.setattr(tables, "DECISIVE", tmp_path / "none.json")
    assert tables.not_planned() == []


def test_the_plane_block_places_each_tuned_rules_optimum_and_measures_the_spread():
    import json

    from bench.common import RESULTS
    from bench.frontier.tables import plane_block
    from loralpha.scaling import adam_plane

    t = json.loads((RESULTS / "frontier.json").read_text())["tasks"]["sft-gemma"]
    block = plane_block().splitlines()
    sweeps = [r for r in t["rows"] if r["kind"] == "sweep" and r["rule"] in frontier.ORACLE_RULES]
    points = {r["rule"]: adam_plane(r["rule"], 8, r["lr"]) for r in sweeps}
    for rule, (x, y) in points.items():  # the rule's chosen η, on its ray: (η, γ·η_B) at rank 8
        line = next(b for b in block if b.startswith(f"| sft-gemma | {rule}"))
        assert f"| {x:.2g} | {y:.2g} | eval_loss " in line
    assert any(b.startswith("| sft-gemma | rank (oracle) |") for b in block)  # the oracle is marked
    assert not any(b.startswith("| sft-gemma | full-model") for b in block)  # full-model has no plane point
    ys, xs = [y for _, y in points.values()], [x for x, _ in points.values()]
    assert points["2rank"][1] == pytest.approx(2 * points["rank"][1])  # γ = 2 against 1 at the same η
    said = f"sft-gemma: γ·η_B ×{max(ys) / min(ys):.2g}, η_A ×{max(xs) / min(xs):.0f};"
    assert said in block[-1] and said == "sft-gemma: γ·η_B ×2.2, η_A ×100;"

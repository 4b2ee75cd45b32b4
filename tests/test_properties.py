"""Properties that must hold for every input (hypothesis), and determinism: the same trial config and
seed give bitwise-identical numbers in-process (`train`) and in a sweep's fresh worker process."""

import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loralpha import TrainConfig, runs, scaling, train
from loralpha.diagnostics import signal_drift
from loralpha.sweep import Store, Trial, parse, run_sweep, trial_id

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
ranks = st.integers(min_value=1, max_value=4096)
TINY = {"width": 32, "depth": 2, "n_eval": 64}


# --- α rules


@QUICK
@given(r=ranks, c=positive, a=positive)
def test_every_rule_has_gamma_times_r_equal_to_alpha(r, c, a):
    for rule, spec in scaling.RULES.items():
        if spec.lora_alpha is None:
            continue
        alpha = scaling.lora_alpha(rule, r, coef=c, alpha=a)
        assert math.isfinite(alpha) and alpha > 0
        assert scaling.gamma(rule, r, coef=c, alpha=a) * r == pytest.approx(alpha, rel=1e-12)
    assert scaling.gamma("lora-alpha", r, coef=c) == pytest.approx(c / math.sqrt(r), rel=1e-12)
    assert scaling.lora_alpha("lora-alpha", r, coef=c) == pytest.approx(c * math.sqrt(r), rel=1e-12)
    assert (scaling.gamma("rank", r), scaling.gamma("2rank", r)) == (1.0, 2.0)
    assert scaling.gamma("rslora", r, alpha=a) == pytest.approx(a / math.sqrt(r), rel=1e-12)


# --- Signal-Drift


@QUICK
@given(d_out=st.integers(1, 12), d_in=st.integers(1, 12), r=st.integers(1, 6), gamma=positive,
       seed=st.integers(0, 2**31 - 1), zero_b=st.booleans())
def test_signal_drift_parts_recompose_the_update(d_out, d_in, r, gamma, seed, zero_b):
    g = torch.Generator().manual_seed(seed)
    A, A_new = torch.randn(r, d_in, generator=g), torch.randn(r, d_in, generator=g)
    B = torch.zeros(d_out, r) if zero_b else torch.randn(d_out, r, generator=g)  # B = 0 is LoRA's first step
    B_new = torch.randn(d_out, r, generator=g)
    grad = torch.randn(d_out, d_in, generator=g)
    parts = signal_drift.decompose(A, B, A_new, B_new, gamma)
    exact = gamma * (B_new.double() @ A_new.double() - B.double() @ A.double())
    torch.testing.assert_close(parts.delta, exact, rtol=1e-10, atol=1e-10 * (1 + exact.abs().max().item()))
    view = signal_drift.gradient_view(parts.delta, grad)
    torch.testing.assert_close(view["signal_part"] + view["drift_part"], parts.delta, rtol=1e-12, atol=0)
    scale = parts.delta.norm().item() * grad.double().norm().item()
    assert abs(float((view["drift_part"] * grad.double()).sum())) <= 1e-9 * (1 + scale)  # drift ⟂ G
    assert view["drift"] ** 2 + view["signal"] ** 2 == pytest.approx(parts.delta.norm().item() ** 2,
                                                                      rel=1e-9, abs=1e-12)


# --- store


finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none())


@settings(QUICK, max_examples=25)
@given(rank=ranks, coef=positive, lr=st.one_of(st.none(), positive), seed=st.integers(0, 2**31 - 1),
       status=st.sampled_from(["done", "diverged", "interrupted"]), final_loss=finite_or_not,
       metrics=st.dictionaries(st.text(min_size=1, max_size=8), finite_or_not, max_size=4))
def test_store_round_trips_and_never_holds_a_nan(rank, coef, lr, seed, status, final_loss, metrics):
    config = TrainConfig(rank=rank, coef=coef, lr=lr, seed=seed, task_options={"width": 8})
    tid = trial_id(config)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db") as store:
        store.add([Trial(tid, config)])
        assert store.claim("h:1").config == config
        store.finish(tid, {"status": status, "final_loss": final_loss, "eval": metrics, "wall_time_s": 1.0})
        row = store.records()[0]
        raw = store.db.execute("SELECT final_loss, eval, wall_time_s FROM trials").fetchone()
    assert TrainConfig(**row["config"]) == config and trial_id(TrainConfig(**row["config"])) == tid
    assert row["status"] == (status if status != "interrupted" else "failed")
    finite = final_loss is not None and math.isfinite(final_loss)
    assert row["final_loss"] == (final_loss if finite else None)
    assert row["eval"] == {k: v if v is not None and math.isfinite(v) else None for k, v in metrics.items()}
    assert "NaN" not in json.dumps(raw) and "Infinity" not in json.dumps(raw)


# --- spec expansion


small_lists = lambda values: st.lists(values, min_size=1, max_size=4, unique=True)  # noqa: E731


@QUICK
@given(grid=st.fixed_dictionaries({}, optional={
    "rank": small_lists(st.integers(1, 64)), "seed": small_lists(st.integers(0, 1000)),
    "lr": small_lists(st.floats(1e-6, 1.0)), "rule": small_lists(st.sampled_from(["lora-alpha", "rank", "fixed"])),
}).filter(bool))
def test_spec_expands_to_the_product_with_unique_ids_that_do_not_change(grid):
    spec = parse({"task": "teacher-student", "fixed": {"steps": 5}, "grid": grid})
    trials = spec.trials()
    assert len(trials) == math.prod(len(v) for v in grid.values())
    assert len({t.id for t in trials}) == len(trials)
    assert [t.id for t in parse({"task": "teacher-student", "fixed": {"steps": 5}, "grid": grid}).trials()] == \
        [t.id for t in trials]  # parsed again: the same ids in the same order
    assert all(t.id == trial_id(t.config) for t in trials)
    # across machines and processes: tests/test_sweep.py::test_ids_are_stable_and_1e_4_is_0_0001 pins a literal id,
    # and every test process runs under its own random PYTHONHASHSEED


# --- determinism


def test_a_trial_in_a_sweep_worker_gives_the_bits_of_train_in_process(tmp_path):
    config = TrainConfig(rank=2, steps=15, batch_size=32, eval_every=5, task_options=TINY)
    here = train(config, out=tmp_path / "here")
    again = train(config)
    assert (again.final_loss, again.eval) == (here.final_loss, here.eval)
    store = tmp_path / "study" / "study.db"
    assert run_sweep([Trial(trial_id(config), config)], store, workers=1, threads=1, progress=False)["done"] == 1
    with Store(store) as s:
        row = s.records()[0]
    assert row["final_loss"] == here.final_loss and row["eval"] == here.eval  # exact, not approximate
    there = Path(row["run_dir"])
    assert (there / "metrics.jsonl").read_text() == (tmp_path / "here" / "metrics.jsonl").read_text()
    weights = "adapter/adapter_model.safetensors"
    assert (there / weights).read_bytes() == (tmp_path / "here" / weights).read_bytes()
    assert (runs.read_json(there / "config.json")["config"]
            == runs.read_json(tmp_path / "here" / "config.json")["config"])

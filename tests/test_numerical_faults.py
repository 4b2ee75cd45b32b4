"""Numerical faults: a NaN/inf loss or gradient stops the run as `diverged` at that step, names the first
layer (or parameter) where the non-finite value appeared, never steps the weights with it, and writes
no NaN anywhere."""

import itertools
import json

import pytest
import torch
from conftest import Toy
from torch import nn

from loralpha import AdapterSpec, FitOptions, TrainConfig, fit, runs, train

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = AdapterSpec(rule="rank", rank=2, targets=["q", "v"], heads=["head"])


class PoisonGrad(torch.autograd.Function):
    """Identity forward; a NaN gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def data():
    torch.manual_seed(1)
    return [(torch.randn(16, 12), torch.randint(0, 3, (16,)))] * 4


def cross_entropy(model, batch):
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def faulty_loss(step, fault):
    """cross_entropy, after `fault(model)` from training step `step` on (it stays: a rerun sees it too)."""
    calls = itertools.count(1)

    def loss(model, batch):
        if next(calls) >= step:
            fault(model)
        return cross_entropy(model, batch)

    return loss


def module(model, name):
    return dict(model.named_modules())[f"base_model.model.{name}"]


@pytest.mark.parametrize("bad, message", [
    (float("nan"), "loss is nan at step 3; "),
    # tanh saturates the inf, so the loss stays finite: the gradient check is what catches it
    (float("inf"), "gradient is not finite at step 3 (loss "),
])
def test_a_corrupted_weight_names_the_layer_whose_output_turned_non_finite(tmp_path, bad, message):
    def corrupt(model):
        with torch.no_grad():
            module(model, "blocks.1.v").base_layer.weight[0, 0] = bad

    result = fit(Toy(), data(), faulty_loss(3, corrupt), SPEC, FitOptions(lr=1e-2, steps=10), out=tmp_path / "run",
                 evaluate=lambda m: {"eval_loss": cross_entropy(m, data()[0]).item()})
    assert (result.status, result.diverged_at, result.steps) == ("diverged", 3, 2)
    assert result.diverged_layer == "blocks.1.v.base_layer"
    assert result.reason.startswith(message)
    assert result.reason.endswith("first non-finite value: output of blocks.1.v.base_layer")
    summary = runs.read_json(tmp_path / "run" / "summary.json")
    assert summary["diverged_layer"] == "blocks.1.v.base_layer" and summary["final_loss"] is None
    for name in ("metrics.jsonl", "summary.json", "config.json"):
        text = (tmp_path / "run" / name).read_text()
        assert "NaN" not in text and "Infinity" not in text


def test_a_nan_gradient_stops_before_the_step_and_names_the_parameter_backward_reached_first():
    state = {}

    def poison(model):
        q = module(model, "blocks.1.q")
        if "hook" not in state:  # from this step on, the gradient into blocks.1.q's output is NaN
            state["hook"] = q.register_forward_hook(lambda m, i, out: PoisonGrad.apply(out))
            state["before"] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    result = fit(Toy(), data(), faulty_loss(4, poison), SPEC, FitOptions(lr=1e-2, steps=10))
    assert (result.status, result.diverged_at) == ("diverged", 4)
    assert result.diverged_layer == "blocks.1.q.lora_B.default.weight"
    assert result.reason.startswith("gradient is not finite at step 4 (loss ")
    assert result.reason.endswith("first non-finite value: gradient of blocks.1.q.lora_B.default.weight")
    for name, p in result.model.named_parameters():  # no step was taken with the NaN gradient
        if p.requires_grad:
            assert torch.equal(p, state["before"][name]), name


def test_a_nan_in_the_batch_is_named_as_the_input():
    batches = [(torch.full((16, 12), float("nan")), torch.zeros(16, dtype=torch.long))]
    result = fit(Toy(), batches, cross_entropy, SPEC, FitOptions(lr=1e-2, steps=3))
    assert result.status == "diverged" and result.diverged_at == 1
    assert "first non-finite value: input of blocks.0.q" in result.reason


def test_an_overflowing_run_is_diverged_with_the_layer_and_stores_no_nan(tmp_path):
    # a huge η overflows the LoRA product; the 10× rule is lifted so the NaN/inf check is what fires
    config = TrainConfig(rank=2, steps=20, batch_size=32, lr=1e30, diverge_ratio=1e300,
                         task_options={"width": 32, "depth": 2, "n_eval": 64})
    result = train(config, out=tmp_path / "run")
    assert result.status == "diverged" and result.diverged_layer.endswith("lora_B.default")
    assert f"loss is inf at step {result.diverged_at}; first non-finite value: output of fc" in result.reason

    from loralpha.sweep import Store, Trial, trial_id

    with Store(tmp_path / "s.db") as store:
        store.add([Trial(trial_id(config), config)])
        store.claim("h:1")
        store.finish(trial_id(config), runs.clean(result.summary()))
        row = store.records()[0]
        raw = store.db.execute("SELECT final_loss, eval, error, wall_time_s FROM trials").fetchall()
    assert row["status"] == "diverged" and row["final_loss"] is None and row["error"] == result.reason
    assert "NaN" not in json.dumps(raw) and "Infinity" not in json.dumps(raw)

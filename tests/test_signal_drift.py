import math

import pytest
import torch
from conftest import Toy
from hypothesis import given, settings
from hypothesis import strategies as st

from loralpha import adapters
from loralpha.adapters import AdapterSpec
from loralpha.diagnostics.signal_drift import (
    SignalDriftTracker,
    aggregate,
    decompose,
    gradient_view,
    layer_metrics,
    lora_layers,
    stable_rank,
)


def rel(a, b):
    return float((a - b).norm() / b.norm())


@settings(max_examples=30, deadline=None)
@given(d_out=st.integers(1, 24), d_in=st.integers(1, 24), r=st.integers(1, 8), gamma=st.floats(0.01, 300),
       seed=st.integers(0, 10_000))
def test_parts_recompose_the_update_on_random_shapes(d_out, d_in, r, gamma, seed):
    g = torch.Generator().manual_seed(seed)
    A, B = torch.randn(r, d_in, generator=g), torch.randn(d_out, r, generator=g)
    A2, B2 = A + 1e-2 * torch.randn(r, d_in, generator=g), B + 1e-2 * torch.randn(d_out, r, generator=g)
    parts = decompose(A, B, A2, B2, gamma)
    exact = gamma * (B2.double() @ A2.double() - B.double() @ A.double())
    assert rel(parts.delta, exact) < 1e-6
    G = torch.randn(d_out, d_in, generator=g)
    view = gradient_view(parts.delta, G)
    assert rel(view["signal_part"] + view["drift_part"], parts.delta) < 1e-12
    # the drift is orthogonal to the gradient, the signal is the length along −G
    assert abs(float((view["drift_part"] * G.double()).sum())) < 1e-9 * float(G.norm() * parts.delta.norm()) + 1e-12
    assert view["signal"] == pytest.approx(-float((parts.delta * G.double()).sum() / G.double().norm()))


def test_bilinear_ratio_grows_with_step_size_not_with_gamma():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(4, 16, generator=g), torch.randn(16, 4, generator=g)
    dA, dB = torch.randn(4, 16, generator=g), torch.randn(16, 4, generator=g)

    def ratio(eta, gamma):
        return layer_metrics(A, B, A + eta * dA, B + eta * dB, gamma, None)["bilinear_ratio"]

    assert ratio(1e-3, 1.0) == pytest.approx(ratio(1e-3, 256.0))  # γ cancels
    assert ratio(1e-2, 1.0) == pytest.approx(10 * ratio(1e-3, 1.0), rel=0.05)  # ∝ η for small η


def test_stable_rank_from_the_small_core_matches_the_dense_value():
    g = torch.Generator().manual_seed(1)
    B, A = torch.randn(30, 5, generator=g), torch.randn(5, 20, generator=g)
    sv = torch.linalg.svdvals(B.double() @ A.double())
    assert stable_rank(B, A) == pytest.approx(float((sv**2).sum() / sv[0] ** 2), rel=1e-9)
    assert stable_rank(torch.randn(30, 1), torch.randn(1, 20)) == pytest.approx(1.0)


def test_aggregate_weights_ratios_by_norms():
    layers = {"a": {"bilinear_norm": 1.0, "first_order_norm": 10.0},
              "b": {"bilinear_norm": 3.0, "first_order_norm": 10.0}}
    agg = aggregate(layers)
    assert agg["weighted"]["bilinear_ratio"] == pytest.approx(0.2)
    assert agg["mean"]["bilinear_norm"] == pytest.approx(2.0)


def tracked_toy(rule="lora-alpha", every=1, dropout=0.0):
    torch.manual_seed(0)
    model = adapters.adapt(Toy(), AdapterSpec(rule=rule, rank=4, targets=["q", "v"], coef=16.0, dropout=dropout))
    return model


def test_captured_gradient_is_autograds_full_weight_gradient():
    model = tracked_toy()
    for layer in lora_layers(model).values():  # give B a value so the adapted weight is not W0
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
        layer.base_layer.weight.requires_grad_(True)
    tracker = SignalDriftTracker(model, every=1)
    x, y = torch.randn(8, 12), torch.randint(0, 3, (8,))
    tracker.begin(1)
    for half in (slice(0, 4), slice(4, 8)):  # two micro-batches, as with gradient accumulation
        torch.nn.functional.cross_entropy(model(x[half]), y[half], reduction="sum").backward()
    for name, layer in tracker.layers.items():
        assert rel(tracker._grads[name], layer.base_layer.weight.grad.double()) < 1e-5, name
    tracker.end(1)


def test_tracker_records_a_real_adam_step_exactly():
    model = tracked_toy()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    tracker = SignalDriftTracker(model, every=2)
    layers = lora_layers(model)
    initial_A = {n: layer.lora_A["default"].weight.detach().clone() for n, layer in layers.items()}
    x, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
    records = []
    for step in range(1, 5):
        before = {n: (layer.get_delta_weight("default").detach().clone()) for n, layer in layers.items()}
        tracker.begin(step)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        record = tracker.end(step)
        if record is None:
            continue
        records.append(record["step"])
        for n, layer in layers.items():
            true_update = (layer.get_delta_weight("default").detach() - before[n]).double()
            m = record["layers"][n]
            assert m["update_norm"] == pytest.approx(float(true_update.norm()), rel=1e-5)
            accumulated = float(layer.get_delta_weight("default").detach().norm())
            assert m["accumulated_norm"] == pytest.approx(accumulated, rel=1e-5)
            assert 0 <= m["drift_ratio"] < math.inf and -1 <= m["cos"] <= 1
            A, A0 = layer.lora_A["default"].weight.detach(), initial_A[n]
            assert m["a_motion"] == pytest.approx(float((A - A0).norm() / A0.norm()), rel=1e-6)
            assert m["b_norm"] == pytest.approx(float(layer.lora_B["default"].weight.detach().norm()), rel=1e-6)
        assert record["mean"]["b_norm"] > 0  # B starts at 0 and has moved
        if step == 1:  # B = 0 before the first step, so A gets no gradient: it has not moved yet
            assert record["mean"]["a_motion"] == 0.0
    assert records == [1, 2, 4]
    assert model.training  # hooks are gone, nothing else changed


def test_tracker_ignores_evaluation_passes_and_needs_lora_layers():
    model = tracked_toy()
    tracker = SignalDriftTracker(model, every=1)
    tracker.begin(1)
    with torch.no_grad():
        model(torch.randn(3, 12))
    assert all(not g.any() for g in tracker._grads.values())
    tracker.end(1)
    with pytest.raises(ValueError, match="no LoRA layers"):
        SignalDriftTracker(Toy())

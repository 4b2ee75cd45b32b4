from dataclasses import replace

import pytest
import torch
from conftest import Toy
from torch.func import functional_call

from loralpha import adapters
from loralpha.adapters import AdapterSpec
from loralpha.diagnostics.hessian import (
    HVP,
    adapter_parameters,
    full_parameters,
    lanczos,
    power_iteration,
    step_gap,
    top_eigenvalues,
)
from loralpha.diagnostics.signal_drift import lora_layers


def small_model():
    torch.manual_seed(0)
    model = adapters.adapt(Toy(width=6), AdapterSpec(rule="lora-alpha", rank=2, targets=["q", "v"], coef=4.0)).double()
    for layer in lora_layers(model).values():  # a point away from B = 0
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.3)
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(0, 3, (20,))
    return model, lambda m=model: torch.nn.functional.cross_entropy(m(x), y), (x, y)


def dense_hessian(model, data, params):
    """The exact Hessian by torch.autograd.functional.hessian, independent of loralpha's HVP."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    names = [by_id[id(p)] for p in params]
    x, y = data

    def f(flat):
        values, k = {}, 0
        for n, p in zip(names, params):
            values[n] = flat[k:k + p.numel()].reshape(p.shape)
            k += p.numel()
        return torch.nn.functional.cross_entropy(functional_call(model, values, (x,)), y)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.autograd.functional.hessian(f, flat)


@pytest.mark.parametrize("space", ["adapter", "full"])
def test_lanczos_and_power_match_the_dense_spectrum(space):
    model, loss, data = small_model()
    params = adapter_parameters(model) if space == "adapter" else full_parameters(model)
    exact = torch.linalg.eigvalsh(dense_hessian(model, data, params))
    top = top_eigenvalues(model, loss, space=space, k=3, method="lanczos")
    assert top["size"] == exact.numel()
    for got, want in zip(top["eigenvalues"], exact.flip(0)[:3].tolist()):
        assert got == pytest.approx(want, rel=1e-3)
    largest_magnitude = exact[exact.abs().argmax()].item()
    power = top_eigenvalues(model, loss, space=space, method="power")
    assert power["eigenvalues"][0] == pytest.approx(largest_magnitude, rel=1e-3)


def test_measurement_leaves_requires_grad_as_it_was():
    model, loss, _ = small_model()
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    top_eigenvalues(model, loss, space="full", k=2)
    assert before == {n: p.requires_grad for n, p in model.named_parameters()}


def test_hvp_is_linear_and_symmetric():
    model, loss, _ = small_model()
    hvp = HVP(loss, adapter_parameters(model))
    g = torch.Generator().manual_seed(0)
    u, v = (torch.randn(hvp.size, generator=g, dtype=torch.float64) for _ in range(2))
    assert float(u @ hvp(v)) == pytest.approx(float(v @ hvp(u)), rel=1e-8)
    torch.testing.assert_close(hvp(2 * u + v), 2 * hvp(u) + hvp(v))


def test_solvers_on_a_known_matrix():
    m = torch.diag(torch.tensor([5.0, -7.0, 2.0, 1.0, 0.5], dtype=torch.float64))
    assert power_iteration(lambda v: m @ v, 5)[0] == pytest.approx(-7.0, rel=1e-6)
    assert lanczos(lambda v: m @ v, 5, k=2)[0] == pytest.approx([5.0, 2.0])


def test_step_gap():
    top = {"eigenvalues": [4.0], "top_vector": torch.tensor([1.0, 0.0], dtype=torch.float64),
           "gradient": torch.tensor([2.0, 1.0], dtype=torch.float64)}
    gap = step_gap(top, torch.tensor([-0.02, 5.0]))  # moved 0.02 against a gradient of 2 along u
    assert gap["stable_step"] == pytest.approx(0.5) and gap["effective_step"] == pytest.approx(0.01)
    assert gap["gap"] == pytest.approx(50.0)


def test_spectrum_sweep_writes_json_and_plot(tmp_path):
    from loralpha import TrainConfig, runs
    from loralpha.studies.spectrum import measure, sweep

    base = TrainConfig(task="teacher-student", steps=0, task_options={"width": 8, "depth": 2, "n_eval": 16},
                       batch_size=16)
    results = sweep(base, ["lora-alpha", "2rank", "full"], [1, 2], tmp_path, k=2)
    assert [(r["rule"], r["rank"]) for r in results] == [("lora-alpha", 1), ("lora-alpha", 2),
                                                         ("2rank", 1), ("2rank", 2)]
    stored = runs.read_json(tmp_path / "spectrum.json")["results"]
    assert len(stored) == 4 and (tmp_path / "spectrum.png").stat().st_size > 1000
    assert [r["full"]["reused"] for r in results] == [False, True, True, True]  # taken once, at init
    fresh = measure(replace(base, rule="2rank", rank=2), k=2)  # what the reused spectrum must equal
    assert fresh["full"]["eigenvalues"] == pytest.approx(results[-1]["full"]["eigenvalues"], rel=1e-6)
    assert fresh["full"]["step_gap"]["gap"] == pytest.approx(results[-1]["full"]["step_gap"]["gap"], rel=1e-6)
    for r in results:  # same model and batch at init: the full-weight spectrum does not depend on the rule
        assert r["full"]["eigenvalues"][0] == pytest.approx(results[0]["full"]["eigenvalues"][0], rel=1e-6)
        assert r["suppression"] == pytest.approx(r["adapter"]["eigenvalues"][0] / r["full"]["eigenvalues"][0])


def test_one_step_restores_the_model_and_scales_with_gamma():
    """At B = 0 Adam's first step moves B by η·sign(γ·G·Aᵀ) whatever γ is, so the merged update
    γ·ΔB·A — and the step along the full-space eigenvector — grows linearly with γ."""
    from loralpha import TrainConfig
    from loralpha.studies.spectrum import measure, one_step

    model, loss, _ = small_model()
    spec = AdapterSpec(rule="lora-alpha", rank=2, targets=["q", "v"], coef=4.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps = one_step(model, loss, spec, lr=1e-3, head_lr=None)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    assert steps["adapter"].numel() == sum(p.numel() for p in adapter_parameters(model))
    assert steps["full"].numel() == sum(p.numel() for p in full_parameters(model))

    base = TrainConfig(task="teacher-student", steps=0, lr=1e-3, batch_size=16,
                       task_options={"width": 8, "depth": 2, "n_eval": 16})
    small, large = (measure(replace(base, rule="fixed", rank=2, alpha=a), k=1) for a in (2.0, 16.0))
    ratio = large["full"]["step_gap"]["effective_step"] / small["full"]["step_gap"]["effective_step"]
    assert ratio == pytest.approx(8.0, rel=1e-3)
    assert large["full"]["eigenvalues"][0] == pytest.approx(small["full"]["eigenvalues"][0], rel=1e-6)
    assert large["full"]["step_gap"]["gap"] == pytest.approx(small["full"]["step_gap"]["gap"] / 8, rel=1e-3)

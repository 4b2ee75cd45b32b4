import math

import pytest

from loralpha import scaling
from loralpha.errors import UsageError


@pytest.mark.parametrize("r", [1, 2, 8, 25, 64, 256])
def test_lora_alpha_rule_is_c_sqrt_r(r):
    assert scaling.lora_alpha("lora-alpha", r) == pytest.approx(256 * math.sqrt(r))
    assert scaling.gamma("lora-alpha", r, coef=100.0) == pytest.approx(100 / math.sqrt(r))


@pytest.mark.parametrize("r", [1, 4, 16, 128])
def test_other_rules(r):
    assert scaling.lora_alpha("fixed", r, alpha=32) == 32
    assert scaling.gamma("rank", r) == 1
    assert scaling.gamma("2rank", r) == 2
    assert scaling.gamma("rslora", r, alpha=16) == pytest.approx(16 / math.sqrt(r))
    assert scaling.gamma("loraplus", r) == pytest.approx(16 / r)


def test_gamma_times_rank_is_alpha_for_every_rule():
    for name, spec in scaling.RULES.items():
        if spec.lora_alpha is not None:
            for r in (1, 3, 8, 50):
                assert scaling.gamma(name, r) * r == pytest.approx(scaling.lora_alpha(name, r))


def test_default_learning_rates():
    assert scaling.default_lr("lora-alpha", 2e-5) == 2e-5
    assert scaling.default_lr("full", 2e-5) == 2e-5
    for name in ("fixed", "rank", "2rank", "rslora", "loraplus"):
        assert scaling.default_lr(name, 2e-5) == 2e-4


@pytest.mark.parametrize("r", [0, -1, 1.5, "8", True, None])
def test_bad_rank(r):
    with pytest.raises(UsageError, match="rank must be a positive integer"):
        scaling.lora_alpha("lora-alpha", r)


@pytest.mark.parametrize("c", [0, -256, float("nan"), float("inf"), "big"])
def test_bad_coefficient(c):
    with pytest.raises(UsageError, match="coef c must be a positive finite number"):
        scaling.lora_alpha("lora-alpha", 8, coef=c)


def test_bad_alpha_and_rule():
    with pytest.raises(UsageError, match="alpha must be"):
        scaling.lora_alpha("fixed", 8, alpha=-1)
    with pytest.raises(UsageError, match="unknown rule 'lora'; choose one of: lora-alpha"):
        scaling.lora_alpha("lora", 8)
    with pytest.raises(UsageError, match="no lora_alpha"):
        scaling.lora_alpha("full", 8)


def _trajectory(gamma_mult, b_lr_mult, eps, weight_decay, steps=25):
    """W of every LoRA layer after each of `steps` AdamW steps on a fixed toy problem (float64)."""
    import torch
    from conftest import Toy

    from loralpha import adapters
    from loralpha.adapters import AdapterSpec
    from loralpha.diagnostics.signal_drift import lora_layers

    torch.manual_seed(0)
    spec = AdapterSpec(rule="fixed", alpha=8.0 * gamma_mult, rank=4, targets=["q", "v"])
    model = adapters.adapt(Toy(), spec).double()
    layers = lora_layers(model)
    a_params = [layer.lora_A["default"].weight for layer in layers.values()]
    b_params = [layer.lora_B["default"].weight for layer in layers.values()]
    opt = torch.optim.AdamW([{"params": a_params, "lr": 1e-2}, {"params": b_params, "lr": 1e-2 * b_lr_mult}],
                            eps=eps, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 12, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        out.append(torch.cat([layer.get_delta_weight("default").detach().reshape(-1) for layer in layers.values()]))
    return torch.stack(out)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_alpha_times_k_equals_b_learning_rate_times_k_under_adam():
    k = 16.0
    bigger_alpha = _trajectory(gamma_mult=k, b_lr_mult=1.0, eps=1e-20, weight_decay=0.0)
    faster_b = _trajectory(gamma_mult=1.0, b_lr_mult=k, eps=1e-20, weight_decay=0.0)
    # float64 rounding only (~1e-15): far below what Adam's ε does, even an ε of 1e-12 (~3e-8, below)
    assert _rel(bigger_alpha, faster_b) < 1e-9
    plain = _trajectory(gamma_mult=1.0, b_lr_mult=1.0, eps=1e-20, weight_decay=0.0)
    assert _rel(plain, faster_b) > 0.1  # and it is not a trivial identity
    tiny_eps = [_trajectory(gamma_mult=g, b_lr_mult=b, eps=1e-12, weight_decay=0.0) for g, b in ((k, 1.0), (1.0, k))]
    assert _rel(*tiny_eps) > 1e-9  # the tolerance tells an ε-sized difference from none


def test_weight_decay_and_a_large_epsilon_break_the_equivalence():
    k = 16.0
    for eps, wd in ((1e-20, 0.1), (1e-3, 0.0)):
        bigger_alpha = _trajectory(gamma_mult=k, b_lr_mult=1.0, eps=eps, weight_decay=wd)
        faster_b = _trajectory(gamma_mult=1.0, b_lr_mult=k, eps=eps, weight_decay=wd)
        assert _rel(bigger_alpha, faster_b) > 1e-3, (eps, wd)


def test_rules_on_the_adam_plane():
    assert scaling.adam_plane("lora-alpha", 16, 2e-5) == pytest.approx((2e-5, 64 * 2e-5))
    assert scaling.adam_plane("loraplus", 16, 2e-4) == pytest.approx((2e-4, 1.0 * 16 * 2e-4))
    assert scaling.adam_plane("2rank", 16, 2e-4) == pytest.approx((2e-4, 2 * 2e-4))


def test_plane_points_and_plot(tmp_path):
    from loralpha.diagnostics import plane

    rows = {(r["rule"], r["rank"]): r for r in plane.points(list(scaling.RULES), [4, 8], full_ft_lr=2e-5)}
    assert not any(rule == "full" for rule, _ in rows)  # no A and B to place
    assert rows["lora-alpha", 4]["eta_A"] == 2e-5 and rows["lora-alpha", 4]["gamma_eta_B"] == pytest.approx(128 * 2e-5)
    assert rows["loraplus", 8]["gamma_eta_B"] == pytest.approx(2.0 * 2e-4 * 16)
    assert rows["2rank", 4]["gamma_eta_B"] == rows["2rank", 8]["gamma_eta_B"]  # γ = 2 whatever r is
    plane.plot(list(rows.values()), tmp_path / "plane.png")
    assert (tmp_path / "plane.png").stat().st_size > 10_000

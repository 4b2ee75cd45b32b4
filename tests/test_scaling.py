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

import math
import re

import pytest
import torch
from conftest import Toy
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from loralpha import TrainConfig, adapters, scaling
from loralpha.adapters import AdapterSpec
from loralpha.errors import UsageError
from loralpha.tasks import TASKS, Task


def lora_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


@pytest.mark.parametrize("r", [1, 4, 8, 16])
@pytest.mark.parametrize("rule", ["lora-alpha", "fixed", "rank", "2rank", "rslora", "loraplus"])
def test_peft_scaling_is_the_rules_gamma(toy, rule, r):
    model = adapters.adapt(toy, AdapterSpec(rule=rule, rank=r, targets=["q", "v"], coef=64.0))
    layers = lora_layers(model)
    assert len(layers) == 4
    expected = {"lora-alpha": 64 / math.sqrt(r), "fixed": 16 / r, "rank": 1.0, "2rank": 2.0,
                "rslora": 16 / math.sqrt(r), "loraplus": 16 / r}[rule]
    for layer in layers.values():
        assert layer.scaling["default"] == pytest.approx(expected)
        assert layer.r["default"] == r
    assert model.peft_config["default"].use_rslora is False  # the literal α, never the flag


def test_per_layer_ranks_get_per_layer_alpha(toy):
    spec = AdapterSpec(rule="lora-alpha", rank=8, targets=["q", "v"], rank_pattern={"v": 2, r"blocks\.1\.q": 32})
    model = adapters.adapt(toy, spec)
    for name, layer in lora_layers(model).items():
        r = 2 if name.endswith(".v") else 32 if "blocks.1.q" in name else 8
        assert layer.r["default"] == r, name
        assert layer.scaling["default"] == pytest.approx(256 / math.sqrt(r)), name
    config = model.peft_config["default"]
    assert config.alpha_pattern == {"v": pytest.approx(256 * math.sqrt(2)),
                                    r"blocks\.1\.q": pytest.approx(256 * math.sqrt(32))}


def test_target_that_matches_nothing_lists_the_modules(toy):
    with pytest.raises(UsageError, match=r"target 'q_proj' matches no linear module; available: head, q, v"):
        adapters.adapt(toy, AdapterSpec(targets=["q_proj"]))


def test_rank_pattern_that_matches_nothing(toy):
    with pytest.raises(UsageError, match="rank pattern 'k' matches no targeted module"):
        adapters.adapt(toy, AdapterSpec(targets=["q"], rank_pattern={"k": 4}))


def test_full_rule_unfreezes_exactly_targets_and_heads(toy):
    model = adapters.adapt(toy, AdapterSpec(rule="full", targets=["q"], heads=["head"]))
    trainable = {n for n, _ in adapters.trainable_parameters(model)}
    assert trainable == {"blocks.0.q.weight", "blocks.0.q.bias", "blocks.1.q.weight", "blocks.1.q.bias",
                         "head.weight", "head.bias"}


def test_loraplus_optimizer_gives_b_ratio_times_the_rate(toy):
    spec = AdapterSpec(rule="loraplus", rank=4, targets=["q", "v"], loraplus_ratio=16)
    model = adapters.adapt(toy, spec)
    opt = adapters.optimizer(model, spec, lr=1e-4)
    b_ids = {id(p) for n, p in model.named_parameters() if "lora_B" in n}
    for group in opt.param_groups:
        if any(id(p) in b_ids for p in group["params"]):
            assert all(id(p) in b_ids for p in group["params"])
            assert group["lr"] == pytest.approx(16e-4)
        elif group["params"]:
            assert group["lr"] == pytest.approx(1e-4)


def test_heads_are_saved_and_trained_with_the_adapter(toy):
    model = adapters.adapt(toy, AdapterSpec(rule="rank", rank=2, targets=["q"], heads=["head"]))
    names = {n for n, _ in adapters.trainable_parameters(model)}
    assert any("head" in n and "modules_to_save" in n for n in names)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_converted_inits_save_a_plain_lora_for_the_untouched_base(tmp_path, init):
    torch.manual_seed(0)
    base = Toy()
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    spec = AdapterSpec(rule="lora-alpha", rank=2, targets=["q", "v"], init=init)
    model = adapters.adapt(base, spec)
    adapters.save_initial(model, spec, tmp_path / "init")
    with torch.no_grad():  # stands in for training: move the adapter away from its init
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.add_(0.01 * torch.randn_like(p))
    adapters.save(model, spec, tmp_path / "adapter", tmp_path / "init")
    x = torch.randn(5, 12)
    expected = model(x)
    fresh = Toy()
    fresh.load_state_dict(reference)
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter"))
    torch.testing.assert_close(loaded(x), expected, atol=1e-4, rtol=1e-4)


def test_lora_config_needs_targets_and_a_lora_rule():
    with pytest.raises(UsageError, match="no target modules"):
        adapters.lora_config(AdapterSpec(targets=[]))
    with pytest.raises(UsageError, match="has no LoraConfig"):
        adapters.lora_config(AdapterSpec(rule="full", targets=["q"]))
    assert adapters.lora_config(AdapterSpec(rank=4, targets=["q"])).lora_alpha == pytest.approx(
        scaling.lora_alpha("lora-alpha", 4))


@pytest.mark.parametrize("rule", list(scaling.RULES))
def test_the_head_learns_at_the_tasks_head_rate_under_every_rule(rule):
    """A text task (tweets: head rate 1e-3) on the Toy: the head's group has the head rate, every other trainable
    parameter the rule's own η (B at ratio × η under loraplus), each parameter in exactly one group."""
    torch.manual_seed(0)
    task = Task(name="tweets", model=Toy(), batches=[], loss=None, evaluate=None, targets=["q", "v"], heads=["head"])
    config = TrainConfig(task="tweets", rule=rule, rank=4, loraplus_ratio=8.0)
    spec, options = config.adapter_spec(task), config.fit_options(task)
    assert options.head_lr == TASKS["tweets"].head_lr == 1e-3 and spec.heads == ["head"]
    eta = scaling.default_lr(rule, TASKS["tweets"].full_ft_lr)  # 2e-5 for lora-alpha and full, else 2e-4
    assert options.lr == eta
    model = adapters.adapt(task.model, spec)
    opt = adapters.optimizer(model, spec, options.lr, options.weight_decay, options.head_lr)
    rate = {}
    for group in opt.param_groups:
        for p in group["params"]:
            assert id(p) not in rate, "a parameter in two groups"
            rate[id(p)] = group["lr"]
    trainable = adapters.trainable_parameters(model)
    assert set(rate) == {id(p) for _, p in trainable}  # every trainable parameter, and nothing else
    heads = [n for n, _ in trainable if re.search(r"(^|\.)head\.", n)]
    assert len(heads) == 2  # the head's weight and bias (under PEFT: their modules_to_save copy)
    for name, p in trainable:
        if name in heads:
            want = 1e-3
        elif "lora_B" in name and scaling.RULES[rule].lora_plus:
            want = 8.0 * eta
        else:
            want = eta
        assert rate[id(p)] == pytest.approx(want, rel=1e-12), name
    assert any("lora_B" in n for n, _ in trainable) != scaling.trains_full_weights(rule)


def test_full_model_rule_unfreezes_every_weight_not_only_the_targets(toy):
    model = adapters.adapt(toy, AdapterSpec(rule="full-model", targets=["q"], heads=["head"]))
    trainable = {n for n, _ in adapters.trainable_parameters(model)}
    assert trainable == {n for n, _ in toy.named_parameters()} and "blocks.1.v.weight" in trainable
    assert scaling.RULES["full-model"].trains_full_weights and not scaling.RULES["full"].every_weight

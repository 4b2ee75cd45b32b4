import json
import math

import pytest
import torch
from conftest import Toy
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from loralpha import AdapterSpec, FitOptions, TrainConfig, adapters, fit, runs, tasks, train
from loralpha.errors import UsageError
from loralpha.runlog import TIMINGS
from loralpha.tasks import teacher_student

SMALL = {"width": 32, "depth": 3, "n_eval": 256}


def small_config(**kw):
    base = dict(task="teacher-student", rule="lora-alpha", rank=4, steps=30, eval_every=10, task_options=SMALL)
    base.update(kw)
    return TrainConfig(**base)


def test_run_directory_is_complete(tmp_path):
    result = train(small_config(), out=tmp_path / "run")
    d = tmp_path / "run"
    config = runs.read_json(d / "config.json")
    assert config["config"]["rule"] == "lora-alpha" and config["lora_alpha"] == pytest.approx(512.0)
    assert config["gamma"] == pytest.approx(128.0) and config["lr"] == tasks.TASKS["teacher-student"].full_ft_lr
    assert {"torch", "peft", "transformers"} <= set(config["versions"])
    rows = runs.read_metrics(d)
    assert [r["step"] for r in rows] == list(range(31))
    assert {"loss", "lr"} <= set(rows[1]) and "rel_mse" in rows[0] and "rel_mse" in rows[10]
    summary = runs.read_json(d / "summary.json")
    assert summary["status"] == "done" and summary["steps"] == 30
    assert summary["final_loss"] == pytest.approx(sum(r["loss"] for r in rows[-10:]) / 10)
    assert summary["eval"]["rel_mse"] == rows[-1]["rel_mse"] == result.eval["rel_mse"]
    assert (d / "adapter" / "adapter_config.json").exists()


def test_training_lowers_the_held_out_error():
    result = train(small_config(steps=60))
    assert result.status == "done"
    assert result.eval["rel_mse"] < 0.9  # 1.0 is the untouched base


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = train(small_config(), out=tmp_path / "a")
    b = train(small_config(), out=tmp_path / "b")
    train(small_config(seed=1), out=tmp_path / "c")
    sa, sb, sc = (runs.read_json(tmp_path / x / "summary.json") for x in "abc")
    for s in (sa, sb, sc):
        for key in (*TIMINGS, "run_dir"):
            del s[key]
    assert sa == sb
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    assert sa["final_loss"] != sc["final_loss"]
    assert a.final_loss == b.final_loss


def test_saved_adapter_reloads_in_plain_peft_with_the_same_outputs(tmp_path):
    result = train(small_config(), out=tmp_path / "run")
    base = teacher_student.build(**SMALL).model  # a fresh, untouched base model
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).eval()
    x = torch.randn(64, 32)
    torch.testing.assert_close(loaded(x), result.model.eval()(x), atol=1e-6, rtol=0)


def test_divergence_is_a_status_not_an_exception(tmp_path):
    result = train(small_config(lr=10.0, steps=50), out=tmp_path / "run")
    assert result.status == "diverged" and result.diverged_at is not None
    assert result.final_loss is None and result.eval == {}
    summary = runs.read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "diverged" and summary["final_loss"] is None
    assert "NaN" not in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_existing_run_directory_is_kept_unless_overwrite(tmp_path):
    train(small_config(steps=2), out=tmp_path / "run")
    with pytest.raises(UsageError, match="already exists.*overwrite=True"):
        train(small_config(steps=2), out=tmp_path / "run")
    assert train(small_config(steps=3), out=tmp_path / "run", overwrite=True).steps == 3


def test_full_fine_tuning_and_variants_train():
    for kw in ({"rule": "full"}, {"rule": "loraplus"}, {"rule": "2rank", "init": "gaussian"}):
        result = train(small_config(steps=10, **kw))
        assert result.status == "done", kw
        assert result.eval["rel_mse"] < 1.0, kw


def test_dora_is_on_trains_its_magnitudes_and_is_saved_as_dora(tmp_path):
    result = train(small_config(steps=10, rule="rslora", dora=True), out=tmp_path / "run")
    assert result.status == "done" and result.eval["rel_mse"] < 1.0
    layers = {n: m for n, m in result.model.named_modules() if isinstance(m, LoraLayer)}
    assert len(layers) == 3  # fc1..fc3
    for name, layer in layers.items():
        assert layer.use_dora["default"] is True, name
        magnitude = layer.lora_magnitude_vector["default"].weight  # DoRA's m, initialised to ‖W0‖ per output row
        assert magnitude.requires_grad and magnitude.shape == (SMALL["width"],)
        w0_norm = layer.get_base_layer().weight.detach().norm(dim=1)
        assert not torch.allclose(magnitude.detach(), w0_norm, rtol=0, atol=1e-7), name  # trained: m moved
    saved = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert saved["use_dora"] is True and saved["lora_alpha"] == pytest.approx(16 * 2)  # rslora: 16·√4
    assert runs.read_json(tmp_path / "run" / "config.json")["spec"]["dora"] is True


def test_fit_trains_any_module_and_stops_when_a_finite_iterator_ends():
    torch.manual_seed(0)
    x, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    batches = iter([(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)])  # 4 batches, once

    def loss(m, b):
        return torch.nn.functional.cross_entropy(m(b[0]), b[1])

    result = fit(Toy(), batches, loss, AdapterSpec(rule="rank", rank=2, targets=["q", "v"], heads=["head"]),
                 FitOptions(lr=1e-2, steps=100), evaluate=lambda m: {"eval_loss": loss(m, (x, y)).item()})
    assert result.status == "done" and result.steps == 4


def test_fit_restarts_a_reiterable_source_each_epoch():
    data = [(torch.randn(8, 12), torch.randint(0, 3, (8,)))] * 3

    def loss(m, b):
        return torch.nn.functional.cross_entropy(m(b[0]), b[1])

    result = fit(Toy(), data, loss, AdapterSpec(rule="rank", rank=2, targets=["q"]), FitOptions(lr=1e-3, steps=10))
    assert result.steps == 10 and result.status == "done"


@pytest.mark.parametrize("kw, message", [
    ({"task": "imagenet"}, "unknown task 'imagenet'"),
    ({"rule": "alpha"}, "unknown rule 'alpha'"),
    ({"rank": 0}, "rank must be a positive integer"),
    ({"coef": -1.0}, "coef c must be a positive finite number"),
    ({"lr": float("nan")}, "learning rate must be a positive finite number"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"targets": ["attn"]}, "target 'attn' matches no linear module; available: fc1, fc2, fc3"),
    ({"init": "loftq"}, "unknown init 'loftq'"),
])
def test_bad_config_is_one_clear_error(kw, message):
    with pytest.raises(UsageError, match=message):
        train(small_config(**kw))


def test_train_without_evaluation_skips_the_held_out_pass(tmp_path):
    config = TrainConfig(task="teacher-student", rank=2, steps=5, eval_every=2,
                         task_options={"width": 32, "depth": 2, "n_eval": 64})
    evaluated = train(config, out=tmp_path / "eval")
    rows = runs.read_metrics(tmp_path / "eval")
    assert [r["step"] for r in rows if "rel_mse" in r] == [0, 2, 4, 5]  # at 0, every 2 steps and at the end
    assert rows[0]["rel_mse"] == pytest.approx(1.0, abs=1e-12)  # B = 0: the student is the untouched base
    base_mse = runs.read_json(tmp_path / "eval" / "config.json")["task_info"]["base_eval_mse"]
    assert rows[0]["eval_loss"] == pytest.approx(base_mse, rel=1e-12)
    assert evaluated.eval == {k: rows[-1][k] for k in ("eval_loss", "rel_mse")}  # the final eval is the last row's
    assert 0 < evaluated.eval["rel_mse"] < 1.0
    result = train(config, out=tmp_path / "no-eval", evaluate=False)
    assert result.status == "done" and result.steps == 5 and result.eval == {}
    assert all(set(r) <= {"step", "loss", "lr"} for r in runs.read_metrics(tmp_path / "no-eval"))
    assert [r["loss"] for r in runs.read_metrics(tmp_path / "no-eval")[1:]] == [r["loss"] for r in rows[1:]]


# ---------------------------------------------------------------- schedule, clipping, weight decay, full weights

TINY = {"width": 16, "depth": 2, "n_eval": 16}


def closed_form_lr(lr, schedule, warmup, steps, step):
    """η at optimizer step `step` (1-based): linear warm-up over ⌊warmup·steps⌋ steps, then cosine to 0 or constant
    (transformers' get_cosine_schedule_with_warmup / get_constant_schedule_with_warmup)."""
    n_warm, t = int(warmup * steps), step - 1
    if t < n_warm:
        return lr * t / n_warm
    if schedule == "constant":
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * (t - n_warm) / (steps - n_warm)))


def zero_loss(m, batch):
    return 0.0 * m(batch).sum()  # a gradient of exactly 0 everywhere: AdamW then only decays, p ← p·(1 − η·λ)


@pytest.mark.parametrize("schedule, warmup", [("cosine", 0.0), ("cosine", 0.25), ("constant", 0.0), ("constant", 0.3)])
def test_logged_and_applied_lr_follow_the_closed_form_schedule(tmp_path, schedule, warmup):
    steps, lr, wd = 20, 0.01, 1.0
    torch.manual_seed(0)
    model = Toy()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = fit(model, [torch.randn(4, 12)], zero_loss, AdapterSpec(rule="full", targets=["q", "v"]),
                 FitOptions(lr=lr, steps=steps, schedule=schedule, warmup=warmup, weight_decay=wd),
                 out=tmp_path / "run")
    logged = [r["lr"] for r in runs.read_metrics(tmp_path / "run")[1:]]
    expected = [closed_form_lr(lr, schedule, warmup, steps, s) for s in range(1, steps + 1)]
    assert logged == pytest.approx(expected, rel=1e-12, abs=1e-18)
    if warmup:
        assert logged[0] == 0 and logged[int(warmup * steps)] == pytest.approx(lr)  # the warm-up ends at the peak
    if schedule == "cosine":
        assert logged[-1] < 0.02 * lr  # down to (nearly) 0 at the last step
    # and each step applied the rate it logged: the weights decayed by Π (1 − η_t·λ)
    shrink = math.prod(1 - eta * wd for eta in expected)
    trained = [(n, p) for n, p in result.model.named_parameters() if p.requires_grad]
    assert len(trained) == 8
    for name, p in trained:
        torch.testing.assert_close(p.detach(), shrink * start[name], rtol=1e-5, atol=0)


def one_full_step(grad_clip, scale=1e6, lr=1e-2):
    """(weights before, after one `fit` step of rule full under a huge loss scale, the gradient of that step)."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 12), torch.randint(0, 3, (16,))

    def loss(m, batch):
        return scale * torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    model = Toy()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reference = Toy()
    reference.load_state_dict(model.state_dict())
    loss(reference, (x, y)).backward()
    grads = {n: p.grad for n, p in reference.named_parameters() if ".q." in n or ".v." in n}
    result = fit(model, [(x, y)], loss, AdapterSpec(rule="full", targets=["q", "v"]),
                 FitOptions(lr=lr, steps=1, schedule="constant", grad_clip=grad_clip))
    after = dict(result.model.named_parameters())
    return before, after, grads


def test_grad_clip_bounds_the_gradient_the_step_applies():
    lr, eps, clip = 1e-2, 1e-8, 1e-6
    before, after, grads = one_full_step(grad_clip=clip, lr=lr)
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    assert norm > 1e3  # the huge loss scale: far above the clip
    for name, g in grads.items():
        clipped = g * (clip / (norm.float() + 1e-6))  # torch's clip_grad_norm_: g · max_norm / (‖g‖ + 1e-6)
        adam_first_step = -lr * clipped / (clipped.abs() + eps)  # m̂ = g, √v̂ = |g| after one step
        torch.testing.assert_close(after[name].detach() - before[name], adam_first_step, rtol=1e-4, atol=1e-9)
    # without clipping Adam's first step is η·sign(g) (ε is negligible next to g): a different step
    before, unclipped, _ = one_full_step(grad_clip=None, lr=lr)
    name = next(iter(grads))
    torch.testing.assert_close(unclipped[name].detach() - before[name], -lr * grads[name].sign(), rtol=1e-4, atol=1e-9)
    assert (unclipped[name] - after[name]).abs().max() > 0.1 * lr


@pytest.mark.parametrize("rule", ["full", "fixed"])
def test_weight_decay_shrinks_the_weights_when_the_gradient_is_zero(rule):
    lr, wd, steps = 0.1, 0.5, 3
    x = torch.randn(4, 12)
    spec = AdapterSpec(rule=rule, rank=2, targets=["q", "v"])
    for decay, factor in ((0.0, 1.0), (wd, (1 - lr * wd) ** steps)):  # AdamW: p ← p·(1 − η·λ) each step
        torch.manual_seed(0)
        model, copy = Toy(), Toy()
        copy.load_state_dict(model.state_dict())
        result = fit(model, [x], zero_loss, spec, FitOptions(lr=lr, steps=steps, schedule="constant",
                                                             weight_decay=decay))
        assert result.status == "done" and result.steps == steps
        torch.manual_seed(0)  # fit seeds the adapter's init with its seed (0): the same model at step 0
        start = dict(adapters.adapt(copy, spec).named_parameters())
        trained = [(n, p) for n, p in result.model.named_parameters() if p.requires_grad]
        assert trained
        for name, p in trained:
            torch.testing.assert_close(p.detach(), factor * start[name].detach(), rtol=1e-6, atol=0)
            if decay and start[name].abs().max() > 0:  # B = 0 stays 0; everything else shrinks
                assert p.abs().max() < start[name].abs().max(), name


def test_rule_full_saves_exactly_the_trained_targeted_weights(tmp_path):
    result = train(small_config(rule="full", steps=5), out=tmp_path / "run")
    saved = load_file(str(tmp_path / "run" / "adapter" / "full_weights.safetensors"))
    assert sorted(saved) == ["fc1.weight", "fc2.weight", "fc3.weight"]  # the targets (bias-free), nothing else
    params = dict(result.model.named_parameters())
    base = dict(teacher_student.build(**SMALL).model.named_parameters())  # the untouched W0
    for name, tensor in saved.items():
        assert torch.equal(tensor, params[name].detach()), name
        assert not torch.equal(tensor, base[name].detach()), name  # trained, not the base
    assert not (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    fresh = teacher_student.build(**SMALL).model
    fresh.load_state_dict(saved, strict=False)
    x = torch.randn(8, SMALL["width"])
    torch.testing.assert_close(fresh(x), result.model.eval()(x), rtol=0, atol=0)


def test_the_wall_time_splits_into_training_and_evaluation_and_loading_is_beside_it(tmp_path):
    result = train(small_config(steps=12, eval_every=4), out=tmp_path / "run")
    assert result.eval_time_s > 0 and result.load_time_s > 0
    assert result.train_time_s == pytest.approx(result.wall_time_s - result.eval_time_s)
    summary = runs.read_json(tmp_path / "run" / "summary.json")
    assert {"load_time_s", "train_time_s", "eval_time_s"} <= set(summary)
    assert summary["train_time_s"] + summary["eval_time_s"] == pytest.approx(summary["wall_time_s"])
    quiet = train(small_config(steps=12, eval_every=4), evaluate=False)
    assert quiet.eval_time_s == 0.0


def test_full_model_trains_every_weight_and_saves_them_all(tmp_path):
    result = train(small_config(steps=10, rule="full-model"), out=tmp_path / "run")
    assert result.status == "done" and result.eval["rel_mse"] < 1.0
    saved = load_file(str(tmp_path / "run" / "adapter" / "full_weights.safetensors"))
    assert set(saved) == {n for n, _ in result.model.named_parameters()}

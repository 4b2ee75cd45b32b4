
import pytest
import torch
from conftest import Toy
from peft import PeftModel

from loralpha import AdapterSpec, FitOptions, TrainConfig, fit, runs, tasks, train
from loralpha.errors import UsageError
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
        del s["wall_time_s"], s["run_dir"]
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
    for kw in ({"rule": "full"}, {"rule": "loraplus"}, {"rule": "rslora", "dora": True},
               {"rule": "2rank", "init": "gaussian"}):
        result = train(small_config(steps=10, **kw))
        assert result.status == "done", kw
        assert result.eval["rel_mse"] < 1.0, kw


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


def test_train_without_evaluation_skips_the_held_out_pass():
    config = TrainConfig(task="teacher-student", rank=2, steps=5, task_options={"width": 32, "depth": 2})
    assert train(config).eval  # rel_mse by default
    result = train(config, evaluate=False)
    assert result.status == "done" and result.steps == 5 and result.eval == {}

import json
import math

import pytest
import torch

from loralpha import TrainConfig, adapters, train
from loralpha.adapters import AdapterSpec
from loralpha.integrations import SignalDriftCallback
from loralpha.tasks import text_classification, text_data


def read_rows(path):
    return [json.loads(line) for line in open(path)]


def assert_tracked(rows, steps, n_layers):
    assert [r["step"] for r in rows] == steps
    for r in rows:
        assert len(r["layers"]) == n_layers
        assert all(math.isfinite(m["drift"]) and m["update_norm"] > 0 for m in r["layers"].values())


def test_tracker_in_the_loralpha_loop_on_minilm(tmp_path):
    config = TrainConfig(task="tweets", rule="lora-alpha", rank=4, steps=3, batch_size=4, eval_every=3,
                         track_every=2, task_options={"n_eval": 16})
    result = train(config, out=tmp_path / "run")
    assert result.status == "done"
    assert_tracked(read_rows(tmp_path / "run" / "signal_drift.jsonl"), [1, 2], n_layers=12)  # 6 blocks × query, value


def test_callback_in_an_hf_trainer_run(tmp_path):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    texts, labels, names = text_data.tweets()
    model, tokenizer, _ = text_classification.load_classifier(None, len(names))
    data = [dict(tokenizer(texts[i], truncation=True, max_length=32), labels=labels[i]) for i in range(16)]
    torch.manual_seed(0)
    model = adapters.adapt(model, AdapterSpec(rule="lora-alpha", rank=4, targets=["query", "value"],
                                              heads=["classifier"], task_type="SEQ_CLS"))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4,
                             gradient_accumulation_steps=2, learning_rate=2e-5, report_to=[], save_strategy="no",
                             use_cpu=True, logging_steps=1, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[SignalDriftCallback(every=2, tensorboard=False)])
    trainer.train()
    assert_tracked(read_rows(tmp_path / "signal_drift.jsonl"), [1, 2, 4], n_layers=12)


def test_trainer_settings_carry_the_head_rate_the_batch_and_the_schedule_of_the_probes(tmp_path, toy):
    from peft import get_peft_model
    from transformers import TrainingArguments

    from loralpha.integrations import trainer_settings
    from loralpha.tasks.base import CLASSIFIER_HEAD_LR

    cal = {"task": "tweets", "rank": 4, "steps": 1000, "settings": {"lora-alpha": {"coef": 50.0, "lr": 3e-4}},
           "config": {"batch_size": None, "head_lr": None, "schedule": "cosine", "warmup": 0.1, "weight_decay": 0.0,
                      "task_options": {"max_length": 48}}}
    settings = trainer_settings(cal, targets=["q", "v"], heads=["head"])
    config, lr = settings  # what it always returned
    assert (config, lr) == (settings[0], settings[1]) == (settings.peft_config, 3e-4)
    assert config.lora_alpha == 100.0 and config.modules_to_save == ["head"]  # c·√4
    assert settings.head_learning_rate == CLASSIFIER_HEAD_LR  # the probes trained the new head at the task's rate
    assert (settings.batch_size, settings.max_steps, settings.max_length) == (32, 1000, 48)  # tweets' batch
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], **settings.training_arguments())
    assert (args.learning_rate, args.per_device_train_batch_size, args.max_steps) == (3e-4, 32, 1000)
    assert args.lr_scheduler_type == "cosine" and args.warmup_steps == 100

    model = get_peft_model(toy, config)
    groups = settings.optimizer(model).param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert groups[0]["lr"] == 3e-4 and all("lora_" in names[id(p)] for p in groups[0]["params"])
    assert groups[1]["lr"] == CLASSIFIER_HEAD_LR and {names[id(p)].split(".")[-3] for p in groups[1]["params"]} == {
        "modules_to_save"}
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())
    teacher = trainer_settings({**cal, "task": "teacher-student", "config": {}}, targets=["q"])
    assert teacher.head_learning_rate is None and teacher.batch_size == 256 and teacher.max_length is None


@pytest.mark.usefixtures("one_thread")
def test_calibrate_for_trainer_calibrates_a_tiny_llama_with_its_collator_and_gives_trainer_arguments(tmp_path):
    """A Trainer user's model (the tiny Llama), training data and collator: the probes score the model's own loss
    over the collator's batches; the answer is a LoraConfig and TrainingArguments keywords, and the model comes back
    without adapters, ready for get_peft_model."""
    from peft import get_peft_model
    from transformers import DataCollatorForLanguageModeling, TrainingArguments

    from loralpha.integrations import calibrate_for_trainer
    from loralpha.tasks.causal_lm import tiny_causal_lm

    model, tokenizer = tiny_causal_lm()
    texts = [f"{a} plus {b} is {a + b}." for a in range(1, 9) for b in range(1, 9)]
    data = [tokenizer(t) for t in texts]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = calibrate_for_trainer(model, data, collator, steps=100, batch_size=8, targets=["q_proj", "v_proj"],
                                     rank=2, task_type="CAUSAL_LM", device="cpu")
    cal = settings.calibration
    assert cal["cost_steps"] <= 100 and cal["budget_steps"] == 100 and len(cal["probes"]) >= 9
    assert all(p["status"] == "done" and math.isfinite(p["score"]) for p in cal["probes"] if p["score"] is not None)
    assert settings.learning_rate == cal["eta_A"] and settings.peft_config.r == 2
    assert settings.peft_config.lora_alpha == pytest.approx(cal["settings"]["lora-alpha"]["coef"] * math.sqrt(2))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], **settings.training_arguments())
    assert (args.learning_rate, args.per_device_train_batch_size, args.max_steps) == (cal["eta_A"], 8, 100)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    peft_model = get_peft_model(model, settings.peft_config)  # the model takes the adapter as if never probed
    assert sum(p.requires_grad for p in peft_model.parameters()) == 4 * 2  # A and B of q and v in 2 blocks

import json
import math

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

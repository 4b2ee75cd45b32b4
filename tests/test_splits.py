"""Three disjoint splits per task (train, validation = the held-out split, test): `n_test` sets a test split apart
from the training rows by a fixed shuffle of its own; it neither trains nor changes the validation split."""

import json

import pytest
import torch

from loralpha.errors import UsageError
from loralpha.tasks import sft, teacher_student, text_classification, text_data


def test_carve_test_is_fixed_disjoint_and_leaves_the_rest_training():
    held, train = text_data.split(1000, 100)
    test, rest = text_data.carve_test(train, 50)
    assert (test, rest) == text_data.carve_test(train, 50)
    assert len(test) == 50 and sorted(test + rest) == sorted(train) and not set(test) & set(held)
    assert text_data.carve_test(train, 50, split_seed=1)[0] != test
    assert text_data.carve_test(train, 0) == ([], train)


@pytest.mark.parametrize("n_test", [-1, 900, 2.5, True])
def test_a_test_split_that_cannot_be_made_is_one_line(n_test):
    _, train = text_data.split(1000, 100)
    with pytest.raises(UsageError, match=r"n_test=.* cannot be set apart from 900 training rows: give from 0 to 899"):
        text_data.carve_test(train, n_test)


def test_tweets_test_split_is_apart_from_train_and_validation(monkeypatch):
    seen = {}
    carve = text_data.carve_test

    def spy(train, n_test, split_seed=0):
        seen["train_before"] = list(train)
        seen["test"], seen["train"] = carve(train, n_test, split_seed)
        return seen["test"], seen["train"]

    monkeypatch.setattr(text_data, "carve_test", spy)
    task = text_classification.build_named("tweets", batch_size=8, n_eval=200, n_test=150)
    plain = text_classification.build_named("tweets", batch_size=8, n_eval=200)
    held, _ = text_data.split(len(seen["train_before"]) + 200, 200)
    assert task.info["n_test"] == 150 and task.info["n_train"] == plain.info["n_train"] - 150
    assert not set(seen["test"]) & set(seen["train"]) and not set(seen["test"]) & set(held)
    net = task.model.eval()
    assert task.evaluate(net) == plain.evaluate(net)  # the validation split is the held-out split as it was
    assert task.test(net) != task.evaluate(net) and set(task.test(net)) == set(task.evaluate(net))
    assert plain.test is None and "n_test" not in plain.info


def test_teacher_student_test_set_is_its_own_and_relative_to_its_own_base():
    task = teacher_student.build(width=32, depth=2, n_eval=256, n_test=128)
    base = task.model
    valid, test = task.evaluate(base), task.test(base)
    assert valid["rel_mse"] == pytest.approx(1.0) and test["rel_mse"] == pytest.approx(1.0)
    assert valid["eval_loss"] != test["eval_loss"] and task.info["n_test"] == 128
    assert teacher_student.build(width=32, depth=2).test is None


def test_sft_test_split_holds_whole_examples_apart(tmp_path):
    model, tokenizer = sft.tiny_causal_lm()
    folder = tmp_path / "tiny"
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "response": f"a{i} b{i}"}) + "\n" for i in range(60)))
    task = sft.build("sft", model=str(folder), data=str(data), batch_size=4, n_eval=10, n_test=8)
    assert (task.info["n_train"], task.info["n_eval"], task.info["n_test"]) == (42, 10, 8)
    with torch.no_grad():
        valid, test = task.evaluate(task.model), task.test(task.model)
    assert set(valid) == set(test) and valid != test


TINY = {"width": 16, "depth": 2, "n_eval": 32}


def test_a_run_reads_its_test_split_once_at_the_end_and_the_store_keeps_it_apart(tmp_path, monkeypatch):
    from loralpha import TrainConfig, train
    from loralpha.studies.records import is_higher_better, metric_value
    from loralpha.sweep import Store
    from loralpha.sweep.spec import Trial

    calls = []
    original = teacher_student.build

    def counting(**kwargs):
        task = original(**kwargs)
        if task.test is not None:
            test = task.test
            task.test = lambda model: calls.append(1) or test(model)
        return task

    monkeypatch.setattr(teacher_student, "build", counting)
    config = TrainConfig(task="teacher-student", rule="2rank", steps=6, batch_size=8, eval_every=3,
                         task_options={**TINY, "n_test": 16})
    result = train(config, out=tmp_path / "run")
    assert calls == [1] and set(result.test) == {"eval_loss", "rel_mse"} and result.test != result.eval
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["test"] == result.test
    plain = train(TrainConfig(task="teacher-student", rule="2rank", steps=6, batch_size=8, task_options=TINY))
    assert plain.test == {} and "test" not in plain.summary()

    store = Store(tmp_path / "s.db")
    store.add([Trial("t1", config)])
    store.finish("t1", result.summary())
    record = store.records()[0]
    assert metric_value(record, "eval_loss") == result.eval["eval_loss"]
    assert metric_value(record, "test:eval_loss") == result.test["eval_loss"]
    assert is_higher_better("test:accuracy") and not is_higher_better("test:eval_loss")

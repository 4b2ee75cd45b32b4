"""Minutes-long checks on the embedded real model; run with `make test-slow`."""

import pytest

from loralpha import TrainConfig, runs, train


@pytest.mark.slow
def test_lora_alpha_on_tweets_beats_the_majority_class(tmp_path):
    result = train(TrainConfig(task="tweets", rule="lora-alpha", rank=8, steps=150), out=tmp_path / "run")
    majority = runs.read_json(tmp_path / "run" / "config.json")["task_info"]["eval_majority_accuracy"]
    assert result.status == "done"
    assert result.eval["accuracy"] > majority + 0.15, result.eval

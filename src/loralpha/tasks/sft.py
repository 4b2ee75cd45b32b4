"""Causal-LM instruction tuning (SFT): `sft` (your JSONL or a `datasets` name) and `sft-gemma`.

Records, one JSON object per line of a .jsonl file (or per row of a `datasets` split):

    {"prompt": "...", "response": "..."}                 ("completion" is taken for "response")
    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

the second rendered with the tokenizer's chat template.

Tokens and labels. An example is the token sequence

    prompt/response:  [bos] + tok(prompt) + tok(response) + [eos]
    messages:         [bos] + tok(text before answer 1) + tok(answer 1) + tok(text before answer 2) + ...

where the pieces are the template's text cut at each assistant turn, each piece tokenized on its
own without special tokens, so the prompt's tokens are exactly those a generator would be given.
Labels are the token ids on response tokens (an assistant turn includes the template's
end-of-turn text, so the model learns to stop) and -100 everywhere else, and the loss is

    L = −(1/N) Σ_{t : label_t ≠ −100} log p(x_t | x_<t),    N = number of response tokens in the batch

(transformers' causal-LM loss, labels shifted by one inside the model): a prompt token has no
term in it. `[bos]` is prepended when the model needs it (`needs_bos`), never doubled when a chat
template writes it already. An example longer than `max_length` loses its tail; one with no
response token left is dropped (counted in `info["dropped"]`).

Batches. Padding: one example per row, right-padded with the pad id, attention mask 0 and label
-100 on padding. Packing: whole examples in order into rows of at most `max_length` tokens (a new
row when the next example does not fit; none is split, so every row starts with `[bos]`), position
ids restarting at 0 for each example and no attention mask: transformers then builds a
block-diagonal causal mask from the position ids, so no token attends across examples (the tests
check that a packed example has the logits it has alone). A row's tail padding is a segment of
its own with label -100.

Split and metrics. A fixed held-out split (`split_seed`; `n_eval` examples, at most a fifth; with
`n_test`, that many training examples more form a test split, `Task.test`, read once at the end),
independent of the trial seed. Held out: eval_loss = the token-weighted mean of the loss above
over all held-out response tokens (padded batches), perplexity = exp(eval_loss), eval_tokens = N.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import device_of, to_device
from ..errors import UsageError
from . import gemma
from .base import Task
from .causal_lm import IGNORE, LabelledLoss, labelled_loss, load_causal_lm, tiny_causal_lm, tiny_tokenizer  # noqa: F401 (part of this API)
from .text_classification import default_targets
from .text_data import carve_test, hold_out, jsonl_rows

DEFAULT_MAX_LENGTH = 512
RESPONSE_FIELDS = ("response", "completion")

Example = dict[str, list[int]]  # {"input_ids": [...], "labels": [...]}


# ---------------------------------------------------------------- records


def check_record(row: Any, where: str) -> dict[str, Any]:
    """A record in normal form ({"prompt", "response"} or {"messages"}), or a UsageError naming `where`."""
    if not isinstance(row, dict):
        raise UsageError(f"{where}: expected a JSON object with 'prompt' and 'response' (or 'messages')")
    if row.get("messages") is not None:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise UsageError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise UsageError(f"{where}: messages[{i}] is not an object with 'role' and 'content'")
            for key in ("role", "content"):
                if not isinstance(m.get(key), str):
                    raise UsageError(f"{where}: messages[{i}] has no {key!r} string")
        if not any(m["role"] == "assistant" for m in messages):
            raise UsageError(f"{where}: no message with role 'assistant' to learn from")
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    if "prompt" not in row:
        raise UsageError(f"{where}: missing field 'prompt' (a record has 'prompt' and 'response', or 'messages')")
    response_key = next((k for k in RESPONSE_FIELDS if row.get(k) is not None), None)
    if response_key is None:
        raise UsageError(f"{where}: missing field 'response'")
    for key in ("prompt", response_key):
        if not isinstance(row[key], str):
            raise UsageError(f"{where}: field {key!r} must be a string, got {type(row[key]).__name__}")
    if not row[response_key]:
        raise UsageError(f"{where}: field {response_key!r} is empty")
    return {"prompt": row["prompt"], "response": row[response_key]}


def read_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(records, where each came from as "file:line") from a JSON-lines file; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file {path} does not exist; give a .jsonl file of prompt/response "
                         "or messages records (or a datasets name)")
    if path.suffix.lower() not in (".jsonl", ".json"):
        raise UsageError(f"data file {path} must end in .jsonl (one JSON object per line)")
    records, wheres = [], []
    for n, row in jsonl_rows(path):
        records.append(check_record(row, f"{path}:{n}"))
        wheres.append(f"{path}:{n}")
    if not records:
        raise UsageError(f"data file {path} has no records")
    return records, wheres


def load_records(data: str, split: str = "train") -> tuple[list[dict[str, Any]], list[str], str]:
    """(records, wheres, description) from a local .jsonl file, or else from `datasets.load_dataset(data,
    split=split)`: a hub name (needs the network) or a local folder of data files."""
    path = Path(data)
    if path.is_file() or path.suffix.lower() in (".jsonl", ".json"):
        records, wheres = read_jsonl(path)
        return records, wheres, f"file {data}"
    try:
        import datasets
    except ImportError:
        raise UsageError(f"data={data!r} is not a file; loading it as a datasets name needs the package "
                         "datasets: pip install datasets") from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        rows = datasets.load_dataset(data, split=split)
    except Exception as e:  # datasets raises many kinds (not found, offline, bad split, bad files)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"cannot load {data!r}: not a local file, and as a datasets name: {first}") from None
    wheres = [f"dataset {data!r} ({split}) row {i}" for i in range(len(rows))]
    records = [check_record(row, where) for row, where in zip(rows, wheres)]
    if not records:
        raise UsageError(f"dataset {data!r} ({split}) has no rows")
    return records, wheres, f"dataset {data} ({split})"


# ---------------------------------------------------------------- tokens


def needs_bos(tokenizer: Any, model_type: str | None = None) -> bool:
    """Whether examples start with bos: when the tokenizer adds it itself, or the model is a Gemma
    (whose GGUF tokenizer does not add it, while the model degrades badly without it)."""
    if tokenizer.bos_token_id is None:
        return False
    if model_type and model_type.startswith("gemma"):
        return True
    return tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _chat_pieces(messages: list[dict[str, str]], tokenizer: Any, where: str) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is_response) pieces, cut at each assistant turn."""
    from jinja2 import TemplateError

    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(f"{where}: 'messages' records need a tokenizer with a chat template, and this one "
                         "has none; use prompt/response records")

    def render(upto: int, generation: bool) -> str:
        if upto == 0:
            return ""
        try:
            return tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=generation)
        except TemplateError as e:
            raise UsageError(f"{where}: the chat template rejects this conversation: {e}") from None

    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, after = render(i, True), render(i + 1, False)
        if not (before.startswith(done) and after.startswith(before)):
            raise UsageError(f"{where}: the chat template does not render this conversation's turns as "
                             "prefixes of each other, so the answers cannot be told apart; use prompt/response records")
        pieces += [(before[len(done):], False), (after[len(before):], True)]
        done = after
    tail = render(len(messages), False)
    if tail.startswith(done) and len(tail) > len(done):
        pieces.append((tail[len(done):], False))
    return pieces


def encode(record: dict[str, Any], tokenizer: Any, max_length: int = DEFAULT_MAX_LENGTH, bos: bool | None = None,
           where: str = "record") -> Example:
    """One record as {"input_ids", "labels"} (see the module docstring); `bos=None`: `needs_bos(tokenizer)`."""
    bos = needs_bos(tokenizer) if bos is None else bos
    ids: list[int] = []
    labels: list[int] = []
    if "messages" in record:
        for text, learned in _chat_pieces(record["messages"], tokenizer, where):
            piece = _ids(tokenizer, text)
            ids += piece
            labels += piece if learned else [IGNORE] * len(piece)
    else:
        prompt, response = _ids(tokenizer, record["prompt"]), _ids(tokenizer, record["response"])
        if tokenizer.eos_token_id is not None:
            response = response + [tokenizer.eos_token_id]
        ids = prompt + response
        labels = [IGNORE] * len(prompt) + response
    if bos and (not ids or ids[0] != tokenizer.bos_token_id):
        ids, labels = [tokenizer.bos_token_id] + ids, [IGNORE] + labels
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def learned_tokens(example: Example) -> int:
    """Tokens the loss sees: labelled ones after the first position (which no token predicts)."""
    return sum(label != IGNORE for label in example["labels"][1:])


def tokenize(records: Iterable[dict[str, Any]], tokenizer: Any, max_length: int = DEFAULT_MAX_LENGTH,
             bos: bool | None = None, wheres: Sequence[str] | None = None) -> list[Example]:
    """Every record as an example, for the loralpha loop or a `transformers.Trainer` dataset; examples
    left with no response token (the prompt fills `max_length`) are dropped."""
    bos = needs_bos(tokenizer) if bos is None else bos
    out = []
    for i, record in enumerate(records):
        example = encode(check_record(record, wheres[i] if wheres else f"record {i}"), tokenizer, max_length, bos,
                         wheres[i] if wheres else f"record {i}")
        if learned_tokens(example):
            out.append(example)
    return out


# ---------------------------------------------------------------- batches


def pad(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded rows: input_ids, attention_mask (0 on padding), labels (-100 on padding)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack(examples: Sequence[Example], max_length: int) -> list[list[Example]]:
    """Whole examples, in order, into rows of at most `max_length` tokens (none is split)."""
    rows: list[list[Example]] = []
    used = max_length
    for e in examples:
        n = len(e["input_ids"])
        if used + n > max_length:
            rows.append([])
            used = 0
        rows[-1].append(e)
        used += n
    return rows


def packed(rows: Sequence[Sequence[Example]], pad_id: int) -> dict[str, Any]:
    """Packed rows: input_ids, position_ids (restarting at 0 for each example and for the padding
    tail), labels, and use_cache=False; no attention_mask. transformers masks attention per example
    from the position ids only when there is neither an attention mask nor a cache (a model makes a
    cache by default, even in training), hence use_cache=False."""
    width = max(sum(len(e["input_ids"]) for e in row) for row in rows)
    ids, positions, labels = [], [], []
    for row in rows:
        r_ids, r_pos, r_lab = [], [], []
        for e in row:
            r_ids += e["input_ids"]
            r_lab += e["labels"]
            r_pos += range(len(e["input_ids"]))
        tail = width - len(r_ids)
        ids.append(r_ids + [pad_id] * tail)
        labels.append(r_lab + [IGNORE] * tail)
        positions.append(r_pos + list(range(tail)))
    return {"input_ids": torch.tensor(ids), "position_ids": torch.tensor(positions), "labels": torch.tensor(labels),
            "use_cache": False}


class Collator:
    """A `data_collator` for `transformers.Trainer` over `tokenize(...)` examples: padded rows, or with
    `packing=True` the batch's examples packed into rows of at most `max_length` tokens."""

    def __init__(self, tokenizer: Any = None, packing: bool = False, max_length: int = DEFAULT_MAX_LENGTH,
                 pad_id: int | None = None):
        if pad_id is None:
            if tokenizer is None:
                raise UsageError("Collator needs a tokenizer or a pad_id")
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id, self.packing, self.max_length = pad_id or 0, packing, max_length

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        examples = [{"input_ids": list(f["input_ids"]), "labels": list(f["labels"])} for f in features]
        if self.packing:
            return packed(pack(examples, self.max_length), self.pad_id)
        return pad(examples, self.pad_id)


# ---------------------------------------------------------------- the task


def build(which: str = "sft", seed: int = 0, batch_size: int = 8, model: str | None = None,
          data: str | None = None, max_length: int | None = None, n_eval: int | None = None, split_seed: int = 0,
          packing: bool = False, bos: bool | None = None, data_split: str = "train", eval_batch: int = 8,
          text_column: str = "text", label_column: str = "label", eval_data: str | None = None,
          n_test: int = 0) -> Task:
    """The `sft` task (your --data; --model optional, default the embedded Gemma; max_length 512,
    200 held out, at most a fifth) or `sft-gemma` (the embedded Gemma on BBC headline -> opening paragraph;
    max_length 64, 96 held out). `eval_data`: your held-out records (same formats as data) instead of a split;
    an `n_eval` you give is held out exactly. `bos=None`: `needs_bos`. `data_split`: the split of a datasets
    name."""
    if (text_column, label_column) != ("text", "label"):
        raise UsageError("text_column= and label_column= apply to classify; sft reads 'prompt' and "
                         "'response' (or 'messages') fields")
    if which == "sft-gemma":
        if data is not None or eval_data is not None:
            raise UsageError(f"task 'sft-gemma' has embedded data; use task='sft' to train on {data or eval_data}")
        records = gemma.bbc_pairs()
        wheres = [f"BBC pair {i}" for i in range(len(records))]
        described, default_len, default_eval = gemma.EMBEDDED_DATA, 64, 96
    else:
        if data is None:
            raise UsageError("task 'sft' needs data=: a .jsonl file of prompt/response or messages records, "
                             "or a datasets name (task sft-gemma has embedded data)")
        records, wheres, described = load_records(data, data_split)
        default_len, default_eval = DEFAULT_MAX_LENGTH, 200
    max_length = max_length or default_len
    if max_length < 2:
        raise UsageError(f"max length must be at least 2 tokens, got {max_length}")
    held_records: list[dict[str, Any]] = []
    if eval_data is not None:
        held_records, held_wheres, held_described = load_records(eval_data, data_split)
    held_idx, train_idx = hold_out(len(records), described, n_eval=n_eval, default=default_eval,
                                   split_seed=split_seed, n_file=None if eval_data is None else len(held_records),
                                   unit="record")
    if eval_data is not None:
        records, wheres = records + held_records, wheres + held_wheres
        described = f"{described} (held out: {held_described})"
    test_idx, train_idx = carve_test(train_idx, n_test, split_seed)

    if model is None:
        net, tokenizer, _ = load_causal_lm(str(gemma.model_dir()))
        model_name = gemma.EMBEDDED_MODEL
    else:
        net, tokenizer, model_name = load_causal_lm(model)
    model_type = getattr(net.config, "model_type", None)
    bos = needs_bos(tokenizer, model_type) if bos is None else bool(bos)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # padding is masked anyway

    def examples(idx: list[int]) -> tuple[list[Example], int, int]:
        kept, truncated, dropped = [], 0, 0
        for i in idx:
            e = encode(records[i], tokenizer, max_length + 1, bos, wheres[i])
            if len(e["input_ids"]) > max_length:
                truncated += 1
                e = {k: v[:max_length] for k, v in e.items()}
            if learned_tokens(e):
                kept.append(e)
            else:
                dropped += 1
        return kept, truncated, dropped

    train, t_trunc, t_drop = examples(train_idx)
    held, h_trunc, h_drop = examples(held_idx)
    test, _, _ = examples(test_idx)
    if not train or not held:
        raise UsageError(f"no {'training' if not train else 'held-out'} example of {described} keeps a response "
                         f"token within max length {max_length}; raise max_length=")

    def collate(units: list[Any]) -> dict[str, Any]:
        return packed(units, pad_id) if packing else pad(units, pad_id)

    def batches() -> Iterator[dict[str, Any]]:
        rng = random.Random(seed)
        while True:  # epochs of a fresh shuffle; the last short batch is dropped unless it is the only one
            order = train[:]
            rng.shuffle(order)
            units: list[Any] = pack(order, max_length) if packing else order
            stop = (len(units) // batch_size) * batch_size or len(units)
            for k in range(0, stop, batch_size):
                yield collate(units[k:k + batch_size])

    def loss(net: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return labelled_loss(net, batch)  # the LM head only at response tokens

    def evaluator(rows: list[Example]) -> Callable[[nn.Module], dict[str, float]]:
        """The loss of `rows` per response token, in batches of like lengths: little padding to run."""
        by_length = sorted(rows, key=lambda e: len(e["input_ids"]))

        def evaluate(net: nn.Module) -> dict[str, float]:
            total, count = 0.0, 0
            device = device_of(net)  # the held-out batches go where the model is
            with torch.no_grad():
                for k in range(0, len(by_length), eval_batch):
                    batch = to_device(pad(by_length[k:k + eval_batch], pad_id), device)
                    n = int((batch["labels"][:, 1:] != IGNORE).sum())
                    total += float(labelled_loss(net, batch, num_items=1))  # the sum over its n labelled tokens
                    count += n
            mean = total / count
            return {"eval_loss": mean, "perplexity": math.exp(min(mean, 700.0)), "eval_tokens": count}

        return evaluate

    formats = sorted({"messages" if "messages" in r else "prompt/response" for r in records})
    return Task(
        name=which, model=net, batches=batches(), loss=loss, evaluate=evaluator(held),
        targets=default_targets(net), test=evaluator(test) if test else None,
        info={"model": model_name, "data": described, "format": "+".join(formats), "n_train": len(train),
              "n_eval": len(held), "max_length": max_length, "packing": bool(packing), "bos": bos,
              "split_seed": split_seed, "truncated": t_trunc + h_trunc, "dropped": t_drop + h_drop,
              "train_tokens": sum(len(e["input_ids"]) for e in train),
              "train_response_tokens": sum(learned_tokens(e) for e in train),
              **({"n_test": len(test)} if test else {})},
    )

"""Causal language models for the `sft` task: any hub id or local folder, and a tiny random
Llama-style model with an in-process tokenizer for tests and examples that run offline in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .base import check_model_source


def load_causal_lm(source: str) -> tuple[nn.Module, Any, str]:
    """(model in float32, tokenizer with a pad token, source) for a hub id or a local path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging


    logging.set_verbosity_error()
    logging.disable_progress_bar()
    check_model_source(source, "causal language model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        net = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        kind = "local path" if Path(source).exists() else "hub id (or it is unreachable offline)"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"cannot load a causal language model from {source!r} as a {kind}: {first}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return net, tokenizer, source


TINY_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is two plus two? Two plus two is four.",
    "Translate to French: cat. Le chat.",
    "Name a colour of the sky. Blue.",
    "def add(a, b):\n    return a + b\n",
    "<|user|>\nHello there.\n<|assistant|>\nHi! How can I help?\n",
]
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def tiny_tokenizer(vocab_size: int = 300) -> Any:
    """A byte-level BPE tokenizer trained in-process on a few strings: any text encodes, bos is added
    (as by Llama's), <pad>/<bos>/<eos> are ids 0/1/2 and the chat template is a simple one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TINY_TEXTS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                       special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   chat_template=TINY_CHAT_TEMPLATE)


def tiny_causal_lm(seed: int = 0, hidden: int = 64, layers: int = 2) -> tuple[nn.Module, Any]:
    """(model, tokenizer): a randomly initialised Llama-style causal LM (`layers` blocks of width
    `hidden`, 4 heads, 2 key-value heads) over `tiny_tokenizer()`, for tests and examples that
    must run offline in seconds. `save_pretrained` both into a folder to get a `--model` path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval(), tokenizer


IGNORE = -100  # the label of a position that is not learned (prompt, padding); transformers' ignore index
# config attributes that rescale a model's logits in its own forward: such a model keeps the full-logits path
_LOGIT_RESCALING = ("logit_scale", "logits_scaling")


def labelled_loss(model: nn.Module, batch: dict[str, Any], num_items: int | None = None) -> torch.Tensor:
    """The causal-LM loss of `batch`, with the output layer computed only where a label is learned.

        loss = −(1/N) Σ_{b,t : y[b,t+1] ≠ IGNORE} log softmax(W_out·h[b,t] (soft-capped))[y[b,t+1]]

    over the N labelled next-token positions (or divided by `num_items`, the labelled tokens of a whole
    gradient-accumulation step, as the Trainer passes it). The decoder runs on the full batch; the hidden
    states at labelled positions are gathered first and only those go through the LM head, so the
    (batch, length, vocabulary) logits are never built: on a 262k-token vocabulary that head dominates a
    step. It equals `model(**batch).loss` up to float rounding (Gemma's final-logit soft-capping included);
    a model whose forward rescales its logits otherwise (`logit_scale`, `logits_scaling`) or has no
    separate decoder and head takes that full path instead."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT: the adapted model
    config = getattr(base, "config", None)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None or any(getattr(config, a, None) for a in _LOGIT_RESCALING):
        out = model(**batch)
        return out.loss
    labels = batch["labels"]
    hidden = decoder(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state  # (B, T, H)
    target = labels[:, 1:]  # position t predicts token t + 1
    keep = target != IGNORE  # (B, T-1)
    logits = head(hidden[:, :-1][keep]).float()  # (N, V)
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    total = nn.functional.cross_entropy(logits, target[keep], reduction="sum")
    return total / (num_items if num_items is not None else max(int(keep.sum()), 1))


class LabelledLoss:
    """A `transformers.Trainer` (or TRL `SFTTrainer`) mixin whose training loss is `labelled_loss`:

        class MyTrainer(LabelledLoss, SFTTrainer): ...

    The logits are computed at labelled positions only; the loss is the one the Trainer computes."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or "labels" not in inputs:  # evaluation with predictions needs the full outputs
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        items = int(num_items_in_batch) if num_items_in_batch is not None else None
        return labelled_loss(model, inputs, items)

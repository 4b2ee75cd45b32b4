"""Reasoning RL: `rl-arith`, GRPO on problems whose answer is an integer that can be checked exactly.

Problems. The embedded family, generated from a seed: each problem is, with equal chance,

    a + b   (a in 10..99, b in 1..9)      or      a * b   (a in 2..12, b in 2..20)

(1,019 distinct questions), asked after `shots` worked examples of the same family, one per line:

    12 + 7 = 19
    5 * 13 = 65
    44 + 8 = 52
    31 + 6 =

The completion's first line is the answer. Your own problems (`data=`): a .jsonl or .csv with a
`prompt` and an integer `answer` per row; the prompt is given to the model as it is, so it should end
where the answer starts (e.g. with "=" or "Answer:"). Before any training the embedded Gemma-3-270M
answers 52.0% of the 200 held-out problems right with greedy decoding, and 36.5% of its samples at
temperature 1 are right (docs/results/rl-arith/base.json).

Reward (`reward`, strict). The answer line is the completion's text up to its first newline (all of
it when there is none). It must be exactly one integer in canonical decimal form (`0|-?[1-9][0-9]*`),
spaces around it allowed; anything else (no number, several numbers, "42.", "042", "+42", words) scores
0, a correct one 1. Nothing is given for format. A completion ends at its first newline (or the end of
sequence): those are its tokens, and what a model writes after the answer line is never generated here.

GRPO (`grpo_loss`, one optimizer step per generation batch). For each of the batch's B prompts, G
completions are sampled (temperature T, no top-k/top-p, seeded by the batch), scored, and

    A_ij = (r_ij − mean_j r_ij) / (std_j r_ij + 1e-4)        (std with Bessel's correction, as TRL)

    L = −(1/N) Σ_ij Σ_{t in completion ij} A_ij · log π(y_ijt | prompt_i, y_ij<t)

over the N completion tokens of the batch (TRL's default "dapo" aggregation), with log π from the
logits divided by T. The samples come from the weights being trained, so the PPO ratio is 1 and its
clipping never acts; there is no KL term (TRL's default beta = 0). A group whose rewards are all equal
has zero advantage. The value the loop sees (and records as the step's loss) is 1 − the batch's mean
reward; its gradient is exactly that of L.

Held out: accuracy = exact-match rate of greedy completions (max_new_tokens), format_rate = the share
whose answer line is an integer at all, mean_reward = the mean reward of `eval_samples` sampled
completions per problem at the training temperature (a fixed seed); for greedy decoding the mean
reward would equal the accuracy.

TRL. `reward_func` has the signature of a TRL reward function and `dataset(...)` builds the
`datasets.Dataset` (`prompt`, `answer`) that `trl.GRPOTrainer` trains on (see README).
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checks import positive, positive_int
from ..errors import UsageError
from . import gemma
from .base import Task
from .causal_lm import _LOGIT_RESCALING, load_causal_lm
from .text_classification import default_targets
from .text_data import hold_out

ANSWER = re.compile(r"0|-?[1-9][0-9]*")
DEFAULT_N_EVAL = 200
STD_EPS = 1e-4  # TRL's: A = (r − mean) / (std + 1e-4)
SEED_STRIDE = 1_000_003  # batch k of trial seed s samples with seed s·SEED_STRIDE + k


# ---------------------------------------------------------------- the reward


def parse_answer(completion: str) -> int | None:
    """The integer on the completion's first line, or None when that line is not exactly one integer."""
    if not isinstance(completion, str):
        return None
    line = completion.split("\n", 1)[0].strip()
    return int(line) if ANSWER.fullmatch(line) else None


def reward(completion: str, answer: int) -> float:
    """1.0 when the completion's answer line is exactly `answer`, else 0.0."""
    value = parse_answer(completion)
    return 1.0 if value is not None and value == int(answer) else 0.0


def _text(completion: Any) -> str:
    """A TRL completion as text: a string, or a conversational one (a list of messages: the last content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return ""


def reward_func(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float]:
    """A TRL reward function (`GRPOTrainer(reward_funcs=reward_func)`): `reward` of each completion
    against the dataset's `answer` column (ints, or the strings of ints)."""
    return [reward(_text(c), int(a)) for c, a in zip(completions, answer, strict=True)]


# ---------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    prompt: str  # what the model is given
    answer: int
    question: str = ""  # the embedded family's "a op b" (for keeping held-out questions out of training)


def _question(rng: random.Random) -> tuple[str, int]:
    if rng.random() < 0.5:
        a, b = rng.randint(10, 99), rng.randint(1, 9)
        return f"{a} + {b}", a + b
    a, b = rng.randint(2, 12), rng.randint(2, 20)
    return f"{a} * {b}", a * b


def _problem(rng: random.Random, shots: int, avoid: frozenset[str] = frozenset()) -> Problem:
    def draw() -> tuple[str, int]:
        while True:
            q, a = _question(rng)
            if q not in avoid:
                return q, a

    examples = [draw() for _ in range(shots)]
    question, answer = draw()
    prompt = "".join(f"{q} = {a}\n" for q, a in examples) + f"{question} ="
    return Problem(prompt, answer, question)


def problems(n: int, seed: int | str = 0, shots: int = 3, avoid: frozenset[str] = frozenset(),
             distinct: bool = False) -> list[Problem]:
    """`n` problems of the embedded family from `seed` (the same list for the same arguments). `avoid`:
    questions that appear neither as a problem nor in its examples; `distinct`: no question twice."""
    rng = random.Random(f"rl-arith {seed}")
    out, seen = [], set()
    while len(out) < n:
        p = _problem(rng, shots, avoid)
        if distinct and p.question in seen:
            continue
        seen.add(p.question)
        out.append(p)
    return out


def held_out(n: int = DEFAULT_N_EVAL, split_seed: int = 0, shots: int = 3) -> list[Problem]:
    """The fixed held-out set of the embedded family: `n` distinct questions (at most 400)."""
    if not 1 <= n <= 400:
        raise UsageError(f"n_eval={n!r}: the embedded family holds out from 1 to 400 of its 1,019 questions")
    return problems(n, seed=f"held-out {split_seed}", shots=shots, distinct=True)


def training_stream(seed: int, shots: int, avoid: frozenset[str]) -> Iterator[Problem]:
    """Endless training problems from the trial seed, none of whose questions is held out."""
    rng = random.Random(f"rl-arith train {seed}")
    while True:
        yield _problem(rng, shots, avoid)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{where}: 'answer' must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        return int(value)
    raise UsageError(f"{where}: 'answer' must be an integer, got {value!r}")


def _row(prompt: Any, answer: Any, where: str) -> Problem:
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(f"{where}: 'prompt' must be a non-empty string, got {prompt!r}")
    return Problem(prompt, _integer(answer, where))


def read_problems(path: str | Path) -> list[Problem]:
    """Your problems: a .jsonl (one {"prompt", "answer"} object per line) or a .csv with a header and
    `prompt` and `answer` columns; a bad row is a UsageError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file {path} does not exist; give a .jsonl or .csv with 'prompt' and 'answer'")
    out: list[Problem] = []
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("prompt", "answer") if c not in (reader.fieldnames or [])]
            if missing:
                raise UsageError(f"{path}:1: no column {missing[0]!r} in the header; columns: "
                                 f"{', '.join(reader.fieldnames or []) or 'none'}")
            for row in reader:
                out.append(_row(row["prompt"], row["answer"], f"{path}:{reader.line_num}"))
    elif path.suffix.lower() in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UsageError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise UsageError(f"{path}:{n}: expected a JSON object with 'prompt' and 'answer'")
                for key in ("prompt", "answer"):
                    if key not in row:
                        raise UsageError(f"{path}:{n}: missing field {key!r}")
                out.append(_row(row["prompt"], row["answer"], f"{path}:{n}"))
    else:
        raise UsageError(f"data file {path} must end in .jsonl or .csv")
    if not out:
        raise UsageError(f"data file {path} has no problems")
    return out


def dataset(items: Sequence[Problem] | None = None, tokenizer: Any = None, model_type: str | None = None):
    """A `datasets.Dataset` with `prompt` and `answer` columns for `trl.GRPOTrainer` (default: 1,000
    problems of the embedded family, seed 0, none of them held out). With a tokenizer that does not add
    `<bos>` itself while the model needs it (Gemma), each prompt starts with the bos token's text."""
    from datasets import Dataset

    from .sft import needs_bos

    if items is None:
        items = problems(1000, seed=0, avoid=frozenset(p.question for p in held_out()))
    prefix = ""
    if tokenizer is not None and needs_bos(tokenizer, model_type):
        if tokenizer("a")["input_ids"][:1] != [tokenizer.bos_token_id]:
            prefix = tokenizer.bos_token
    return Dataset.from_dict({"prompt": [prefix + p.prompt for p in items], "answer": [p.answer for p in items]})


# ---------------------------------------------------------------- GRPO


def group_advantages(rewards: torch.Tensor, eps: float = STD_EPS) -> torch.Tensor:
    """(B, G) rewards → (B, G) advantages (r − group mean) / (group std + eps); zero for a group of
    equal rewards and for G = 1."""
    rewards = rewards.double()
    if rewards.shape[-1] < 2:
        return torch.zeros_like(rewards)
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    return centred / (rewards.std(dim=-1, keepdim=True) + eps)


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


class _Ends:
    """Which token ids end a completion: end of sequence, or a token whose text holds a newline."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.cache: dict[int, bool] = {}

    def __call__(self, token: int) -> bool:
        if token not in self.cache:
            self.cache[token] = token in self.eos or "\n" in self.tokenizer.decode([token])
        return self.cache[token]

    def mask(self, completions: torch.Tensor) -> torch.Tensor:
        """(rows, T) completion ids → (rows, T) 0/1 mask: 1 up to and including the first ending token."""
        out = torch.zeros_like(completions)
        for i, row in enumerate(completions.tolist()):
            for t, token in enumerate(row):
                out[i, t] = 1
                if self(token):
                    break
        return out


def _stopping(ends: _Ends):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class AtLineEnd(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
            return torch.tensor([ends(t) for t in input_ids[:, -1].tolist()], dtype=torch.bool,
                                device=input_ids.device)

    return StoppingCriteriaList([AtLineEnd()])


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate(model: nn.Module, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], *, samples: int = 1,
             temperature: float | None = None, max_new_tokens: int = 8, seed: int = 0,
             ends: _Ends | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Complete each prompt `samples` times (rows grouped by prompt): greedy with `temperature=None`,
    else sampled at that temperature (no top-k, no top-p) with `seed`. Returns the left-padded prompt ids
    and mask (each prompt repeated `samples` times), the completion ids and mask (1 up to and including
    the token that ends the completion), and the completions' texts."""
    ends = ends or _Ends(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = _left_pad(prompt_ids, pad_id, _device(model))
    ids, mask = ids.repeat_interleave(samples, 0), mask.repeat_interleave(samples, 0)
    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id,
                                   eos_token_id=sorted(ends.eos) or None, stopping_criteria=_stopping(ends))
    if temperature is None:
        options.update(do_sample=False)
    else:
        options.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    was_training = model.training
    model.eval()
    try:
        device = ids.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            out = model.generate(input_ids=ids, attention_mask=mask, **options)
    finally:
        model.train(was_training)
    completion = out[:, ids.shape[1]:]
    if completion.shape[1] == 0:
        completion = torch.full((ids.shape[0], 1), pad_id, dtype=torch.long, device=ids.device)
    cmask = ends.mask(completion.cpu()).to(completion.device)
    texts = [tokenizer.decode([t for t, m in zip(row, keep) if m], skip_special_tokens=True)
             for row, keep in zip(completion.tolist(), cmask.tolist())]
    return ids, mask, completion, cmask, texts


def completion_logprobs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, completion: torch.Tensor,
                        cmask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(rows, T) log π(y_t | prompt, y_<t) of the completion tokens (0 where cmask is 0), with the logits
    divided by `temperature`. The decoder runs on prompt + completion; only the hidden states that predict
    a completion token go through the LM head (Gemma's final-logit soft-capping kept); a model that rescales
    its logits otherwise takes the full forward."""
    full = torch.cat([ids, completion], dim=1)
    attention = torch.cat([mask, cmask], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    width = ids.shape[1]
    keep = cmask.bool()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or head is None or any(getattr(config, a, None) for a in _LOGIT_RESCALING):
        logits = model(input_ids=full, attention_mask=attention, position_ids=positions,
                       use_cache=False).logits[:, width - 1:-1][keep].float()
    else:
        hidden = decoder(input_ids=full, attention_mask=attention, position_ids=positions,
                         use_cache=False).last_hidden_state
        logits = head(hidden[:, width - 1:-1][keep]).float()  # (N, V): position t predicts token t + 1
        cap = getattr(config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
    logp = torch.log_softmax(logits / temperature, dim=-1).gather(1, completion[keep].unsqueeze(1)).squeeze(1)
    out = torch.zeros(completion.shape, dtype=logp.dtype, device=logp.device)
    return out.masked_scatter(keep, logp)


def grpo_loss(model: nn.Module, batch: dict[str, Any], tokenizer: Any, generations: int = 8,
              temperature: float = 1.0, max_new_tokens: int = 8, ends: _Ends | None = None) -> torch.Tensor:
    """One GRPO generation batch as a loss (see the module docstring): the value is 1 − mean reward,
    the gradient that of the policy-gradient loss L. `batch`: {"prompt_ids", "answers", "seed"}."""
    answers = [int(a) for a in batch["answers"]]
    ids, mask, completion, cmask, texts = generate(
        model, tokenizer, batch["prompt_ids"], samples=generations, temperature=temperature,
        max_new_tokens=max_new_tokens, seed=int(batch["seed"]), ends=ends)
    rewards = torch.tensor([reward(t, answers[i // generations]) for i, t in enumerate(texts)],
                           dtype=torch.float64).view(len(answers), generations)
    advantages = group_advantages(rewards).view(-1)
    mean_reward = float(rewards.mean())
    if not advantages.any():  # no group tells a better completion from a worse one: a zero gradient
        zero = sum((p.sum() * 0.0 for p in model.parameters() if p.requires_grad), torch.zeros((), device=ids.device))
        return zero + (1.0 - mean_reward)
    logp = completion_logprobs(model, ids, mask, completion, cmask, temperature)
    weights = advantages.to(logp.device, logp.dtype).unsqueeze(1) * cmask.to(logp.dtype)
    policy = -(weights * logp).sum() / cmask.sum().clamp(min=1)
    return policy - policy.detach() + (1.0 - mean_reward)


def evaluate(model: nn.Module, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], answers: Sequence[int], *,
             max_new_tokens: int = 8, eval_batch: int = 50, eval_samples: int = 1, temperature: float = 1.0,
             seed: int = 0, ends: _Ends | None = None) -> dict[str, float]:
    """Held-out accuracy and format rate of greedy completions, and the mean reward of `eval_samples`
    sampled completions per problem (left out when 0)."""
    ends = ends or _Ends(tokenizer)
    right = formatted = 0.0
    sampled: list[float] = []
    for k in range(0, len(prompt_ids), eval_batch):
        chunk, truth = prompt_ids[k:k + eval_batch], answers[k:k + eval_batch]
        *_, texts = generate(model, tokenizer, chunk, max_new_tokens=max_new_tokens, ends=ends)
        right += sum(reward(t, a) for t, a in zip(texts, truth))
        formatted += sum(parse_answer(t) is not None for t in texts)
        if eval_samples:
            *_, texts = generate(model, tokenizer, chunk, samples=eval_samples, temperature=temperature,
                                 max_new_tokens=max_new_tokens, seed=seed + k, ends=ends)
            sampled += [reward(t, truth[i // eval_samples]) for i, t in enumerate(texts)]
    n = len(prompt_ids)
    out = {"accuracy": right / n, "format_rate": formatted / n}
    if eval_samples:
        out["mean_reward"] = sum(sampled) / len(sampled)
    return out


# ---------------------------------------------------------------- the task


def build(seed: int = 0, batch_size: int = 4, model: str | None = None, data: str | None = None,
          eval_data: str | None = None, n_eval: int | None = None, split_seed: int = 0, shots: int = 3,
          generations: int = 8, temperature: float = 1.0, max_new_tokens: int = 8, eval_batch: int = 50,
          eval_samples: int = 1, bos: bool | None = None, max_length: int | None = None,
          text_column: str = "text", label_column: str = "label") -> Task:
    """The `rl-arith` task: GRPO (`generations` completions per prompt, `batch_size` prompts per step) on
    the embedded family (`shots` examples per prompt; `n_eval` = 200 held out) or on your `data=` problems
    (`eval_data=` your held-out file, else a fixed split: 200 rows, at most a fifth, or exactly `n_eval`).
    `model`: a causal LM (default: the embedded Gemma-3-270M). `bos=None`: `sft.needs_bos`."""
    from .sft import needs_bos

    if max_length is not None:
        raise UsageError("rl-arith generates its completions: max_length= does not apply; the completion length is "
                         "max_new_tokens= (--task-options max_new_tokens=8)")
    if (text_column, label_column) != ("text", "label"):
        raise UsageError("text_column= and label_column= apply to classify; rl-arith reads 'prompt' and 'answer' "
                         "columns")
    generations = positive_int(generations, "generations (completions per prompt)")
    if generations < 2:
        raise UsageError("generations must be at least 2: GRPO compares the completions of a prompt with each other")
    temperature = positive(temperature, "temperature")
    max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")
    eval_batch = positive_int(eval_batch, "eval_batch")
    if isinstance(eval_samples, bool) or not isinstance(eval_samples, int) or eval_samples < 0:
        raise UsageError(f"eval_samples must be an integer ≥ 0 (0: no sampled evaluation), got {eval_samples!r}")
    if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= 16:
        raise UsageError(f"shots must be from 0 to 16 worked examples, got {shots!r}")

    if data is None:
        if eval_data is not None:
            raise UsageError("eval_data= holds out rows of your data=; the embedded family has its own held-out set")
        held = held_out(DEFAULT_N_EVAL if n_eval is None else n_eval, split_seed, shots)
        avoid = frozenset(p.question for p in held)
        stream: Iterator[Problem] | None = training_stream(seed, shots, avoid)
        train_rows: list[Problem] = []
        described = (f"a + b (10..99 + 1..9) or a * b (2..12 × 2..20), {shots} worked examples per prompt; "
                     "answer on the completion's first line")
    else:
        rows = read_problems(data)
        described = f"file {data}"
        extra = [] if eval_data is None else read_problems(eval_data)
        held_idx, train_idx = hold_out(len(rows), described, n_eval=n_eval, default=DEFAULT_N_EVAL,
                                       split_seed=split_seed, n_file=None if eval_data is None else len(extra),
                                       unit="problem")
        if eval_data is not None:
            rows = rows + extra
            described += f" (held out: file {eval_data})"
        held, train_rows, stream = [rows[i] for i in held_idx], [rows[i] for i in train_idx], None

    if model is None:
        net, tokenizer, _ = load_causal_lm(str(gemma.model_dir()))
        model_name = gemma.EMBEDDED_MODEL
    else:
        net, tokenizer, model_name = load_causal_lm(model)
    bos = needs_bos(tokenizer, getattr(net.config, "model_type", None)) if bos is None else bool(bos)

    def encode(p: Problem) -> list[int]:
        ids = tokenizer(p.prompt, add_special_tokens=False)["input_ids"]
        return [tokenizer.bos_token_id] + ids if bos and (not ids or ids[0] != tokenizer.bos_token_id) else ids

    encoded_train = [(encode(p), p.answer) for p in train_rows]
    held_ids, held_answers = [encode(p) for p in held], [p.answer for p in held]
    ends = _Ends(tokenizer)

    def batches() -> Iterator[dict[str, Any]]:
        rng = random.Random(seed)
        k = 0
        while True:
            if stream is not None:
                chunk = [(encode(p), p.answer) for p in (next(stream) for _ in range(batch_size))]
                groups = [chunk]
            else:  # epochs of a fresh shuffle of your problems; a short last batch only when it is the only one
                order = encoded_train[:]
                rng.shuffle(order)
                stop = (len(order) // batch_size) * batch_size or len(order)
                groups = [order[i:i + batch_size] for i in range(0, stop, batch_size)]
            for chunk in groups:
                yield {"prompt_ids": [c[0] for c in chunk], "answers": [c[1] for c in chunk],
                       "seed": seed * SEED_STRIDE + k}
                k += 1

    def loss(net: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return grpo_loss(net, batch, tokenizer, generations, temperature, max_new_tokens, ends)

    def held_out_metrics(net: nn.Module) -> dict[str, float]:
        return evaluate(net, tokenizer, held_ids, held_answers, max_new_tokens=max_new_tokens, eval_batch=eval_batch,
                        eval_samples=eval_samples, temperature=temperature, seed=SEED_STRIDE * (split_seed + 1),
                        ends=ends)

    return Task(
        name="rl-arith", model=net, batches=batches(), loss=loss, evaluate=held_out_metrics,
        targets=default_targets(net),
        info={"model": model_name, "data": described, "n_train": len(train_rows) if stream is None else None,
              "n_eval": len(held), "generations": generations, "temperature": temperature,
              "max_new_tokens": max_new_tokens, "shots": shots if data is None else None, "bos": bos,
              "split_seed": split_seed, "eval_samples": eval_samples,
              "reward": "1 if the completion's first line is exactly the integer answer, else 0",
              "loss": "1 - mean reward of the batch (gradient: the GRPO policy gradient)"},
    )

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

GRPO: `grpo.grpo_loss` (see that module) with the reward below; one optimizer step per generation batch.

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
from .causal_lm import load_causal_lm
from .grpo import Ends, evaluate, grpo_loss
from .text_classification import default_targets
from .text_data import hold_out

ANSWER = re.compile(r"0|-?[1-9][0-9]*")
DEFAULT_N_EVAL = 200
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


def parses(completion: str) -> bool:
    """Whether the completion's answer line is an integer at all (the held-out format rate)."""
    return parse_answer(completion) is not None


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
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
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
    ends = Ends(tokenizer)

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
        return grpo_loss(net, batch, tokenizer, reward, generations, temperature, max_new_tokens, ends)

    def held_out_metrics(net: nn.Module) -> dict[str, float]:
        return evaluate(net, tokenizer, held_ids, held_answers, reward=reward, parses=parses,
                        max_new_tokens=max_new_tokens, eval_batch=eval_batch, eval_samples=eval_samples,
                        temperature=temperature, seed=SEED_STRIDE * (split_seed + 1), ends=ends)

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

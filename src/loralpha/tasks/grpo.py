"""GRPO, one implementation for loralpha's loop: sampling G completions per prompt from the weights being
trained, group-normalised advantages, and the policy-gradient loss whose gradient the loop steps on; plus the
greedy held-out evaluation of a verifiable-answer task. `rl-arith` is its task; any task whose answer a
function can score (`reward(completion, answer)` in [0, 1]) can use it.

GRPO (`grpo_loss`, one optimizer step per generation batch). For each of the batch's B prompts, G
completions are sampled (temperature T, no top-k/top-p, seeded by the batch), scored, and

    A_ij = (r_ij − mean_j r_ij) / (std_j r_ij + 1e-4)        (std with Bessel's correction, as TRL)

    L = −(1/N) Σ_ij Σ_{t in completion ij} A_ij · log π(y_ijt | prompt_i, y_ij<t)

over the N completion tokens of the batch (TRL's default "dapo" aggregation), with log π from the
logits divided by T. The samples come from the weights being trained, so the PPO ratio is 1 and its
clipping never acts; there is no KL term (TRL's default beta = 0). A group whose rewards are all equal
has zero advantage. The value the loop sees (and records as the step's loss) is 1 − the batch's mean
reward; its gradient is exactly that of L.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .causal_lm import _LOGIT_RESCALING

STD_EPS = 1e-4  # TRL's: A = (r − mean) / (std + 1e-4)
Reward = Callable[[str, Any], float]  # (a completion's text, the problem's answer) -> reward


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


class Ends:
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


def _stopping(ends: Ends):
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
             ends: Ends | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Complete each prompt `samples` times (rows grouped by prompt): greedy with `temperature=None`,
    else sampled at that temperature (no top-k, no top-p) with `seed`. Returns the left-padded prompt ids
    and mask (each prompt repeated `samples` times), the completion ids and mask (1 up to and including
    the token that ends the completion), and the completions' texts."""
    ends = ends or Ends(tokenizer)
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


def grpo_loss(model: nn.Module, batch: dict[str, Any], tokenizer: Any, reward: Reward, generations: int = 8,
              temperature: float = 1.0, max_new_tokens: int = 8, ends: Ends | None = None) -> torch.Tensor:
    """One GRPO generation batch as a loss (see the module docstring): the value is 1 − mean reward,
    the gradient that of the policy-gradient loss L. `batch`: {"prompt_ids", "answers", "seed"};
    `reward(completion text, answer)` scores a completion in [0, 1]."""
    answers = list(batch["answers"])
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


def evaluate(model: nn.Module, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], answers: Sequence[Any], *,
             reward: Reward, parses: Callable[[str], bool], max_new_tokens: int = 8, eval_batch: int = 50,
             eval_samples: int = 1, temperature: float = 1.0, seed: int = 0,
             ends: Ends | None = None) -> dict[str, float]:
    """Held-out accuracy (the mean reward of greedy completions) and format rate (the share `parses`
    accepts), and the mean reward of `eval_samples` sampled completions per problem (left out when 0)."""
    ends = ends or Ends(tokenizer)
    right = formatted = 0.0
    sampled: list[float] = []
    for k in range(0, len(prompt_ids), eval_batch):
        chunk, truth = prompt_ids[k:k + eval_batch], answers[k:k + eval_batch]
        *_, texts = generate(model, tokenizer, chunk, max_new_tokens=max_new_tokens, ends=ends)
        right += sum(reward(t, a) for t, a in zip(texts, truth))
        formatted += sum(bool(parses(t)) for t in texts)
        if eval_samples:
            *_, texts = generate(model, tokenizer, chunk, samples=eval_samples, temperature=temperature,
                                 max_new_tokens=max_new_tokens, seed=seed + k, ends=ends)
            sampled += [reward(t, truth[i // eval_samples]) for i, t in enumerate(texts)]
    n = len(prompt_ids)
    out = {"accuracy": right / n, "format_rate": formatted / n}
    if eval_samples:
        out["mean_reward"] = sum(sampled) / len(sampled)
    return out

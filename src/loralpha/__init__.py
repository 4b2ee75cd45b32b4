"""loralpha: LoRA fine-tuning with a principled scaling factor (LoRA-α), on PEFT.

    import loralpha
    config = loralpha.lora_config("lora-alpha", rank=8, targets=["q_proj", "v_proj"])  # α = 256·√8
    result = loralpha.train(loralpha.TrainConfig(task="tweets", rule="lora-alpha", rank=8))
"""

from __future__ import annotations

from typing import Any

from . import adapters
from .adapters import adapt
from .config import AdapterSpec, FitOptions, TrainConfig
from .errors import UsageError
from .scaling import RULES, gamma, lora_alpha
from .train import RunResult, fit, train

__version__ = "0.1.0"


def lora_config(rule: str = "lora-alpha", rank: int = 8, targets: list[str] | None = None, **spec: Any):
    """A PEFT `LoraConfig` whose `lora_alpha` follows `rule` — for `get_peft_model`, `Trainer`
    or `trl.SFTTrainer(peft_config=...)`. Keyword arguments are those of `AdapterSpec`."""
    return adapters.lora_config(AdapterSpec(rule=rule, rank=rank, targets=list(targets or []), **spec))


__all__ = ["AdapterSpec", "FitOptions", "RULES", "RunResult", "TrainConfig", "UsageError", "adapt", "fit", "gamma",
           "lora_alpha", "lora_config", "train"]

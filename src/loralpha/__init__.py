"""loralpha: LoRA fine-tuning with a principled scaling factor (LoRA-α), on PEFT.

    import loralpha
    config = loralpha.lora_config("lora-alpha", rank=8, targets=["q_proj", "v_proj"])  # α = 256·√8
    result = loralpha.train(loralpha.TrainConfig(task="tweets", rule="lora-alpha", rank=8))
    found = loralpha.calibrate("tweets", steps=1000)  # η_A, γ·η_B from short probes; found.command trains it
    found = loralpha.calibrate_fit(model, batches, loss, steps=1000, targets=["q_proj", "v_proj"])  # any module
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import AdapterSpec, FitOptions, TrainConfig
from .errors import UsageError
from .scaling import RULES, gamma, lora_alpha

if TYPE_CHECKING:
    from .adapters import adapt
    from .loop import fit, train
    from .runlog import RunResult
    from .studies.calibrate import calibrate, calibrate_fit

__version__ = "0.1.0"

# what needs torch and PEFT loads on first use, so that `import loralpha.config` (and the command line's
# --help, its flags and its one-line errors) do not pay for them
_LAZY = {"adapt": "adapters", "RunResult": "runlog", "fit": "loop", "train": "loop", "calibrate": "studies.calibrate",
         "calibrate_fit": "studies.calibrate"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def lora_config(rule: str = "lora-alpha", rank: int = 8, targets: list[str] | None = None, **spec: Any):
    """A PEFT `LoraConfig` whose `lora_alpha` follows `rule` — for `get_peft_model`, `Trainer`
    or `trl.SFTTrainer(peft_config=...)`. Keyword arguments are those of `AdapterSpec`."""
    from . import adapters

    return adapters.lora_config(AdapterSpec(rule=rule, rank=rank, targets=list(targets or []), **spec))


__all__ = ["AdapterSpec", "FitOptions", "RULES", "RunResult", "TrainConfig", "UsageError", "adapt", "calibrate",
           "calibrate_fit", "fit", "gamma", "lora_alpha", "lora_config", "train"]

"""The α rules: one line of data each, mapping a rank r to PEFT's `lora_alpha`.

PEFT adapts a frozen weight as  x ↦ W0·x + γ·B·A·x  with  γ = lora_alpha / r.
Each rule below says what `lora_alpha` is for a rank; γ follows. The literal
α is what goes into `LoraConfig(lora_alpha=...)` (never `use_rslora`), so that
an adapter trained here means the same thing to every loader.

| rule        | lora_alpha   | γ = α/r     | parameter            |
| ----------- | ------------ | ----------- | -------------------- |
| lora-alpha  | c·√r         | c/√r        | coef c (default 256) |
| fixed       | α            | α/r         | alpha (default 16)   |
| rank        | r            | 1           | —                    |
| 2rank       | 2r           | 2           | —                    |
| rslora      | α·√r         | α/√r        | alpha (default 16)   |
| loraplus    | α            | α/r         | alpha (default 16); B's lr × ratio |
| full        | —            | —           | full fine-tuning of the same modules |
| full-model  | —            | —           | full fine-tuning of every weight     |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .checks import positive, positive_int
from .errors import UsageError

PAPER_COEF = 256.0  # c of the paper's α = c·√r, calibrated on LLM SFT
DEFAULT_ALPHA = 16.0  # the ecosystem's usual fixed lora_alpha
LORAPLUS_RATIO = 16.0  # LoRA+: η_B / η_A
LORA_LR = 2e-4  # the usual LoRA learning rate of the ecosystem


@dataclass(frozen=True)
class RuleSpec:
    formula: str  # lora_alpha as a function of r, for people
    lora_alpha: Callable[[int, float], float] | None  # (r, parameter) -> lora_alpha; None = no adapter
    parameter: str | None  # "coef", "alpha" or None: which user value the rule reads
    full_ft_lr: bool  # True: default η is the task's full-fine-tuning rate; False: LORA_LR
    note: str
    lora_plus: bool = False  # B trains at loraplus_ratio × η (LoRA+ optimizer groups)
    every_weight: bool = False  # (no adapter) every weight of the model trains, not only the targeted modules

    @property
    def trains_full_weights(self) -> bool:
        """The rule fine-tunes weights directly: no adapter, no lora_alpha."""
        return self.lora_alpha is None


RULES: dict[str, RuleSpec] = {
    "lora-alpha": RuleSpec("c·√r", lambda r, c: c * math.sqrt(r), "coef", True,
                           "LoRA-α: γ = c/√r with a large c, at a full-fine-tuning η"),
    "fixed": RuleSpec("α", lambda r, a: a, "alpha", False, "constant lora_alpha"),
    "rank": RuleSpec("r", lambda r, _: float(r), None, False, "α = r, γ = 1"),
    "2rank": RuleSpec("2r", lambda r, _: 2.0 * r, None, False, "α = 2r, γ = 2"),
    "rslora": RuleSpec("α·√r", lambda r, a: a * math.sqrt(r), "alpha", False,
                       "rank-stabilised: γ = α/√r, written as a literal lora_alpha"),
    "loraplus": RuleSpec("α", lambda r, a: a, "alpha", False,
                         "fixed α with LoRA+ (B learns ratio× faster than A)", lora_plus=True),
    "full": RuleSpec("—", None, None, True, "full fine-tuning of the targeted modules"),
    "full-model": RuleSpec("—", None, None, True, "full fine-tuning of every weight (embeddings, norms, all layers)",
                           every_weight=True),
}


def check_rule(name: str) -> RuleSpec:
    if name not in RULES:
        raise UsageError(f"unknown rule {name!r}; choose one of: {', '.join(RULES)}")
    return RULES[name]


def trains_full_weights(rule: str) -> bool:
    """Whether `rule` fine-tunes weights directly (no adapter)."""
    return check_rule(rule).trains_full_weights


def check_rank(r: object, what: str = "rank") -> int:
    return positive_int(r, what, "1, 2, 8, ...")


def lora_alpha(rule: str, r: int, coef: float = PAPER_COEF, alpha: float = DEFAULT_ALPHA) -> float:
    """PEFT's `lora_alpha` for rank r under `rule` (see the table above)."""
    spec = check_rule(rule)
    r = check_rank(r)
    if spec.lora_alpha is None:
        raise UsageError(f"rule {rule!r} trains the full weights and has no lora_alpha")
    value = {"coef": lambda: positive(coef, "coef c"),
             "alpha": lambda: positive(alpha, "alpha"),
             None: lambda: 0.0}[spec.parameter]()
    return spec.lora_alpha(r, value)


def gamma(rule: str, r: int, coef: float = PAPER_COEF, alpha: float = DEFAULT_ALPHA) -> float:
    """The effective multiplier γ = lora_alpha / r of the update B·A."""
    return lora_alpha(rule, r, coef, alpha) / check_rank(r)


def default_lr(rule: str, full_ft_lr: float) -> float:
    """η a rule trains with unless told: the task's full-FT rate or the usual LoRA rate."""
    return full_ft_lr if check_rule(rule).full_ft_lr else LORA_LR


def adam_plane(rule: str, r: int, lr: float, coef: float = PAPER_COEF, alpha: float = DEFAULT_ALPHA,
               loraplus_ratio: float = LORAPLUS_RATIO) -> tuple[float, float]:
    """The point (η_A, γ·η_B) of a LoRA rule under Adam.

    Adam's step ignores a constant scale of the gradient, and B starts at 0. So training with
    k·γ at rates (η_A, η_B) moves W = W0 + γ·B·A exactly as training with γ at (η_A, k·η_B)
    (B is then k times larger at every step), up to Adam's ε and without weight decay.
    Rules with the same (η_A, γ·η_B) therefore train the same W: LoRA-α (large γ), LoRA+
    (large η_B) and plain LoRA are points of one plane.
    """
    g = gamma(rule, r, coef, alpha)
    eta_b = lr * (loraplus_ratio if check_rule(rule).lora_plus else 1.0)
    return lr, g * eta_b

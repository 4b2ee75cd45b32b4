"""Adapters on PEFT: a rule and a rank in, a `LoraConfig` or an adapted model out.

The literal α of the rule is written into `lora_alpha` (and into `alpha_pattern`
for per-layer ranks), never `use_rslora`, so a saved adapter loads with plain
`peft.PeftModel.from_pretrained` and means the same in serving stacks that
ignore `use_rslora`. The `full` rule trains the same target modules' weights
directly and is the reference the LoRA rules are compared against.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.optimizers import create_loraplus_optimizer
from safetensors.torch import save_file
from torch import nn

from . import scaling
from .config import INITS, AdapterSpec
from .errors import UsageError

_CONVERTED_INITS = {"pissa", "olora"}  # inits that move W0 and must be converted when saved


def linear_names(model: nn.Module) -> list[str]:
    """Full names of the modules LoRA can adapt here: nn.Linear, and nn.Conv2d (a convolution is a linear map;
    PEFT's LoRA factors it as a k×k convolution to r channels followed by a 1×1 one)."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _matches(target: str, name: str) -> bool:
    # PEFT's rule for a list of targets: the name equals the target or ends with ".target"
    return name == target or name.endswith("." + target)


def _pattern_matches(pattern: str, name: str) -> bool:
    # PEFT's rule for rank_pattern / alpha_pattern keys (peft.utils.other.get_pattern_key)
    return re.match(rf"(.*\.)?({pattern})$", name) is not None


def targeted_names(model: nn.Module, targets: list[str]) -> list[str]:
    """The linear modules `targets` select; a target that selects nothing is an error."""
    names = linear_names(model)
    for t in targets:
        if not any(_matches(t, n) for n in names):
            short = sorted({n.rsplit(".", 1)[-1] for n in names})
            raise UsageError(f"target {t!r} matches no linear module; available: {', '.join(short) or 'none'}")
    return [n for n in names if any(_matches(t, n) for t in targets)]


def lora_config(spec: AdapterSpec, model: nn.Module | None = None) -> LoraConfig:
    """A PEFT `LoraConfig` for `spec`, with the rule's literal α for every rank used.

    With a model, targets and rank patterns are checked against its modules first.
    """
    spec.check()
    if spec.full:
        raise UsageError(f"rule {spec.rule!r} trains the full weights; it has no LoraConfig")
    if model is not None:
        chosen = targeted_names(model, spec.targets)
        for key in spec.rank_pattern:
            if not any(_pattern_matches(key, n) for n in chosen):
                short = sorted({n.rsplit(".", 1)[-1] for n in chosen})
                raise UsageError(f"rank pattern {key!r} matches no targeted module; targeted: {', '.join(short)}")
    return LoraConfig(
        r=spec.rank,
        lora_alpha=spec.lora_alpha(spec.rank),
        target_modules=list(spec.targets),
        rank_pattern=dict(spec.rank_pattern),
        alpha_pattern={k: spec.lora_alpha(r) for k, r in spec.rank_pattern.items()},
        lora_dropout=spec.dropout,
        init_lora_weights=INITS[spec.init],
        use_dora=spec.dora,
        modules_to_save=list(spec.heads) or None,
        task_type=spec.task_type,
    )


def adapt(model: nn.Module, spec: AdapterSpec) -> nn.Module:
    """Make `model` trainable under `spec`: a PEFT model, (rule `full`) the model with only the
    targeted modules and heads unfrozen, or (rule `full-model`) the model with every weight unfrozen."""
    spec.check()
    if not spec.full:
        return get_peft_model(model, lora_config(spec, model))
    if scaling.check_rule(spec.rule).every_weight:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    chosen = set(targeted_names(model, spec.targets))
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in model.named_modules():
        if name in chosen or any(_matches(h, name) for h in spec.heads):
            for p in module.parameters():
                p.requires_grad_(True)
    return model


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def head_parameters(model: nn.Module, spec: AdapterSpec) -> list[nn.Parameter]:
    """Trainable parameters of the head modules (under PEFT: their modules_to_save copies)."""
    pattern = re.compile(r"(^|\.)(" + "|".join(map(re.escape, spec.heads)) + r")(\.|$)") if spec.heads else None
    return [p for n, p in trainable_parameters(model) if pattern and pattern.search(n)]


def optimizer(model: nn.Module, spec: AdapterSpec, lr: float, weight_decay: float = 0.0,
              head_lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; LoRA+ groups (B at lr × ratio) for `loraplus`.

    With `head_lr`, the head modules (a new classifier, say) learn at that rate under every
    rule, so rules differ only in how they train the adapted layers. The rates are taken as given:
    `FitOptions.check_fit` checks them where they enter the library.
    """
    if scaling.check_rule(spec.rule).lora_plus:
        opt = create_loraplus_optimizer(model, optimizer_cls=torch.optim.AdamW, lr=lr,
                                        loraplus_lr_ratio=spec.loraplus_ratio, weight_decay=weight_decay)
    else:
        opt = torch.optim.AdamW([p for _, p in trainable_parameters(model)], lr=lr, weight_decay=weight_decay)
    heads = head_parameters(model, spec) if head_lr is not None else []
    if heads:
        ids = {id(p) for p in heads}
        for group in opt.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
        opt.add_param_group({"params": heads, "lr": head_lr, "weight_decay": weight_decay})
    return opt


def save_initial(model: nn.Module, spec: AdapterSpec, directory: Path) -> None:
    """PiSSA / OLoRA move W0 at initialisation; keep the initial adapter so the final
    one can be converted into a plain LoRA that loads on the untouched base model."""
    if not spec.full and spec.init in _CONVERTED_INITS:
        config = model.peft_config["default"]
        init, config.init_lora_weights = config.init_lora_weights, True
        model.save_pretrained(str(directory))
        config.init_lora_weights = init


def save(model: nn.Module, spec: AdapterSpec, directory: Path, initial: Path | None = None) -> None:
    """Write the trained adapter (PEFT format) or, for `full`, the trained weights."""
    directory.mkdir(parents=True, exist_ok=True)
    if spec.full:
        tensors = {n: p.detach().cpu().contiguous() for n, p in trainable_parameters(model)}
        save_file(tensors, str(directory / "full_weights.safetensors"))
    elif isinstance(model, PeftModel):
        kwargs = {}
        if spec.init in _CONVERTED_INITS and initial is not None:
            kwargs["path_initial_model_for_weight_conversion"] = str(initial)
        model.save_pretrained(str(directory), **kwargs)

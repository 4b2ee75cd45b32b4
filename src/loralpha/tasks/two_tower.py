"""Two-tower contrastive models (CLIP-style), their loss and their held-out metrics, for `clip-digits` and
for any image tower + text tower a user brings (a `transformers.CLIPModel` goes through the same code).

Model. Two towers, each ending in a linear projection into one shared embedding space, and a learnable
logit scale (CLIP's temperature, stored as its log, init ln(1/0.07), used clamped at 100):

    u_i = normalize(P_img · f(image_i)),   v_j = normalize(P_txt · g(caption_j)),   S_ij = exp(s) · ⟨u_i, v_j⟩
    L = ½ · [ CE(S, diag) + CE(Sᵀ, diag) ]       (the symmetric InfoNCE of a batch of n pairs)

`TwoTower` names its parts as `transformers.CLIPModel` does (`vision_model`, `text_model`,
`visual_projection`, `text_projection`, `logit_scale`), so a real CLIP goes through the same code path:
with `model=` (a hub id or a folder of `CLIPModel` + tokenizer + image processor) its towers, projections
and logit scale are taken as they are, its towers pooled as CLIP pools them. The projections and the scale
are the task's heads: trained fully under every rule (PEFT `modules_to_save`), at the task's head rate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from .base import check_model_source

CLIP_LOGIT_INIT = math.log(1 / 0.07)  # CLIP's initial temperature 0.07
MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(s) at 100

class LogitScale(nn.Module):
    """CLIP's learnable temperature: s (a log), used as exp(s) clamped at MAX_LOGIT_SCALE. A module so that
    PEFT can train it as a head (modules_to_save)."""

    def __init__(self, init: float = CLIP_LOGIT_INIT):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> torch.Tensor:
        return self.value.exp().clamp(max=MAX_LOGIT_SCALE)


class TwoTower(nn.Module):
    """Image tower + text tower, each projected into the shared space, and the logit scale.

    `image_pooling`: "none" (the tower returns features, as DigitCNN) or "pooler" (CLIP: its
    `pooler_output`); `text_pooling`: "mean" (masked mean of the last hidden states) or "pooler"
    (CLIP's text model: the end-of-text token). `forward` returns (image embeddings or None, text
    embeddings or None, exp(s)), the embeddings projected but not normalised."""

    def __init__(self, vision_model: nn.Module, text_model: nn.Module, visual_projection: nn.Module,
                 text_projection: nn.Module, logit_scale: float = CLIP_LOGIT_INIT, image_pooling: str = "none",
                 text_pooling: str = "mean"):
        super().__init__()
        self.vision_model, self.text_model = vision_model, text_model
        self.visual_projection, self.text_projection = visual_projection, text_projection
        self.logit_scale = LogitScale(logit_scale)
        self.image_pooling, self.text_pooling = image_pooling, text_pooling

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.vision_model(pixel_values)
        if self.image_pooling == "pooler":
            out = out.pooler_output
        return self.visual_projection(out)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        if self.text_pooling == "pooler":
            pooled = out.pooler_output
        else:
            mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.text_projection(pooled)

    def forward(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None):
        images = self.encode_image(pixel_values) if pixel_values is not None else None
        texts = None
        if input_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            texts = self.encode_text(input_ids, attention_mask)
        return images, texts, self.logit_scale()


def info_nce(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE of n pairs (row i of each is pair i): the mean of the image→text and
    text→image cross-entropies of the logits scale · cos(u_i, v_j), the matching pair as the class."""
    u, v = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    logits = scale * u @ v.T
    target = torch.arange(len(u), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def zero_shot_accuracy(image_emb: torch.Tensor, class_emb: torch.Tensor, labels: torch.Tensor) -> float:
    """Zero-shot classification by caption similarity: `class_emb` is (templates, classes, d), one caption
    per class and template; an image is classed by its most similar caption of a template (cosine), and the
    accuracy is averaged over the templates."""
    u = F.normalize(image_emb, dim=-1)
    v = F.normalize(class_emb, dim=-1)
    predicted = torch.einsum("nd,tcd->tnc", u, v).argmax(-1)  # (templates, n)
    return float((predicted == labels.unsqueeze(0)).double().mean())


def recall_at_1(image_emb: torch.Tensor, text_emb: torch.Tensor, caption_ids: torch.Tensor) -> float:
    """Image→text recall@1 over n pairs: the share of images whose most similar caption (cosine, over the
    n captions) is their own; `caption_ids` numbers the captions' texts, so an equal text counts as own."""
    sims = F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    return float((caption_ids[sims.argmax(-1)] == caption_ids).double().mean())


def quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_error(source: str, kind: str, e: Exception) -> UsageError:
    where = "local path" if Path(source).exists() else "hub id (or it is unreachable offline)"
    return UsageError(f"cannot load a {kind} from {source!r} as a {where}: {str(e).splitlines()[0] if str(e) else e}")


def load_clip(model: str) -> tuple[TwoTower, Any, Any]:
    """(the two-tower model of a `transformers.CLIPModel`, its tokenizer, its image processor), from a hub id
    or a folder with the model, the tokenizer and the image processor (save_pretrained of each)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, CLIPModel

    quiet_transformers()
    check_model_source(model, "CLIP model")
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise load_error(model, "CLIP model", e) from None
    if config.model_type != "clip":
        raise UsageError(f"model= takes a CLIP model (transformers CLIPModel) for both towers; {model!r} is a "
                         f"{config.model_type!r} model (give a text encoder as text_model=)")
    try:
        clip = CLIPModel.from_pretrained(model)
        tokenizer = AutoTokenizer.from_pretrained(model)
        processor = AutoImageProcessor.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise load_error(model, "CLIP model, tokenizer and image processor", e) from None
    return clip_two_tower(clip), tokenizer, processor


def clip_two_tower(clip: nn.Module) -> TwoTower:
    """A CLIPModel's towers, projections and logit scale as a TwoTower (shared modules, not copies)."""
    return TwoTower(clip.vision_model, clip.text_model, clip.visual_projection, clip.text_projection,
                    logit_scale=float(clip.logit_scale.detach()), image_pooling="pooler", text_pooling="pooler")

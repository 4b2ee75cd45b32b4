"""Your (image, caption) pairs: a .csv (header row) or .jsonl file with an image column (a path, relative to
the file, of an image file or a .npy array) and a caption column, read into float images in [0, 1]; a bad row
is one line naming the file and the row (its line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .text_data import csv_with_columns, jsonl_rows

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _image(value: Any, base: Path, where: str) -> np.ndarray:
    """The image a pairs row names, as an (H, W) or (H, W, 3) float array in [0, 1]."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: the image value must be a path to an image file or a .npy array")
    path = Path(value.strip()).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise UsageError(f"{where}: image file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"{where}: cannot read {path} as a .npy array ({e})") from None
        if array.dtype.kind in "iub":
            array = array.astype(np.float32) / 255
        elif array.dtype.kind == "f":
            array = array.astype(np.float32)
            if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
                raise UsageError(f"{where}: {path} holds floats outside [0, 1]; give intensities in [0, 1] "
                                 "(or integers 0-255)")
        else:
            raise UsageError(f"{where}: {path} holds {array.dtype} values, not pixel intensities")
    elif suffix in IMAGE_EXTENSIONS:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                array = np.asarray(im.convert("L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB"),
                                   dtype=np.float32) / 255
        except (OSError, UnidentifiedImageError) as e:
            raise UsageError(f"{where}: cannot read {path} as an image ({e})") from None
    else:
        raise UsageError(f"{where}: {path} is neither an image file ({', '.join(IMAGE_EXTENSIONS)}) nor a .npy array")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)) or min(array.shape[:2]) < 1:
        raise UsageError(f"{where}: {path} has shape {tuple(array.shape)}; an image is H×W (grayscale), H×W×1 "
                         "or H×W×3 (RGB)")
    return array


def read_pairs(path: str | Path, image_column: str = "image",
               caption_column: str = "caption") -> tuple[list[np.ndarray], list[str], list[str]]:
    """(images, captions, where each row came from) of a .csv or .jsonl pairs file; a bad row is a
    UsageError naming the file and the row (its line)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"pairs file {path} does not exist; give a .csv or .jsonl with {image_column!r} "
                         f"and {caption_column!r} columns")
    rows: list[tuple[str, Any]] = []
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            reader = csv_with_columns(f, path, (image_column, caption_column))
            for row in reader:
                if None in row:  # more fields than the header names
                    raise UsageError(f"{path}:{reader.line_num}: the row has more fields than the header")
                rows.append((f"{path}:{reader.line_num}", row))
    elif path.suffix.lower() in (".jsonl", ".json"):
        for n, row in jsonl_rows(path):
            if not isinstance(row, dict):
                raise UsageError(f"{path}:{n}: expected a JSON object with {image_column!r} and {caption_column!r}")
            rows.append((f"{path}:{n}", row))
    else:
        raise UsageError(f"pairs file {path} must end in .csv or .jsonl")
    if not rows:
        raise UsageError(f"pairs file {path} has no rows")
    images, captions, wheres = [], [], []
    for where, row in rows:
        text = row.get(caption_column)
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"{where}: row has no caption (column {caption_column!r})")
        images.append(_image(row.get(image_column), path.parent, where))
        captions.append(text.strip())
        wheres.append(where)
    return images, captions, wheres

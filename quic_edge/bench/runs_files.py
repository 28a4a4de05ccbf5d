"""Finished training runs kept in results files, read back to seed a work folder (`bench compare --runs-from`).

A results file pair, as `bench compare`, `bench ablation` and `bench curve` write them (and as benchmarks/results
holds them): `<stem>.json` (the summary: its `settings`, and every run it used, under `runs`) and, where kept,
`<stem>_runs.jsonl` (one run per line). Either file names the pair. Its runs seed a work folder only when they were
made with the folder's data settings, read from the summary; a learning curve's runs each were made at their own
training size (the run's `n_train`; in curves written before runs carried it, the one of the curve's sizes whose step
count the run took). Every run is checked at the door, its step count against its data settings too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# What decides a run's numbers besides its (adapter, lr, head_lr, task, seed) key: runs made with other values of
# these are never reused. The schedule joined later: folders made before there was a choice hold constant-rate runs.
DATA_SETTINGS = ("n_train", "n_val", "n_test", "epochs", "batch_size", "seq_len", "quick")
RUNS_SUFFIX = "_runs.jsonl"


def data_settings(values: dict[str, Any]) -> str:
    """The settings a run's numbers depend on (from a settings dict), as a work folder's settings.json holds them."""
    keyed = {k: v for k, v in values.items() if k in DATA_SETTINGS}
    if values.get("schedule", "constant") != "constant":
        keyed["schedule"] = values["schedule"]
    return json.dumps(keyed, sort_keys=True)


def pair_of(path: str | Path) -> tuple[Path, Path]:
    """(summary, runs file) of the pair `path` names, either of them."""
    path = Path(path)
    if path.name.endswith(RUNS_SUFFIX):
        return path.with_name(path.name[: -len(RUNS_SUFFIX)] + ".json"), path
    return path, path.with_name(path.stem + RUNS_SUFFIX)


def read_runs(path: str | Path, known_adapters: set[str], known_tasks: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The runs of the results pair `path` names (the summary's, then the runs file's: either may be missing, not
    both) by the data settings each was made with; each run checked. Raises ValueError saying what is wrong and
    where."""
    summary_file, runs_file = pair_of(path)
    if not summary_file.is_file():
        raise ValueError(f"--runs-from {path}: no summary {summary_file.name} beside it; the runs are reused only with "
                         "the settings they were made with, which that file holds (give a .json a benchmark wrote)")
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--runs-from {summary_file}: not a JSON summary ({error})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("settings"), dict):
        raise ValueError(f"--runs-from {summary_file}: no settings in it; give a summary `bench compare` or "
                         "`bench ablation` wrote")
    rows = summary.get("runs") or []
    if not isinstance(rows, list):
        raise ValueError(f"--runs-from {summary_file}: its `runs` is not a list of runs")
    where = [f"{summary_file.name}, run {i + 1}" for i in range(len(rows))]
    if runs_file.is_file():
        try:
            text = runs_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"--runs-from {runs_file}: not a text file of runs ({error})") from None
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"--runs-from {runs_file}, line {number}: not JSON ({error})") from None
                where.append(f"{runs_file.name}, line {number}")
    if not rows:
        raise ValueError(f"--runs-from {path}: holds no runs (neither {summary_file.name}'s `runs` nor "
                         f"{runs_file.name})")
    settings, found = summary["settings"], {}
    for row, place in zip(rows, where, strict=True):
        problem = row_problem(row, known_adapters, known_tasks) or _size_problem(row, settings)
        if problem:
            raise ValueError(f"--runs-from {place}: {problem}; the file was not written by a benchmark, or was "
                             "changed since")
        made_with = settings | {"n_train": _size_of(row, settings)}
        found.setdefault(data_settings(made_with), []).append(row)
    return found


def _steps(settings: dict[str, Any], n_train: int) -> int:
    """The steps a run takes over n_train examples (the device loop trains on full batches only)."""
    return n_train // settings["batch_size"] * settings["epochs"]


def _size_of(row: dict[str, Any], settings: dict[str, Any]) -> Any:
    """The training size a run was made at: its own `n_train` in a curve, else the summary's; in a curve written
    before runs carried their size, the one of its sizes whose step count the run took (None if not exactly one)."""
    if "sizes" not in settings:
        return settings.get("n_train")
    if "n_train" in row:
        return row["n_train"]
    sizes = [n for n in settings["sizes"] if _steps(settings, n) == row["steps"]]
    return sizes[0] if len(sizes) == 1 else None


def _size_problem(row: dict[str, Any], settings: dict[str, Any]) -> str:
    """What is wrong with a run's training size and step count, against the summary's settings ("" when nothing)."""
    for name in ("batch_size", "epochs"):
        if not isinstance(settings.get(name), int) or isinstance(settings[name], bool) or settings[name] < 1:
            return f"the summary's {name} {settings.get(name)!r} is not a whole number >= 1"
    sizes = settings.get("sizes", [])
    if not isinstance(sizes, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
        return f"the summary's sizes {sizes!r} is not a list of training sizes"
    size = _size_of(row, settings)
    if "sizes" in settings and size is None:
        return (f"its {row['steps']} steps match no single training size of the curve's {settings['sizes']}, and "
                "it names none (n_train)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return f"n_train {size!r} is not a whole number >= 1"
    if "sizes" not in settings and row.get("n_train", size) != size:
        return f"n_train {row['n_train']!r} is not the summary's {size}"
    if "sizes" in settings and size not in settings["sizes"]:
        return f"n_train {size} is not one of the curve's sizes {settings['sizes']}"
    if row["steps"] != _steps(settings, size):
        return (f"it took {row['steps']} steps, where {size} examples x {settings['epochs']} epochs in batches of "
                f"{settings['batch_size']} take {_steps(settings, size)}")
    return ""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def row_problem(row: Any, known_adapters: set[str], known_tasks: set[str]) -> str:
    """What is wrong with one run as read from a file ("" when nothing is)."""
    if not isinstance(row, dict):
        return f"a run is a JSON object, got {type(row).__name__}"
    if not isinstance(row.get("adapter"), str) or row["adapter"] not in known_adapters:
        return f"adapter {row.get('adapter')!r} is not one this toolkit knows"
    if not isinstance(row.get("task"), str) or row["task"] not in known_tasks:
        return f"task {row.get('task')!r} is not one of the suite's"
    seed = row.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        return f"seed {seed!r} is not a whole number >= 0"
    head_lr = row.get("head_lr")
    for name, value in (("lr", row.get("lr")), ("head_lr", head_lr)):
        if name == "head_lr" and value is None:
            continue
        if not _number(value) or not 0 < value < math.inf:
            return f"{name} {value!r} is not a positive learning rate"
    for name in ("val", "test"):
        if not _number(row.get(name)) or not 0 <= row[name] <= 1:
            return f"{name} accuracy {row.get(name)!r} is not a number between 0 and 1"
    for name in ("steps", "trainable", "adapter_numbers", "delta_bytes"):
        value = row.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{name} {value!r} is not a whole number >= 0"
    if not _number(row.get("train_seconds")) or not 0 <= row["train_seconds"] < math.inf:
        return f"train_seconds {row.get('train_seconds')!r} is not a number of seconds"
    for name in ("first_loss", "last_loss"):  # a diverged run's loss may be NaN: it is kept as it was
        if not _number(row.get(name)):
            return f"{name} {row.get(name)!r} is not a number"
    return ""

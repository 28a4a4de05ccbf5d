"""argparse types that several commands share: a bad value is refused while the command line is parsed (exit 2, the
option named), before any work, not when the value is first used, minutes or hours later."""

from __future__ import annotations

import argparse
from pathlib import Path

MAX_SEED = 2**32 - 1  # the widest range every generator the commands seed (NumPy's legacy one included) accepts


def seed(text: str) -> int:
    """A seed: a whole number from 0 to MAX_SEED."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a whole number from 0 to {MAX_SEED}, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"give a whole number from 0 to {MAX_SEED}, got {value}")
    return value


def output_file(text: str) -> str:
    """A file a command writes when it ends (--json): named, not a folder, in a folder that exists."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("name a file to write, got an empty name")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name a file (e.g. {path / 'summary.json'})")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {path.parent} does not exist; create it, or name a file in a "
                                         "folder that does")
    return text

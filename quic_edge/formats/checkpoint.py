"""A device checkpoint's `state.json`: the step, the runtime, the sha256 of every file beside it, and the identity of
the bundle it trains (quic_edge.formats.identity), so a checkpoint of another bundle is never resumed. Torch-free; the
Android app writes the same (CheckpointStore.kt).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .identity import IDENTITY_KEYS, IdentityError, identity_of

STATE_FILE = "state.json"
MAX_STATE_BYTES = 1 << 20


class CheckpointStateError(ValueError):
    """A state.json that cannot be trusted (unreadable, incomplete, or of another bundle)."""


def state_bytes(step: int, runtime: str, files: dict[str, str], identity: dict[str, str]) -> bytes:
    """The state.json of a checkpoint: files maps each file name in the folder to its sha256."""
    return json.dumps({"step": step, "runtime": runtime, "sha256": files, **{k: identity[k] for k in IDENTITY_KEYS}},
                      sort_keys=True).encode()


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed, checked state.json: step (int >= 0), runtime (str), sha256 (file -> hex digest, plain file names
    only), identity keys."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise CheckpointStateError(f"{path} is too large for a checkpoint state")
        state = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointStateError(f"{path} is unreadable ({type(err).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointStateError(f"{path} is not a JSON object")
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointStateError(f"{path}: step must be an integer >= 0, got {step!r}")
    if not isinstance(state.get("runtime"), str):
        raise CheckpointStateError(f"{path}: runtime must be a string")
    files = state.get("sha256")
    if not isinstance(files, dict) or not files:
        raise CheckpointStateError(f"{path}: sha256 must map the checkpoint's files to their digests")
    for name, digest in files.items():
        if not name or "/" in name or "\\" in name or name in (".", "..", STATE_FILE) or "\x00" in name:
            raise CheckpointStateError(f"{path}: {name!r} is not a file name of this folder")
        if not isinstance(digest, str) or len(digest) != 64:
            raise CheckpointStateError(f"{path}: the sha256 of {name!r} is not a hex digest")
    try:
        identity_of(state)
    except IdentityError as err:
        raise CheckpointStateError(f"{path}: {err}") from None
    return state

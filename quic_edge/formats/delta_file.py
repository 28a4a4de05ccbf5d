"""The personal delta file: trained tensors in safetensors, with the identity of the base and adapter they belong to.

Torch-free: device loops write it (DeviceLoop.export_delta), PyTorch reads it (quic_edge.load_delta, from_delta),
serving sessions and fleet servers read it too. Format 2 stores the identity (quic_edge.formats.identity). Format 1
files are refused with a message: their base fingerprint was taken before quantization, so it cannot be compared.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .atomic import atomic_write_bytes
from .identity import IDENTITY_KEYS, IdentityError, identity_of

DELTA_FORMAT = "quic-edge-delta"
DELTA_FORMAT_VERSION = 2
MAX_DELTA_BYTES = 2**31  # a personal delta is kilobytes to megabytes; refuse to read anything absurd


class DeltaError(ValueError):
    """A delta file that cannot be used; the message says which file, what is wrong and what to do."""


def write_delta_file(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], identity: dict[str, str], base_model: str = ""
) -> Path:
    """Write float32 tensors and the identity atomically (a crash leaves the previous file); refuses NaN and infinities."""
    arrays = {}
    for name, array in tensors.items():
        arrays[name] = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(arrays[name]).all():
            raise DeltaError(f"{name} holds NaN or infinite values; nothing was written to {path}")
    metadata = {"format": DELTA_FORMAT, "format_version": str(DELTA_FORMAT_VERSION), "base_model": base_model,
                **{key: identity[key] for key in IDENTITY_KEYS}}
    return atomic_write_bytes(path, st_save(arrays, metadata=metadata))


def read_delta_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of a delta file, checked: format, version, identity fields, float32 finite values."""
    path = Path(path)
    if not path.is_file():
        raise DeltaError(f"delta file not found: {path}")
    if path.stat().st_size > MAX_DELTA_BYTES:
        raise DeltaError(f"{path} is {path.stat().st_size:,} bytes, far larger than any delta; is it the right file?")
    data = path.read_bytes()
    try:
        metadata = _metadata(data)
        tensors = st_load(data)
    except (SafetensorError, ValueError, OverflowError, UnicodeDecodeError, TypeError) as err:
        raise DeltaError(f"{path} is not a readable safetensors delta ({_one_line(err)}); export it again") from None
    if metadata.get("format") != DELTA_FORMAT:
        raise DeltaError(f"{path} is not a quic-edge delta (format {metadata.get('format')!r})")
    version = metadata.get("format_version", "")
    if not version.isdigit() or not 1 <= int(version):
        raise DeltaError(f"{path}: format_version {version!r} is not a positive integer; export the delta again")
    if int(version) > DELTA_FORMAT_VERSION:
        raise DeltaError(
            f"{path} has delta format {version}, newer than this quic-edge reads ({DELTA_FORMAT_VERSION}); upgrade quic-edge"
        )
    if int(version) == 1:
        raise DeltaError(f"{path} is a format 1 delta from quic-edge 0.1, whose base fingerprint cannot be compared with this "
                         "version's; train the delta again (or load it with quic-edge 0.1)")
    try:
        identity_of(metadata)
    except IdentityError as err:
        raise DeltaError(f"{path}: {err}") from None
    for name, array in tensors.items():
        if array.dtype != np.float32:
            raise DeltaError(f"{path}: {name} is {array.dtype}; a delta holds float32 tensors")
        if not np.isfinite(array).all():
            raise DeltaError(f"{path}: {name} holds NaN or infinite values; train again from the last good checkpoint")
    return tensors, metadata


def _metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise ValueError(f"header length {header_len} beyond the end of the file")
    header = json.loads(data[8 : 8 + header_len])
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("__metadata__ must map names to strings")
    return metadata


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__

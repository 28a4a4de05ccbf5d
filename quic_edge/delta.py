"""Personal deltas: the trained angles (and head) in safetensors, with metadata that ties them to a base.

The file functions are numpy-only so device loops write the same format without torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .atomic import atomic_write_bytes

DELTA_FORMAT = "quic-edge-delta"
DELTA_FORMAT_VERSION = 1


class DeltaError(ValueError):
    """A delta file that cannot be used with this model."""


def write_delta_file(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], *, base_fingerprint: str, config_json: str,
    quantize: str | None, base_model: str = "",
) -> Path:
    """Write tensors and metadata atomically (the previous file survives a crash)."""
    metadata = {
        "format": DELTA_FORMAT,
        "format_version": str(DELTA_FORMAT_VERSION),
        "base_fingerprint": base_fingerprint,
        "base_model": base_model,
        "config": config_json,
        "quantize": str(quantize),
    }
    arrays = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in tensors.items()}
    return atomic_write_bytes(path, st_save(arrays, metadata=metadata))


def read_delta_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read and check a delta file: (tensors, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise DeltaError(f"delta file not found: {path}")
    try:
        data = path.read_bytes()
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, OSError) as err:
        raise DeltaError(f"{path} is not a readable safetensors delta ({err}); export it again") from None
    if metadata.get("format") != DELTA_FORMAT:
        raise DeltaError(f"{path} is not a quic-edge delta (format {metadata.get('format')!r})")
    version = int(metadata.get("format_version", "0"))
    if version > DELTA_FORMAT_VERSION:
        raise DeltaError(
            f"{path} has delta format {version}, newer than this quic-edge reads ({DELTA_FORMAT_VERSION}); upgrade quic-edge"
        )
    return tensors, metadata


def save_delta(model: Any, path: str | os.PathLike) -> Path:
    """Save the trainable tensors (angles and head) of a QuIC model to a safetensors delta."""
    config = _require_quic(model)
    tensors = {
        name: p.detach().cpu().float().numpy() for name, p in model.named_parameters() if p.requires_grad
    }
    return write_delta_file(
        path, tensors, base_fingerprint=model.quic_fingerprint, config_json=config.to_json(),
        quantize=model.quic_quantize, base_model=getattr(model, "quic_base_name", ""),
    )


def load_delta(model: Any, path: str | os.PathLike) -> Any:
    """Load a delta onto a QuIC model with the same base and config; a mismatch raises DeltaError."""
    config = _require_quic(model)
    tensors, meta = read_delta_file(path)
    if meta["base_fingerprint"] != model.quic_fingerprint:
        raise DeltaError(
            f"{path} was trained on base {meta.get('base_model') or '?'} (fingerprint {meta['base_fingerprint'][:12]}), "
            f"but this model's base is {getattr(model, 'quic_base_name', '?')} (fingerprint {model.quic_fingerprint[:12]}): "
            "load the delta onto the base it was trained on"
        )
    if meta["config"] != config.to_json():
        raise DeltaError(f"{path} was trained with config {meta['config']}, but this model has {config.to_json()}")
    if meta["quantize"] != str(model.quic_quantize):
        raise DeltaError(f"{path} was trained with quantize={meta['quantize']}, this model has {model.quic_quantize}")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(tensors):
        missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        raise DeltaError(f"{path} does not match this model's trainable tensors (missing {missing}, unexpected {extra})")
    for name, p in params.items():
        if tuple(tensors[name].shape) != tuple(p.shape):
            raise DeltaError(f"{path}: {name} has shape {tensors[name].shape}, the model expects {tuple(p.shape)}")
    for name, p in params.items():
        p.data.copy_(p.data.new_tensor(tensors[name]))
    return model


def _require_quic(model: Any) -> Any:
    config = getattr(model, "quic_config", None)
    if config is None:
        raise DeltaError("this model has no QuIC adapters: call quic_edge.apply_quic(model, config) first")
    return config

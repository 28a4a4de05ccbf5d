"""Personal deltas in PyTorch: save a model's delta, load one onto the matching model, or build that model from it.

    save_delta(model, "me.safetensors")        # the angles and the head, with the identity of base and adapter
    load_delta(model, "me.safetensors")        # refuses another base, adapter or config
    model = from_delta("me.safetensors")       # the base (by its recorded name), QuIC applied, the delta loaded

The file format lives in quic_edge.formats.delta_file (torch-free, shared with the device loops).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .formats.delta_file import DELTA_FORMAT, DELTA_FORMAT_VERSION, DeltaError, read_delta_file, write_delta_file
from .formats.identity import IdentityError, check_identity, identity_of
from .state import AdapterError, delta_parameters, state_of

__all__ = ["DELTA_FORMAT", "DELTA_FORMAT_VERSION", "DeltaError", "from_delta", "load_delta", "read_delta_file",
           "save_delta", "write_delta_file"]


def save_delta(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save the model's delta (quic_edge.state.delta_parameters) to a safetensors file, atomically."""
    state = _state(model)
    tensors = {name: p.detach().cpu().float().numpy() for name, p in delta_parameters(model).items()}
    return write_delta_file(path, tensors, state.identity(), state.base_model)


def load_delta(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a delta onto a model with the same base, adapter and config; any mismatch raises DeltaError."""
    state = _state(model)
    tensors, meta = read_delta_file(path)
    try:
        check_identity(state.identity(), identity_of(meta), f"delta {path} (base {meta.get('base_model') or '?'})")
    except IdentityError as err:
        raise DeltaError(str(err)) from None
    params = delta_parameters(model)
    if set(params) != set(tensors):
        missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        raise DeltaError(f"{path} does not match this model's delta tensors (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, p in params.items():
        if tuple(tensors[name].shape) != tuple(p.shape):
            raise DeltaError(f"{path}: {name} has shape {tensors[name].shape}, the model expects {tuple(p.shape)}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.from_numpy(tensors[name]))
    return model


def from_delta(path: str | os.PathLike, base: nn.Module | str | None = None, seed: int = 0,
               task: str | None = None) -> nn.Module:
    """The adapted model a QuIC delta was trained on, in eval mode: `base` (a model, or a name or model folder for
    quic_edge.models.load with the head the delta holds and `task`; default: the base named in the delta), QuIC
    applied with the delta's config and base dtype, the delta loaded (and checked against the base's fingerprint)."""
    from . import models
    from .config import QuICConfig
    from .model import apply_quic

    tensors, meta = read_delta_file(path)
    if meta["adapter"] != "quic":
        raise DeltaError(f"{path} is a {meta['adapter']} delta; from_delta builds QuIC models")
    if base is None or isinstance(base, str):
        name = base if isinstance(base, str) else meta.get("base_model") or ""
        try:
            base, _ = models.load(name, num_labels=_labels_of(tensors), seed=seed, task=task)
        except (ValueError, OSError) as err:
            raise DeltaError(f"{path}: its base {name!r} cannot be loaded ({err}); pass the base model as base=") from None
    try:
        config = QuICConfig.from_json(meta["config"])
    except ValueError as err:
        raise DeltaError(f"{path}: {err}") from None
    model = apply_quic(base, config, quantize=meta["base_dtype"] == "int8", base_model=meta.get("base_model", ""))
    return load_delta(model, path).eval()


def _labels_of(tensors: dict[str, Any]) -> int:
    """Outputs of the delta's classification head (`classifier` or `score`; of a two-layer head such as RoBERTa's, the
    layer no other feeds from); 2 when the delta holds no head."""
    weights = [t for n, t in sorted(tensors.items()) if n.split(".")[0] in ("classifier", "score") and t.ndim == 2]
    inputs = {t.shape[1] for t in weights}
    last = [t for t in weights if t.shape[0] not in inputs] or weights
    return int(last[-1].shape[0]) if last else 2


def _state(model: nn.Module) -> Any:
    try:
        return state_of(model)
    except AdapterError as err:
        raise DeltaError(str(err)) from None

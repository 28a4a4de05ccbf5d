"""What ties trained tensors to one base model and one adapter: the single identity check.

A delta (its metadata), a bundle (its manifest), a checkpoint (its state.json), a swappable inference graph (its
model metadata) and a fleet update all carry the same four strings, made by `make_identity` and compared by
`identity_mismatch`, so "the same base and adapter" means one thing everywhere. Torch-free.

    expected = identity_of(manifest)
    check_identity(expected, identity_of(delta_metadata), what="delta me.safetensors")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

IDENTITY_KEYS = ("adapter", "base_fingerprint", "config", "base_dtype")
ADAPTERS = ("quic", "lora", "head", "full")
BASE_DTYPES = ("int8", "fp32")


class IdentityError(ValueError):
    """Tensors trained on another base or adapter than the one at hand."""


def canonical_config(config: Any) -> str:
    """The one serialization of an adapter config: a QuICConfig's field dict (or its JSON text, or None) as sorted
    compact JSON. Lists and tuples compare equal."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            raise IdentityError(f"config: not valid JSON: {config[:80]!r}") from None
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def make_identity(adapter: str, base_fingerprint: str, config: Any, base_dtype: str) -> dict[str, str]:
    """The identity strings (IDENTITY_KEYS) of an adapted model, bundle or delta."""
    if adapter not in ADAPTERS:
        raise IdentityError(f"adapter: must be one of {ADAPTERS}, got {adapter!r}")
    if base_dtype not in BASE_DTYPES:
        raise IdentityError(f"base_dtype: must be one of {BASE_DTYPES}, got {base_dtype!r}")
    if not isinstance(base_fingerprint, str) or not base_fingerprint:
        raise IdentityError(f"base_fingerprint: must be a non-empty string, got {base_fingerprint!r}")
    return {"adapter": adapter, "base_fingerprint": base_fingerprint, "config": canonical_config(config),
            "base_dtype": base_dtype}


def identity_of(record: Mapping[str, Any]) -> dict[str, str]:
    """The identity stored in a manifest, delta metadata, checkpoint state or graph metadata (all use IDENTITY_KEYS);
    a missing key raises IdentityError naming it."""
    missing = [k for k in IDENTITY_KEYS if k not in record]
    if missing:
        raise IdentityError(f"no {', '.join(missing)} recorded: it was written by another tool or an old quic-edge")
    return make_identity(str(record["adapter"]), str(record["base_fingerprint"]), record["config"], str(record["base_dtype"]))


def identity_mismatch(expected: Mapping[str, str], got: Mapping[str, str]) -> str | None:
    """Why `got` is not `expected` (the first differing key, both values shortened), or None when they are equal."""
    for key in IDENTITY_KEYS:
        if expected.get(key) != got.get(key):
            return f"its {key} is {_short(got.get(key))}, expected {_short(expected.get(key))}"
    return None


def check_identity(expected: Mapping[str, str], got: Mapping[str, str], what: str) -> None:
    """Raise IdentityError when `what` (a file or update, named in the message) was trained on another base or adapter."""
    reason = identity_mismatch(expected, got)
    if reason:
        raise IdentityError(f"{what} belongs to another base or adapter: {reason}; use one trained on this base and config")


def _short(value: str | None, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."

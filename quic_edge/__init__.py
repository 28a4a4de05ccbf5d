"""quic-edge: QuIC adapters (arXiv 2502.06916) as fixed-size Givens ops, for on-device training.

    import quic_edge
    model, tokenizer = quic_edge.models.load("minilm", num_labels=3)
    model = quic_edge.apply_quic(model, quic_edge.QuICConfig(blocks=3, orders=(1, 2)))
    ...train quic_edge.trainable_parameters(model)...
    quic_edge.save_delta(model, "me.safetensors")

Names are imported lazily, so torch-free device loops (quic_edge.runtimes.ort) can import the package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "QuICConfig": "config",
    "compound": "compounds",
    "QuICLinear": "layer",
    "apply_quic": "model",
    "trainable_parameters": "model",
    "merge": "model",
    "unload": "model",
    "quantize_int8": "quantize",
    "dequantize": "quantize",
    "save_delta": "delta",
    "load_delta": "delta",
    "from_delta": "delta",
    "DeltaError": "delta",
    "AdapterState": "state",
}
_SUBMODULES = ("models", "data", "export", "runtimes", "formats", "training")

__all__ = [*_EXPORTS, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'quic_edge' has no attribute {name!r}")

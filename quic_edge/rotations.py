"""The rotations of all adapted layers, built in one batched computation per circuit shape (DESIGN.md section 2).

Every training step rebuilds every rotation. Built layer by layer, MiniLM's 12 adapted layers gave a 2,464-node
ONNX Runtime training graph (LoRA's: 910). Layers with the same circuit (n, orders, layout, depth and angle shape)
are stacked and built together (`quic_edge.layer.build_compounds`), and each layer reads its slice. `attach(model)`
runs this around the model's forward (hooks, so exporters trace it too); outside such a forward (`rotation()`,
merging) a layer builds its own through the same function.
"""

from __future__ import annotations

from torch import nn

from .layer import QuICLinear, build_compounds


def _build(model: nn.Module, args: tuple) -> None:
    layers = [m for m in model.modules() if isinstance(m, QuICLinear)]
    for layer, compounds in zip(layers, build_compounds(layers), strict=True):
        layer.batched_compounds = compounds


def _drop(model: nn.Module, args: tuple, output: object) -> None:
    for m in model.modules():
        if isinstance(m, QuICLinear):
            m.batched_compounds = None


def attach(model: nn.Module) -> None:
    """Build all rotations before each forward of `model` and drop them after it (also when it raises)."""
    model.register_forward_pre_hook(_build)
    model.register_forward_hook(_drop, always_call=True)

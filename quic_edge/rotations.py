"""The rotations of all adapted layers, built in one batched computation per circuit shape (DESIGN.md section 2).

Every training step rebuilds every rotation. Built layer by layer, MiniLM's 12 adapted layers gave a 2,464-node
ONNX Runtime training graph (LoRA's: 910). Layers with the same circuit (n, orders, layout, depth and angle shape)
are stacked and built together, and each layer reads its slice. `attach(model)` runs this around the model's
forward (hooks, so exporters trace it too); outside such a forward (`rotation()`, merging) a layer builds its own.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from .compounds import compound
from .givens import chain_product, orthogonal
from .layer import QuICLinear


def circuit_key(layer: QuICLinear) -> tuple:
    c = layer.config
    return layer.n, c.orders, c.layout, c.depth, tuple(layer.angles.shape)


def build_compounds(layers: list[QuICLinear]) -> list[list[torch.Tensor]]:
    """For each layer, its compounds [copies, C(n, k), C(n, k)] per order, built in one batch per circuit shape."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, layer in enumerate(layers):
        groups[circuit_key(layer)].append(i)
    result: list[list[torch.Tensor]] = [[] for _ in layers]
    for (n, orders, layout, depth, _), members in groups.items():
        angles = torch.stack([layers[i].angles for i in members])  # (L, chain, copies, gates)
        A = chain_product(orthogonal(angles, n, layout, depth))  # (L, copies, n, n)
        for k in orders:
            C = compound(A, k)  # (L, copies, ck, ck)
            for slot, i in enumerate(members):
                result[i].append(C[slot])
    return result


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

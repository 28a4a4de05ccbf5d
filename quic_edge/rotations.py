"""The "angles -> rotations" step of an adapted model, owned by one module (DESIGN.md section 2).

Every training step rebuilds every rotation. Built layer by layer, MiniLM's 12 adapted layers gave a 2,464-node
ONNX Runtime training graph (LoRA's: 910). `Rotations` groups the layers by circuit (n, orders, layout, depth and
angle shape), holds each circuit's static index and selection tables as non-persistent buffers (so `.to()` moves
them, nothing is global, and an exporter sees the same constants whether or not the model ran before), builds all
compounds of a group in one batch in its forward, and hands each layer its slice around the model's forward through
two hooks whose handles it keeps (`detach` removes them).
"""

from __future__ import annotations

import torch
from torch import nn

from .compounds import Selectors, selectors
from .givens import RoundTables, UpperTables, round_tables, upper_tables
from .layer import QuICLinear, build_compounds, circuit_key

ATTRIBUTE = "quic_rotations"  # the child name under which an adapted model holds its Rotations


class Rotations(nn.Module):
    """Builds the compounds of `layers` (QuICLinear modules of one model) in one batch per circuit shape."""

    def __init__(self, layers: list[QuICLinear]) -> None:
        super().__init__()
        self.layers = list(layers)  # a plain list: the layers stay children of the model, not of this module
        self.keys = list(dict.fromkeys(circuit_key(layer) for layer in self.layers))
        self.kinds: list[type[RoundTables] | type[UpperTables]] = []  # each circuit's table type, to rebuild it
        for g, (n, orders, layout, depth, _, matrix) in enumerate(self.keys):
            tables = upper_tables(n) if matrix == "unconstrained" else round_tables(n, layout, depth)
            self.kinds.append(type(tables))
            for name, table in tables._asdict().items():
                self.register_buffer(f"circuit{g}_{name}", table, persistent=False)
            for k in orders:
                if k > 1:
                    for side, tables_k in zip(Selectors._fields, selectors(n, k), strict=True):
                        for t, table in enumerate(tables_k):
                            self.register_buffer(f"circuit{g}_{side}{k}_{t}", table, persistent=False)
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def tables(self, key: tuple) -> tuple[RoundTables | UpperTables, dict[int, Selectors]]:
        g = self.keys.index(key)
        kind = self.kinds[g]
        rounds = kind(*(getattr(self, f"circuit{g}_{name}") for name in kind._fields))
        orders = key[1]
        return rounds, {k: Selectors(*(tuple(getattr(self, f"circuit{g}_{side}{k}_{t}") for t in range(k))
                                       for side in Selectors._fields)) for k in orders if k > 1}

    def forward(self) -> list[list[torch.Tensor]]:
        """Each layer's compounds, in the order of `layers`."""
        return build_compounds(self.layers, self.tables)

    def attach(self, model: nn.Module) -> None:
        """Register the hooks that build all rotations before each forward of `model` and drop them after it."""
        self.handles = [model.register_forward_pre_hook(_before), model.register_forward_hook(_after, always_call=True)]

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        for layer in self.layers:
            layer.batched_compounds = None


def _before(model: nn.Module, args: tuple) -> None:
    rotations = getattr(model, ATTRIBUTE)
    for layer, compounds in zip(rotations.layers, rotations(), strict=True):
        layer.batched_compounds = compounds


def _after(model: nn.Module, args: tuple, output: object) -> None:
    for layer in getattr(model, ATTRIBUTE).layers:
        layer.batched_compounds = None


def attach(model: nn.Module, layers: list[QuICLinear]) -> Rotations:
    """Give `model` its Rotations over `layers` (hooks included); returns it."""
    rotations = Rotations(layers)
    model.add_module(ATTRIBUTE, rotations)
    rotations.attach(model)
    return rotations


def remove(model: nn.Module) -> None:
    """Detach and delete the model's Rotations (after merging or unloading)."""
    rotations = getattr(model, ATTRIBUTE, None)
    if isinstance(rotations, Rotations):
        rotations.detach()
        delattr(model, ATTRIBUTE)

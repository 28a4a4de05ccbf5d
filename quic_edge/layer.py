"""QuICLinear: a frozen linear layer (fp32 or int8) followed by the QuIC rotation of its outputs.

y = (x W^T) R + b with R = blockdiag(B_1, ..., B_N, I_tail) and B_i = C_k1(A_i) (+) C_k2(A_i) (+) ... (+) I.
R is applied block by block on the activations, in one of two layouts with the same values: the blocks as a batch
axis (one batched product per order; the default, and what ONNX Runtime runs: the fewest graph nodes), or one 2-D
product per block and order on a column slice, with no transposes of the activations (what ExecuTorch runs: its
kernels copy for every layout op; `per_block_products`). R is never built densely except by `rotation()`, for tests
and merging. Inside an adapted model's forward the compounds of every layer are built together by the model's
rotation module (quic_edge.rotations) and handed to each layer; a layer on its own builds its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from math import comb

import torch
import torch.nn.functional as F
from torch import nn

from .compounds import Selectors, compound
from .config import QuICConfig, compound_width
from .givens import RoundTables, UpperTables, chain_product, gate_count, orthogonal, unconstrained
from .quantize import dequantized_weight, requantize_like
from .targets import is_linear, layer_dims


class QuICLinear(nn.Module):
    """The adapted layer. `angles` [chain, blocks or 1, gates] is its only trainable tensor; `base_layer` stays frozen.

    Example:
        >>> layer = QuICLinear.from_linear(nn.Linear(16, 12), QuICConfig(blocks=2, orders=(1, 2)))
        >>> layer.angles.shape, layer.n
        (torch.Size([1, 2, 3]), 3)
    """

    def __init__(self, base_layer: nn.Module, config: QuICConfig) -> None:
        super().__init__()
        self.base_layer = base_layer
        for p in self.base_layer.parameters():
            p.requires_grad_(False)
        self.config = config
        self.in_features, self.out_features = layer_dims(base_layer)
        self.n = config.block_dim(self.out_features)
        self.block_size = self.out_features // config.blocks
        self.gates = gate_count(self.n, config.layout, config.depth)
        copies = 1 if config.share_blocks else config.blocks
        self.angles = nn.Parameter(torch.zeros(config.chain, copies, self.gates))
        self.batched_compounds: list[torch.Tensor] | None = None  # set around a model's forward (quic_edge.rotations)
        self.per_block_products = False  # the layout of `rotate`; set while ExecuTorch traces (per_block_products)

    @classmethod
    def from_linear(cls, linear: nn.Module, config: QuICConfig) -> QuICLinear:
        """Wrap `linear` (an nn.Linear, an int8 Int8Linear or a Hugging Face Conv1D, kept as it is and frozen)."""
        if not is_linear(linear):
            raise ValueError(f"QuIC adapts linear layers (nn.Linear, Int8Linear, Conv1D), got {type(linear).__name__}")
        return cls(linear, config)

    @property
    def padding(self) -> int:
        """Identity features inside each block after the compounds."""
        return self.block_size - compound_width(self.n, self.config.orders)

    def orthogonal(self) -> torch.Tensor:
        """[chain, blocks or 1, n, n]: the matrix A of each chain copy and block (orthogonal unless the config asks
        for the unconstrained control)."""
        cfg = self.config
        if cfg.matrix == "unconstrained":
            return unconstrained(self.angles, self.n)
        return orthogonal(self.angles, self.n, cfg.layout, cfg.depth)

    def compounds(self) -> list[torch.Tensor]:
        """[blocks or 1, C(n, k), C(n, k)] for each order k, in config order."""
        if self.batched_compounds is not None:
            return self.batched_compounds
        return build_compounds([self])[0]

    def rotate(self, y: torch.Tensor) -> torch.Tensor:
        """y [..., d_out] -> y R, block by block, identity parts untouched (the layout: `per_block_products`)."""
        return self._rotate_per_block(y) if self.per_block_products else self._rotate_batched(y)

    def _rotate_batched(self, y: torch.Tensor) -> torch.Tensor:
        """The blocks as a batch axis: one batched product per order (the fewest graph nodes)."""
        cfg = self.config
        lead = y.shape[:-1]
        used = cfg.blocks * self.block_size
        head, tail = y.split([used, self.out_features - used], dim=-1) if used < self.out_features else (y, None)
        blocks = head.reshape(-1, cfg.blocks, self.block_size).transpose(0, 1)  # (N, T, b)
        compounds = self.compounds()  # C: (N or 1, ck, ck) per order
        widths = [C.shape[-1] for C in compounds]
        # split, not slices: a split's gradient is one concatenation, where each slice's is a zero tensor it scatters into
        parts = blocks.split([*widths, self.block_size - sum(widths)], dim=-1) if self.padding else blocks.split(widths, -1)
        pieces = [torch.matmul(part, C) for part, C in zip(parts, compounds, strict=False)]  # (N, T, ck)
        pieces += parts[len(compounds):]  # the identity part, untouched
        rotated = torch.cat(pieces, dim=-1).transpose(0, 1).reshape(*lead, used)
        return rotated if tail is None else torch.cat([rotated, tail], dim=-1)

    def _rotate_per_block(self, y: torch.Tensor) -> torch.Tensor:
        """One 2-D product per (block, order) on a column slice of y: the activations are never transposed."""
        cfg = self.config
        lead = y.shape[:-1]
        compounds = self.compounds()  # (N or 1, ck, ck) per order
        in_block = [C.shape[-1] for C in compounds] + ([self.padding] if self.padding else [])
        tail = self.out_features - cfg.blocks * self.block_size
        parts = y.reshape(-1, self.out_features).split(in_block * cfg.blocks + ([tail] if tail else []), dim=-1)
        per_block = [C.unbind(0) for C in compounds]  # unbind, not indexing: one stack in the gradient
        pieces = []
        for i in range(cfg.blocks):
            block = parts[i * len(in_block):(i + 1) * len(in_block)]
            pieces += [torch.matmul(part, M[i % len(M)]) for part, M in zip(block, per_block, strict=False)]
            pieces += block[len(compounds):]  # the identity part, untouched
        pieces += parts[cfg.blocks * len(in_block):]  # the tail beyond the blocks
        return torch.cat(pieces, dim=-1).reshape(*lead, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.base_layer.bias
        y = F.linear(x, dequantized_weight(self.base_layer))
        y = self.rotate(y)
        return y if bias is None else y + bias

    def rotation(self) -> torch.Tensor:
        """The dense d_out x d_out R (tests and merging only; never in a training graph)."""
        return self.rotate(torch.eye(self.out_features, dtype=self.angles.dtype, device=self.angles.device))

    @torch.no_grad()
    def to_linear(self) -> nn.Module:
        """The merged layer, of the base layer's own kind: W' = R^T W, bias unchanged (int8 again for an int8 base)."""
        if not torch.isfinite(self.angles).all():
            raise ValueError("angles hold NaN or infinite values: this adapter cannot be merged; load a good delta first")
        merged = self.rotation().T @ dequantized_weight(self.base_layer)
        linear = nn.Linear(merged.shape[1], merged.shape[0], bias=self.base_layer.bias is not None, dtype=merged.dtype)
        linear.weight.copy_(merged)
        if self.base_layer.bias is not None:
            linear.bias.copy_(self.base_layer.bias)
        linear.requires_grad_(False)
        return requantize_like(self.base_layer, linear)

    def extra_repr(self) -> str:
        c = self.config
        widths = ", ".join(f"C{k}:{comb(self.n, k)}" for k in c.orders)
        return f"d_out={self.out_features}, blocks={c.blocks}, b={self.block_size}, n={self.n}, [{widths}], pad={self.padding}"


@contextmanager
def per_block_products(model: nn.Module) -> Iterator[None]:
    """Every QuIC layer of `model` rotates with one 2-D product per block and order while this is active (the values
    are the same). ExecuTorch's portable kernels copy for every layout op, and without the batched layout's transposes
    a MiniLM QuIC (1,2) training step there is 5 to 14 % faster (three runs); ONNX Runtime pays per graph node instead,
    and there this layout's 1.4x more nodes gain nothing (1.01-1.06x the batched step in two runs; README, "Three ways
    to apply the rotation")."""
    layers = {m: m.per_block_products for m in model.modules() if isinstance(m, QuICLinear)}
    for layer in layers:
        layer.per_block_products = True
    try:
        yield
    finally:
        for layer, before in layers.items():
            layer.per_block_products = before


def circuit_key(layer: QuICLinear) -> tuple:
    """Layers with equal keys build their rotations in one batch: (n, orders, layout, depth, angle shape, matrix)."""
    c = layer.config
    return layer.n, c.orders, c.layout, c.depth, tuple(layer.angles.shape), c.matrix


CircuitTables = Callable[[tuple], tuple[RoundTables | UpperTables | None, dict[int, Selectors]]]


def build_compounds(layers: list[QuICLinear], tables: CircuitTables | None = None) -> list[list[torch.Tensor]]:
    """For each layer, its compounds [blocks or 1, C(n, k), C(n, k)] per order, one batched build per circuit.

    `tables(key)` gives a circuit's (round tables, selectors per order); None builds them afresh. A chain
    R_1 ... R_M is one block matrix blockdiag(C_k(A_1 ... A_M)) by Cauchy-Binet, so the chain copies' orthogonal
    matrices are multiplied before the compounds are taken.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, layer in enumerate(layers):
        groups[circuit_key(layer)].append(i)
    result: list[list[torch.Tensor]] = [[] for _ in layers]
    for key, members in groups.items():
        n, orders, layout, depth, _, matrix = key
        rounds, select = tables(key) if tables is not None else (None, {})
        angles = torch.stack([layers[i].angles for i in members])  # (L, chain, copies, gates)
        if matrix == "unconstrained":
            A = chain_product(unconstrained(angles, n, rounds))  # (L, copies, n, n)
        else:
            A = chain_product(orthogonal(angles, n, layout, depth, rounds))
        for k in orders:
            C = compound(A, k, select.get(k))  # (L, copies, ck, ck)
            # unbind, not indexing: its gradient is one stack, where each index's is a zero tensor it is written into
            for i, entries in zip(members, C.unbind(0), strict=True):
                result[i].append(entries)
    return result

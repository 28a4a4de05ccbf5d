"""Orthogonal matrices from Givens (RBS) rotations, as fixed-size ops (DESIGN.md section 2).

A gate on coordinates (i, j) with angle t maps x_i <- c x_i - s x_j, x_j <- s x_i + c x_j. A round is a
layer of disjoint gates. Each round is written into an n x n matrix by one static gather, and the rounds
are multiplied in a log-depth tree of batched matmuls: A = D_last ... D_first.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

Pair = tuple[int, int]


def planes_rounds(n: int) -> list[list[Pair]]:
    """Every pair (i, j), i < j, once, in round-robin (circle-method) order; n - 1 or n rounds."""
    m = n if n % 2 == 0 else n + 1
    idx = list(range(m))
    rounds = []
    for _ in range(m - 1):
        pairs = [(idx[k], idx[m - 1 - k]) for k in range(m // 2)]
        rounds.append([(min(p), max(p)) for p in pairs if n not in p])
        idx = [idx[0], idx[m - 1], *idx[1 : m - 1]]
    return rounds


def brick_rounds(n: int) -> list[list[Pair]]:
    """Nearest-neighbour pairs (p, p+1): even p in even rounds, odd p in odd rounds; n rounds."""
    return [[(p, p + 1) for p in range(layer % 2, n - 1, 2)] for layer in range(n)]


def circuit(n: int, layout: str = "planes", depth: int | None = None) -> list[list[Pair]]:
    """The first `depth` rounds (all when None) of a layout."""
    if layout not in ("planes", "brick"):
        raise ValueError(f"layout: must be 'planes' or 'brick', got {layout!r}")
    rounds = planes_rounds(n) if layout == "planes" else brick_rounds(n)
    if depth is not None:
        if depth > len(rounds):
            raise ValueError(f"depth: the {layout} circuit for n={n} has {len(rounds)} rounds, got depth={depth}")
        rounds = rounds[:depth]
    return [r for r in rounds if r]


def gate_count(n: int, layout: str = "planes", depth: int | None = None) -> int:
    return sum(len(r) for r in circuit(n, layout, depth))


class RoundTables(NamedTuple):
    """Static tables that turn per-gate (cos, sin, -sin) values into round matrices:
    D[r] = values[index[r]] * mask[r] + fixed[r], where fixed holds the 1s of coordinates no gate of round r touches."""

    index: torch.Tensor  # (R, n, n) long
    mask: torch.Tensor  # (R, n, n)
    fixed: torch.Tensor  # (R, n, n)


def round_tables(n: int, layout: str = "planes", depth: int | None = None) -> RoundTables:
    """The tables of a circuit, built afresh (a model keeps its own as buffers: quic_edge.rotations)."""
    rounds = circuit(n, layout, depth)
    gates = sum(len(r) for r in rounds)
    index = torch.zeros(len(rounds), n, n, dtype=torch.long)
    mask = torch.zeros(len(rounds), n, n)
    fixed = torch.eye(n).repeat(len(rounds), 1, 1)
    g = 0
    for r, pairs in enumerate(rounds):
        for i, j in pairs:
            for (row, col), slot in (((i, i), g), ((j, j), g), ((j, i), gates + g), ((i, j), 2 * gates + g)):
                index[r, row, col] = slot
                mask[r, row, col] = 1.0
                fixed[r, row, col] = 0.0
            g += 1
    return RoundTables(index, mask, fixed)


def round_matrices(angles: torch.Tensor, tables: RoundTables) -> torch.Tensor:
    """[..., gates] angles -> [..., rounds, n, n] round matrices (one static gather along the last axis: an ONNX
    Gather, whose gradient is cheaper than the GatherND that advanced indexing exports to)."""
    values = torch.cat([torch.cos(angles), torch.sin(angles), -torch.sin(angles)], dim=-1)  # (..., 3G)
    return place(values, tables)  # (..., R, n, n)


def place(values: torch.Tensor, tables: RoundTables) -> torch.Tensor:
    """[..., V] values -> [..., R, n, n]: values[index] where mask is 1, the fixed entries elsewhere."""
    gathered = values.index_select(-1, tables.index.reshape(-1)).reshape(*values.shape[:-1], *tables.index.shape)
    return gathered * tables.mask + tables.fixed


def ordered_product(mats: torch.Tensor) -> torch.Tensor:
    """[..., R, n, n] -> M[R-1] @ ... @ M[0], as a log-depth tree of batched matmuls."""
    while mats.shape[-3] > 1:
        count = mats.shape[-3]
        paired = mats[..., 1 : count - count % 2 : 2, :, :] @ mats[..., 0 : count - count % 2 : 2, :, :]
        if count % 2:
            paired = torch.cat([paired, mats[..., count - 1 :, :, :]], dim=-3)
        mats = paired
    return mats[..., 0, :, :]


def chain_product(mats: torch.Tensor) -> torch.Tensor:
    """[..., chain, copies, n, n] -> A_1 A_2 ... A_M [..., copies, n, n]: a chain of rotations as one block matrix,
    since R_1 ... R_M = blockdiag(C_k(A_1 ... A_M)) by Cauchy-Binet."""
    product = mats[..., 0, :, :, :]
    for m in range(1, mats.shape[-4]):
        product = product @ mats[..., m, :, :, :]
    return product


def orthogonal(
    angles: torch.Tensor, n: int, layout: str = "planes", depth: int | None = None, tables: RoundTables | None = None
) -> torch.Tensor:
    """[..., gates] angles -> [..., n, n] orthogonal matrices A = G_last ... G_first (det +1).

    `tables` (round_tables(n, layout, depth)) are built afresh when not given."""
    return ordered_product(round_matrices(angles, tables if tables is not None else round_tables(n, layout, depth)))


def unconstrained(values: torch.Tensor, n: int, tables: RoundTables | None = None) -> torch.Tensor:
    """[..., n(n-1)/2] free numbers -> [..., n, n] matrices I + T, T strictly upper triangular with the numbers in
    the planes circuit's pair order (the ablation's control: QuIC's parameter count without orthogonality).
    Built by the same static gather as a round (`tables`: upper_tables(n))."""
    return place(values, tables if tables is not None else upper_tables(n))[..., 0, :, :]


def upper_tables(n: int) -> RoundTables:
    """One 'round' holding every pair (i, j), i < j, of the planes order, placed above the diagonal; 1s on it."""
    pairs = [p for r in planes_rounds(n) for p in r]
    index = torch.zeros(1, n, n, dtype=torch.long)
    mask = torch.zeros(1, n, n)
    for g, (i, j) in enumerate(pairs):
        index[0, i, j] = g
        mask[0, i, j] = 1.0
    return RoundTables(index, mask, torch.eye(n).unsqueeze(0))

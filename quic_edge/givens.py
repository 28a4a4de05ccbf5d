"""Orthogonal matrices from Givens (RBS) rotations, as fixed-size ops (DESIGN.md section 2).

A gate on coordinates (i, j) with angle t maps x_i <- c x_i - s x_j, x_j <- s x_i + c x_j. A round is a
layer of disjoint gates. Each round is written into an n x n matrix by products with static tables (RoundTables),
and the rounds are multiplied in a log-depth tree of batched matmuls: A = D_last ... D_first.
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
    """Static tables that turn per-gate cosines and sines into round matrices by products and elementwise ops:
    D[r] = c[r] (row-wise) * identity + s[r] (row-wise) * partner[r] + fixed[r], with c = cos(angles) @ cos_rows and
    s = sin(angles) @ sin_rows read as [R, n]. A gate (i, j) of round r puts its cosine in rows i and j of c[r], its
    sine in row j and minus it in row i of s[r]; partner[r] links i and j; fixed holds the 1s of coordinates no gate of
    round r touches. No gathers: ONNX Runtime's CPU gradient of one (GatherGrad, a serial scatter-add) took 1.5 ms of
    QuIC (1,2)'s MiniLM step for this placement alone (quic_edge.compounds found the same for the minors), and a
    product's gradient is a product. Every column of cos_rows and sin_rows holds at most one nonzero (+-1), so the
    values are the same bit for bit."""

    cos_rows: torch.Tensor  # (G, R * n)
    sin_rows: torch.Tensor  # (G, R * n)
    identity: torch.Tensor  # (n, n)
    partner: torch.Tensor  # (R, n, n)
    fixed: torch.Tensor  # (R, n, n)


def round_tables(n: int, layout: str = "planes", depth: int | None = None) -> RoundTables:
    """The tables of a circuit, built afresh (a model keeps its own as buffers: quic_edge.rotations)."""
    rounds = circuit(n, layout, depth)
    gates = sum(len(r) for r in rounds)
    cos_rows = torch.zeros(gates, len(rounds), n)
    sin_rows = torch.zeros(gates, len(rounds), n)
    partner = torch.zeros(len(rounds), n, n)
    fixed = torch.eye(n).repeat(len(rounds), 1, 1)
    g = 0
    for r, pairs in enumerate(rounds):
        for i, j in pairs:
            cos_rows[g, r, i] = cos_rows[g, r, j] = 1.0
            sin_rows[g, r, i], sin_rows[g, r, j] = -1.0, 1.0
            partner[r, i, j] = partner[r, j, i] = 1.0
            fixed[r, i, i] = fixed[r, j, j] = 0.0
            g += 1
    return RoundTables(cos_rows.reshape(gates, -1), sin_rows.reshape(gates, -1), torch.eye(n), partner, fixed)


def round_matrices(angles: torch.Tensor, tables: RoundTables) -> torch.Tensor:
    """[..., gates] angles -> [..., rounds, n, n] round matrices (two small products with constants, no gathers)."""
    rounds, n = tables.partner.shape[0], tables.partner.shape[-1]
    c = (torch.cos(angles) @ tables.cos_rows.to(angles.dtype)).reshape(*angles.shape[:-1], rounds, n, 1)
    s = (torch.sin(angles) @ tables.sin_rows.to(angles.dtype)).reshape(*angles.shape[:-1], rounds, n, 1)
    # the constants at the rank of c and s: ExecuTorch's portable mul failed to size its output ("Failed to resize
    # output tensor") for [1, 1, 1, R, n, 1] * [n, n] (one adapted layer, one block), as in pytorch/executorch#10959
    lead = (1,) * (angles.dim() - 1)
    return c * tables.identity.reshape(*lead, 1, n, n) + s * tables.partner.reshape(*lead, rounds, n, n) + tables.fixed


def ordered_product(mats: torch.Tensor) -> torch.Tensor:
    """[..., R, n, n] -> M[R-1] @ ... @ M[0], as a log-depth tree of batched matmuls."""
    while mats.shape[-3] > 1:
        count = mats.shape[-3]
        paired = mats[..., 1 : count - count % 2 : 2, :, :] @ mats[..., 0 : count - count % 2 : 2, :, :]
        if count % 2:
            paired = torch.cat([paired, mats[..., count - 1 :, :, :]], dim=-3)
        mats = paired
    return mats.squeeze(-3)  # not indexing: an index exports to a Gather, whose gradient (GatherGrad) is slow


def chain_product(mats: torch.Tensor) -> torch.Tensor:
    """[..., chain, copies, n, n] -> A_1 A_2 ... A_M [..., copies, n, n]: a chain of rotations as one block matrix,
    since R_1 ... R_M = blockdiag(C_k(A_1 ... A_M)) by Cauchy-Binet."""
    first, *rest = mats.unbind(-4)  # not indexing: an index exports to a Gather, whose gradient (GatherGrad) is slow
    for copy in rest:
        first = first @ copy
    return first


def orthogonal(
    angles: torch.Tensor, n: int, layout: str = "planes", depth: int | None = None, tables: RoundTables | None = None
) -> torch.Tensor:
    """[..., gates] angles -> [..., n, n] orthogonal matrices A = G_last ... G_first (det +1).

    `tables` (round_tables(n, layout, depth)) are built afresh when not given."""
    return ordered_product(round_matrices(angles, tables if tables is not None else round_tables(n, layout, depth)))


class UpperTables(NamedTuple):
    """The unconstrained control's static tables: values @ place, read as [n, n], plus the identity."""

    place: torch.Tensor  # (n(n-1)/2, n * n): pair g of the planes order -> entry (i, j), i < j
    identity: torch.Tensor  # (n, n)


def unconstrained(values: torch.Tensor, n: int, tables: UpperTables | None = None) -> torch.Tensor:
    """[..., n(n-1)/2] free numbers -> [..., n, n] matrices I + T, T strictly upper triangular with the numbers in
    the planes circuit's pair order (the ablation's control: QuIC's parameter count without orthogonality).
    Placed by a product with a constant, as a round is (`tables`: upper_tables(n))."""
    tables = tables if tables is not None else upper_tables(n)
    return (values @ tables.place.to(values.dtype)).reshape(*values.shape[:-1], n, n) + tables.identity


def upper_tables(n: int) -> UpperTables:
    """Every pair (i, j), i < j, of the planes order, placed above the diagonal."""
    pairs = [p for r in planes_rounds(n) for p in r]
    place = torch.zeros(len(pairs), n, n)
    for g, (i, j) in enumerate(pairs):
        place[g, i, j] = 1.0
    return UpperTables(place.reshape(len(pairs), n * n), torch.eye(n))

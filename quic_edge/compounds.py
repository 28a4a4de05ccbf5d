"""Compound matrices C_k(A) from k x k minors, by static gathers and the Leibniz formula.

C_k(A)[I, J] = det(A[I, J]) for k-subsets I, J of {0..n-1} in lexicographic order. Each minor is a sum of
k! signed products of gathered entries: no det, no data-dependent shapes, so it exports to training
graphs. Cauchy-Binet, C_k(AB) = C_k(A) C_k(B), makes C_k(A) orthogonal when A is.

The entries A[I_t, J_u] are gathered by products with constant 0/1 selection matrices, P_t A P_u^T, not by index
gathers: ONNX Runtime's CPU gradient of a Gather (GatherGrad, a serial scatter-add) took about a fifth of QuIC (1,2)'s
kernel time in a MiniLM training step for the four [36, 105, 105] entry gathers (README, "ONNX Runtime on-device
training"); the products' gradients are products, and the values are the same bit for bit (one 1 per row).
"""

from __future__ import annotations

from itertools import combinations, permutations
from typing import NamedTuple

import torch


def _perm_sign(perm: tuple[int, ...]) -> int:
    inversions = sum(1 for a in range(len(perm)) for b in range(a + 1, len(perm)) if perm[a] > perm[b])
    return -1 if inversions % 2 else 1


def subset_table(n: int, k: int) -> torch.Tensor:
    """[k, C(n, k)]: row t holds the t-th element of every k-subset, subsets in lexicographic order (built afresh; a
    model keeps its own as buffers: quic_edge.rotations)."""
    return torch.tensor(list(combinations(range(n), k)), dtype=torch.long).T.contiguous()


class Selectors(NamedTuple):
    """One-hot matrices that gather the rows and columns of the k x k minors: rows[t] @ A = A[I_t, :] and
    A @ cols[u] = A[:, J_u], where I_t holds the t-th element of every k-subset (cols[u] = rows[u]^T, stored apart so
    that an exported graph multiplies by a constant, not by a transpose of one)."""

    rows: tuple[torch.Tensor, ...]  # k x [C(n, k), n]
    cols: tuple[torch.Tensor, ...]  # k x [n, C(n, k)]


def selectors(n: int, k: int) -> Selectors:
    """The Selectors of order k for n x n matrices (built afresh; a model keeps its own as buffers:
    quic_edge.rotations)."""
    rows = tuple(torch.nn.functional.one_hot(subset, n).to(torch.get_default_dtype()) for subset in subset_table(n, k))
    return Selectors(rows, tuple(r.T.contiguous() for r in rows))


def compound(A: torch.Tensor, k: int, select: Selectors | None = None) -> torch.Tensor:
    """C_k(A) for a batch A[..., n, n] -> [..., C(n, k), C(n, k)]; `select` = selectors(n, k) (built when not given).

    Example:
        >>> compound(torch.eye(4), 2).shape
        torch.Size([6, 6])
    """
    n = A.shape[-1]
    if A.shape[-2] != n:
        raise ValueError(f"compound: A must be square [..., n, n], got shape {tuple(A.shape)}")
    if not 1 <= k <= n:
        raise ValueError(f"compound: order k must be in 1..{n} for n={n}, got {k}")
    if k == 1:
        return A
    select = selectors(n, k) if select is None else select
    cols = [c.to(A.dtype) for c in select.cols]
    rows = [torch.matmul(r.to(A.dtype), A) for r in select.rows]  # A[I_t, :]: k x (..., S, n)
    entries = [[torch.matmul(rows[t], cols[u]) for u in range(k)] for t in range(k)]  # A[I_t, J_u]: (..., S, S)
    total = None
    for perm in permutations(range(k)):
        term = entries[0][perm[0]]
        for t in range(1, k):
            term = term * entries[t][perm[t]]
        if total is None:
            total = term if _perm_sign(perm) > 0 else -term
        else:
            total = total + term if _perm_sign(perm) > 0 else total - term
    return total

"""Compound matrices C_k(A) from k x k minors, by static gathers and the Leibniz formula.

C_k(A)[I, J] = det(A[I, J]) for k-subsets I, J of {0..n-1} in lexicographic order. Each minor is a sum of
k! signed products of gathered entries: no det, no data-dependent shapes, so it exports to training
graphs. Cauchy-Binet, C_k(AB) = C_k(A) C_k(B), makes C_k(A) orthogonal when A is.
"""

from __future__ import annotations

from itertools import combinations, permutations

import torch


def _perm_sign(perm: tuple[int, ...]) -> int:
    inversions = sum(1 for a in range(len(perm)) for b in range(a + 1, len(perm)) if perm[a] > perm[b])
    return -1 if inversions % 2 else 1


def subset_table(n: int, k: int) -> torch.Tensor:
    """[k, C(n, k)]: row t holds the t-th element of every k-subset, subsets in lexicographic order (built afresh; a
    model keeps its own as buffers: quic_edge.rotations)."""
    return torch.tensor(list(combinations(range(n), k)), dtype=torch.long).T.contiguous()


def compound(A: torch.Tensor, k: int, subsets: torch.Tensor | None = None) -> torch.Tensor:
    """C_k(A) for a batch A[..., n, n] -> [..., C(n, k), C(n, k)]; `subsets` = subset_table(n, k) (built when not given).

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
    subsets = subset_table(n, k) if subsets is None else subsets  # (k, S)
    # index_select exports as ONNX Gather (cheap gradient); advanced indexing would be GatherND plus transposes
    rows = [A.index_select(-2, subsets[t]) for t in range(k)]  # k x (..., S, n)
    entries = [[rows[t].index_select(-1, subsets[u]) for u in range(k)] for t in range(k)]  # A[I_t, J_u]: (..., S, S)
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

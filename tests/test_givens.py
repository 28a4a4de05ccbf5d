"""Givens circuits against explicit 2 x 2 rotation products, in the gate order DESIGN.md section 2 spells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quic_edge.givens import circuit, gate_count, orthogonal


def design_planes(n: int) -> list[list[tuple[int, int]]]:
    """The circle method as DESIGN.md writes it (independent of the library's code)."""
    m = n + (n % 2)
    idx = list(range(m))
    rounds = []
    for _ in range(m - 1):
        pairs = []
        for k in range(m // 2):
            a, b = idx[k], idx[m - 1 - k]
            if n not in (a, b):
                pairs.append((min(a, b), max(a, b)))
        rounds.append(pairs)
        idx = [idx[0], idx[m - 1]] + idx[1 : m - 1]
    return rounds


def design_brick(n: int) -> list[list[tuple[int, int]]]:
    return [[(p, p + 1) for p in range(n - 1) if p % 2 == layer % 2] for layer in range(n)]


def givens_matrix(n: int, i: int, j: int, t: float) -> np.ndarray:
    """x_i <- c x_i - s x_j, x_j <- s x_i + c x_j."""
    G = np.eye(n)
    G[i, i] = G[j, j] = np.cos(t)
    G[i, j], G[j, i] = -np.sin(t), np.sin(t)
    return G


def explicit_product(n: int, rounds, angles: np.ndarray) -> np.ndarray:
    A = np.eye(n)
    g = 0
    for pairs in rounds:
        for i, j in pairs:
            A = givens_matrix(n, i, j, angles[g]) @ A  # the first gate acts first on a vector
            g += 1
    return A


DESIGN = {"planes": design_planes, "brick": design_brick}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 14), layout=st.sampled_from(["planes", "brick"]), seed=st.integers(0, 2**31), data=st.data())
def test_circuit_equals_explicit_givens_product(n, layout, seed, data):
    full = [r for r in DESIGN[layout](n) if r]
    depth = data.draw(st.one_of(st.none(), st.integers(1, len(DESIGN[layout](n)))))
    rounds = [r for r in DESIGN[layout](n)[: depth or None] if r]
    assert circuit(n, layout, depth) == rounds
    gates = sum(len(r) for r in rounds)
    angles = np.random.default_rng(seed).uniform(-np.pi, np.pi, size=(2, gates))
    got = orthogonal(torch.from_numpy(angles), n, layout, depth).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], explicit_product(n, rounds, angles[b]), atol=1e-12)
    if depth is None:
        assert gates == n * (n - 1) // 2 if layout == "planes" else gates == len([p for r in full for p in r])


@pytest.mark.parametrize("layout", ["planes", "brick"])
def test_orthogonal_det_one_and_identity_at_zero(layout):
    n = 11
    g = gate_count(n, layout)
    A = orthogonal(torch.randn(4, 3, g, dtype=torch.float64), n, layout)
    eye = torch.eye(n, dtype=torch.float64)
    torch.testing.assert_close(A @ A.transpose(-1, -2), eye.expand_as(A), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(A), torch.ones(4, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(orthogonal(torch.zeros(g, dtype=torch.float64), n, layout), eye)


def jacobian_rank_at_identity(n: int, layout: str) -> int:
    g = gate_count(n, layout)
    J = torch.autograd.functional.jacobian(lambda t: orthogonal(t, n, layout).reshape(-1), torch.zeros(g, dtype=torch.float64))
    return int(torch.linalg.matrix_rank(J))


def test_planes_moves_in_every_direction_from_the_identity():
    """Full rank n(n-1)/2 at zero angles for planes; brick has only n - 1 (DESIGN.md section 2)."""
    n = 15
    assert jacobian_rank_at_identity(n, "planes") == n * (n - 1) // 2
    assert jacobian_rank_at_identity(n, "brick") == n - 1


def test_bad_layout_and_depth():
    with pytest.raises(ValueError, match="layout"):
        circuit(5, "zigzag")
    with pytest.raises(ValueError, match="depth"):
        circuit(5, "planes", depth=99)

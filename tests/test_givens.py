"""Givens circuits against explicit 2 x 2 rotation products, in the gate order DESIGN.md section 2 spells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quic_edge.givens import brick_rounds, circuit, gate_count, orthogonal, planes_rounds, unconstrained


def check_planes_schedule(n: int, rounds: list[list[tuple[int, int]]]) -> None:
    """What DESIGN.md section 2 asks of "planes", checked as properties (not by a second copy of the algorithm):
    each round a set of disjoint pairs, every pair (i, j), i < j, exactly once overall, the round-robin number of
    rounds (n - 1 for even n, n for odd), each round as full as the circle method allows, and the circle method's
    first round (0, m-1), (1, m-2), ... with pairs holding the dummy index m - 1 = n (odd n) left out."""
    m = n + n % 2
    assert len(rounds) == m - 1
    seen = [p for r in rounds for p in r]
    assert sorted(seen) == [(i, j) for i in range(n) for j in range(i + 1, n)]
    for r in rounds:
        touched = [x for pair in r for x in pair]
        assert len(touched) == len(set(touched)), r  # disjoint
        assert all(i < j for i, j in r)
        assert len(r) == n // 2
    first = [(k, m - 1 - k) for k in range(m // 2) if m - 1 - k < n]
    assert rounds[0] == first


def check_brick_schedule(n: int, rounds: list[list[tuple[int, int]]]) -> None:
    """Round l rotates adjacent pairs (p, p + 1), p of the parity of l, ascending; n rounds."""
    assert len(rounds) == n
    for layer, r in enumerate(rounds):
        assert all(j == i + 1 and i % 2 == layer % 2 for i, j in r)
        assert [i for i, _ in r] == sorted(i for i, _ in r)
        assert len(r) == len(range(layer % 2, n - 1, 2))


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


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 30))
def test_the_schedules_are_what_the_design_asks(n):
    check_planes_schedule(n, planes_rounds(n))
    check_brick_schedule(n, brick_rounds(n))


def test_the_schedule_check_fails_on_a_wrong_schedule():
    rounds = planes_rounds(6)
    rounds[1], rounds[2] = rounds[2], rounds[1]  # a valid factorization, but not the circle method's order...
    check_planes_schedule(6, rounds)  # ...is allowed (only the first round is pinned); these are not:
    broken = [list(r) for r in planes_rounds(6)]
    broken[0][0], broken[1][0] = broken[1][0], broken[0][0]
    with pytest.raises(AssertionError):
        check_planes_schedule(6, broken)
    with pytest.raises(AssertionError):
        check_planes_schedule(6, planes_rounds(6)[:-1])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 14), layout=st.sampled_from(["planes", "brick"]), seed=st.integers(0, 2**31), data=st.data())
def test_circuit_equals_explicit_givens_product(n, layout, seed, data):
    schedule = planes_rounds(n) if layout == "planes" else brick_rounds(n)
    depth = data.draw(st.one_of(st.none(), st.integers(1, len(schedule))))
    rounds = [r for r in schedule[: depth or None] if r]
    assert circuit(n, layout, depth) == rounds
    gates = sum(len(r) for r in rounds)
    angles = np.random.default_rng(seed).uniform(-np.pi, np.pi, size=(2, gates))
    got = orthogonal(torch.from_numpy(angles), n, layout, depth).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], explicit_product(n, rounds, angles[b]), atol=1e-12)
    if depth is None and layout == "planes":
        assert gates == n * (n - 1) // 2


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


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 9), seed=st.integers(0, 2**31 - 1))
def test_the_orthogonality_control_is_identity_plus_a_free_upper_triangle(n, seed):
    """The ablation's control: as many free numbers as the full circuit has angles, placed above the diagonal in the
    planes circuit's pair order; not orthogonal once they move, so it tests what orthogonality is worth."""
    values = torch.randn(2, gate_count(n), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    pairs = [p for r in planes_rounds(n) for p in r]
    expected = np.stack([np.eye(n)] * 2)
    for g, (i, j) in enumerate(pairs):
        expected[:, i, j] = values[:, g].numpy()
    A = unconstrained(values, n)
    np.testing.assert_allclose(A.numpy(), expected, atol=0)
    assert not torch.allclose(A @ A.transpose(-1, -2), torch.eye(n, dtype=torch.float64).expand(2, n, n), atol=1e-3)

"""compound(A, k) against the determinant-of-minors definition, written here with itertools and numpy."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quic_edge import compound
from quic_edge.compounds import selectors, subset_table


def minors(A: np.ndarray, k: int) -> np.ndarray:
    subsets = list(combinations(range(A.shape[0]), k))
    return np.array([[np.linalg.det(A[np.ix_(rows, cols)]) for cols in subsets] for rows in subsets])


def random_orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 3), seed=st.integers(0, 2**31), orthogonal=st.booleans())
def test_compound_equals_minors(n, k, seed, orthogonal):
    if k > n:
        return
    rng = np.random.default_rng(seed)
    A = random_orthogonal(rng, n) if orthogonal else rng.standard_normal((n, n))
    got = compound(torch.from_numpy(A), k).numpy()
    np.testing.assert_allclose(got, minors(A, k), atol=1e-10)


def test_order_four_and_batches():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 3, 6, 6))
    got = compound(torch.from_numpy(A), 4).numpy()
    assert got.shape == (2, 3, 15, 15)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(got[i, j], minors(A[i, j], 4), atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 9), k=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_cauchy_binet(n, k, seed):
    if k > n:
        return
    rng = np.random.default_rng(seed)
    A, B = (torch.from_numpy(rng.standard_normal((n, n))) for _ in range(2))
    torch.testing.assert_close(compound(A @ B, k), compound(A, k) @ compound(B, k), atol=1e-9, rtol=1e-9)


def test_orthogonal_stays_orthogonal():
    A = torch.from_numpy(random_orthogonal(np.random.default_rng(1), 10))
    for k in (1, 2, 3):
        C = compound(A, k)
        torch.testing.assert_close(C @ C.T, torch.eye(C.shape[0], dtype=C.dtype), atol=1e-10, rtol=0)


@pytest.mark.parametrize(("shape", "k", "message"), [((3, 4), 1, "square"), ((4, 4), 5, "order k"), ((4, 4), 0, "order k")])
def test_bad_arguments(shape, k, message):
    with pytest.raises(ValueError, match=message):
        compound(torch.zeros(shape), k)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 16), k=st.integers(2, 3), seed=st.integers(0, 2**31))
def test_selection_products_gather_exactly(n, k, seed):
    """The one-hot products that replace index gathers (their ONNX Runtime gradient was slow) give the gathered
    entries bit for bit: no rounding enters, so exported graphs compute the same compounds as before."""
    if k > n:
        return
    A = torch.from_numpy(np.random.default_rng(seed).standard_normal((3, n, n)).astype(np.float32))
    select, subsets = selectors(n, k), subset_table(n, k)
    for t in range(k):
        assert torch.equal(select.rows[t] @ A, A[:, subsets[t], :])
        assert torch.equal(A @ select.cols[t], A[:, :, subsets[t]])

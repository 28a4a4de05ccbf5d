"""Fleet aggregation rules (quic_edge/fleet/aggregation.py): the weighted mean, and every bad update refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quic_edge.fleet.aggregation import Update, aggregate, check_update, weighted_average
from quic_edge.formats.identity import canonical_config, identity_of

MANIFEST = {"base_fingerprint": "f" * 64, "config": {"blocks": 3, "orders": [1, 2]}, "adapter": "quic", "base_dtype": "int8"}
IDENTITY = identity_of(MANIFEST)
SHAPES = {"encoder.layer.0.attention.self.query.angles": (1, 3, 105), "classifier.weight": (5, 384)}


def _global(value: float = 0.0) -> dict[str, np.ndarray]:
    return {name: np.full(shape, value, np.float32) for name, shape in SHAPES.items()}


def _update(client: str, value: float, n: int = 8, **identity: str) -> Update:
    return Update(client, _global(value), n, {**IDENTITY, **identity})


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda k: st.tuples(
            st.lists(hnp.arrays(np.float32, (3, 4), elements=st.floats(-3, 3, width=32)), min_size=k, max_size=k),
            st.lists(st.integers(1, 1000), min_size=k, max_size=k),
        )
    )
)
def test_weighted_average_equals_numpy(case):
    arrays, counts = case
    got = weighted_average([{"a": a} for a in arrays], counts)["a"]
    want = np.average(np.stack(arrays).astype(np.float64), axis=0, weights=np.asarray(counts, np.float64))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_aggregate_weights_by_example_count():
    result = aggregate(_global(), [_update("a", 1.0, n=10), _update("b", 4.0, n=30)], IDENTITY)
    for array in result.tensors.values():
        np.testing.assert_allclose(array, (10 * 1.0 + 30 * 4.0) / 40)
    assert result.accepted == ["a", "b"] and result.rejected == []
    assert result.weights == {"a": 0.25, "b": 0.75}


def _nan_update() -> Update:
    tensors = _global(0.5)
    tensors["encoder.layer.0.attention.self.query.angles"][0, 1, 7] = np.nan
    return Update("nan", tensors, 8, IDENTITY)


def _inf_update() -> Update:
    tensors = _global(0.5)
    tensors["classifier.weight"][0, 0] = np.inf
    return Update("inf", tensors, 8, IDENTITY)


def _missing_update() -> Update:
    tensors = _global(0.5)
    del tensors["classifier.weight"]
    return Update("missing", tensors, 8, IDENTITY)


def _shape_update() -> Update:
    tensors = _global(0.5)
    tensors["classifier.weight"] = np.zeros((3, 384), np.float32)
    return Update("shape", tensors, 8, IDENTITY)


BAD = {
    "nan": (_nan_update, "non-finite"),
    "inf": (_inf_update, "non-finite"),
    "other base": (lambda: _update("base", 0.5, base_fingerprint="0" * 64), "its base_fingerprint is"),
    "other config": (
        lambda: _update("config", 0.5, config=canonical_config({"blocks": 4, "orders": [1, 2]})),
        "its config is",
    ),
    "other adapter": (lambda: _update("lora", 0.5, adapter="lora"), "its adapter is"),
    "other quantization": (lambda: _update("fp32", 0.5, base_dtype="fp32"), "its base_dtype is"),
    "missing tensor": (_missing_update, "missing ['classifier.weight']"),
    "wrong shape": (_shape_update, "shape (3, 384)"),
    "no examples": (lambda: _update("zero", 0.5, n=0), "num_examples must be positive"),
    "integer tensors": (lambda: Update("int", {k: v.astype(np.int64) for k, v in _global(1).items()}, 8, IDENTITY), "dtype"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_update_is_rejected_with_its_reason_and_the_global_is_untouched(case, caplog):
    make, reason = BAD[case]
    bad = make()
    assert reason in check_update(bad, _global(), IDENTITY)
    old = _global(0.25)
    snapshot = {k: v.copy() for k, v in old.items()}
    with caplog.at_level(logging.WARNING, logger="quic_edge.fleet"):
        result = aggregate(old, [_update("good", 1.0, n=8), bad], IDENTITY)
    assert result.accepted == ["good"]
    assert [c for c, _ in result.rejected] == [bad.client] and reason in result.rejected[0][1]
    assert reason in caplog.text and bad.client in caplog.text
    for name, array in result.tensors.items():
        np.testing.assert_array_equal(array, 1.0)  # only the good update counts
        np.testing.assert_array_equal(old[name], snapshot[name])  # the old global is not modified


def test_nothing_accepted_keeps_the_global_and_reports_dropped_clients(caplog):
    old = _global(0.25)
    with caplog.at_level(logging.WARNING, logger="quic_edge.fleet"):
        result = aggregate(old, [_nan_update()], IDENTITY, failed=[("gone", "no reply (dropped mid-round)")])
    assert result.accepted == []
    assert [c for c, _ in result.rejected] == ["gone", "nan"]
    assert "dropped mid-round" in caplog.text
    for name, array in result.tensors.items():
        np.testing.assert_array_equal(array, old[name])
        assert array is not old[name]  # a copy: later changes cannot reach the caller's global


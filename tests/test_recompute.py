"""The recompute rewrite (quic_edge.export.ort_graph.recompute_in_backward) remakes QuIC's gathered compound entries in
the backward pass: they are gathered by products with constant one-hot matrices (quic_edge.compounds), and the rewrite
must know such a product as a gather, not as a matmul to keep. Checked on a tiny LLaMA training graph, run by ONNX
Runtime before and after the rewrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quic_edge import models
from quic_edge.config import QuICConfig
from quic_edge.export import export_bundle
from quic_edge.export.common import orthogonal_angles
from quic_edge.export.ort_graph import (
    RECOMPUTE_SESSION_OPTIONS,
    gathers_by_product,
    graph_constants,
    recompute_in_backward,
    stashed_tensors,
)
from quic_edge.model import apply_quic
from quic_edge.runtimes.parity import NUM_LABELS
from quic_edge.tasks import example_batch


def matmul(left: np.ndarray | None, right: np.ndarray | None) -> tuple[onnx.NodeProto, dict[str, np.ndarray]]:
    constants = {name: value for name, value in (("L", left), ("R", right)) if value is not None}
    return onnx.helper.make_node("MatMul", ["L", "R"], ["Y"]), constants


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_a_product_with_a_one_hot_matrix_is_a_gather(rows, cols, seed):
    rng = np.random.default_rng(seed)
    picks = np.eye(cols, dtype=np.float32)[rng.integers(0, cols, rows)]  # [rows, cols], one 1 in each row
    assert gathers_by_product(*matmul(picks, None))  # picks @ A: each output row is a row of A
    assert gathers_by_product(*matmul(None, picks.T.copy()))  # A @ picks^T: each output column is a column of A


@pytest.mark.parametrize("left", [
    np.array([[1, 1, 0], [0, 0, 1]], np.float32),  # two 1s in a row: sums two entries
    np.array([[2, 0], [0, 1]], np.float32),  # a scale, not a pick
    np.array([[1, 0], [0, 1]], np.int64),  # not a float matrix
    np.ones((2, 2, 2), np.float32),  # not 2-D
])
def test_other_constant_products_are_not(left):
    assert not gathers_by_product(*matmul(left, None))
    assert not gathers_by_product(*matmul(None, None))  # no constant operand at all


def tiny_llama_training_graph(folder: Path) -> tuple[onnx.ModelProto, set[str]]:
    """Tiny LLaMA with QuIC (1,2) on q_proj and v_proj, exported for ORT without the rewrites: its training graph and
    the names of its (orthogonal) angle tensors."""
    model, _ = models.load("llama-tiny", num_labels=NUM_LABELS, seed=0)
    model = apply_quic(model, QuICConfig(blocks=2, orders=(1, 2), target_modules=("q_proj", "v_proj")))
    export_bundle("ort", model, example_batch("llama-tiny", 4, 16, NUM_LABELS), folder, optimizer="sgd",
                  recompute=False)
    return onnx.load(folder / "training_model.onnx"), orthogonal_angles(model)


@pytest.fixture(scope="module")
def training_graph(tmp_path_factory):
    return tiny_llama_training_graph(tmp_path_factory.mktemp("recompute") / "bundle")[0]


def test_compound_entries_are_remade_in_backward_and_the_step_is_unchanged(training_graph):
    before = onnx.ModelProto()
    before.CopyFrom(training_graph)
    constants = graph_constants(before)
    entries = {o for n in before.graph.node if gathers_by_product(n, constants) for o in n.output}
    kept = entries & set(stashed_tensors(before))
    assert kept, "the backward pass of the minors' products should read gathered entries"
    after = onnx.ModelProto()
    after.CopyFrom(before)
    # tiny LLaMA's tensors are below the usual size floor, and its small circuits' matrices A are more than 1/8 of
    # their entries (the usual limit for a tensor that stays kept so that a larger one can be remade from it)
    recomputed = recompute_in_backward(after, min_bytes=1, anchor_fraction=1.0)
    assert kept <= set(recomputed)
    assert not kept & set(stashed_tensors(after))
    outputs = run(before)
    assert all(np.isfinite(outputs)) and any(outputs[-8:]), "the step should give finite, non-zero angle gradients"
    assert outputs == run(after)  # the copies compute the same ops on the same values: bit for bit


def run(proto: onnx.ModelProto) -> list[float]:
    """Loss, logits and the angles' gradients of one training-graph step with the same fixed inputs, flattened. The
    gradients are not graph outputs: ORT accumulates them in place into their `..._grad.accumulation.buffer` inputs
    (its outputs are only flags), so the buffers are bound as ORT values and read back after the run."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    feeds = {}
    for value in proto.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if value.name == "labels":
            feeds[value.name] = rng.integers(0, NUM_LABELS, shape).astype(dtype)
        elif value.name == "lazy_reset_grad":
            feeds[value.name] = np.ones(shape, dtype)  # the buffers receive this step's gradients
        elif dtype == np.float32:  # angles of order 0.3; weights and scales small enough that nothing saturates
            feeds[value.name] = (rng.standard_normal(shape) * (0.3 if value.name.endswith("angles") else 0.02)).astype(
                dtype)
        elif dtype == np.int8:
            feeds[value.name] = rng.integers(-127, 128, shape).astype(dtype)
        else:
            feeds[value.name] = (rng.integers(0, 2, shape) if dtype == np.bool_ else rng.integers(1, 50, shape)).astype(
                dtype)
    options = ort.SessionOptions()
    for key, value in RECOMPUTE_SESSION_OPTIONS.items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in feeds.items()}
    binding = session.io_binding()
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    for output in session.get_outputs():
        binding.bind_output(output.name)
    session.run_with_iobinding(binding)
    loss_and_logits = [np.ravel(v) for v in binding.copy_outputs_to_cpu()[:2]]
    gradients = [np.ravel(v.numpy()) for name, v in values.items() if name.endswith("_grad.accumulation.buffer")]
    assert gradients, "the training graph should accumulate the angles' gradients"
    return [float(x) for part in (*loss_and_logits, *gradients) for x in part]

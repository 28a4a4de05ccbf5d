"""Recovering the rotation's inputs in the backward pass (quic_edge.export.ort_recover): S = Y C^T from the tensor that
attention keeps, instead of keeping S. Checked two ways: on random chains of invertible steps, ONNX Runtime computes the
recovered S and it must equal the kept one; on a tiny LLaMA training graph, one ORT step before and after the rewrite
gives the same loss and logits (bit for bit: the forward is untouched) and the same angle gradients (to rounding),
and the recovered slices are no longer kept."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from quic_edge import models
from quic_edge.config import QuICConfig
from quic_edge.export.common import orthogonal_angles
from quic_edge.export.ort_graph import stashed_tensors
from quic_edge.export.ort_recover import RECOVERED, recover_rotation_inputs
from quic_edge.model import apply_quic
from quic_edge.runtimes.parity import NUM_LABELS
from tests.test_recompute import run, tiny_llama_training_graph


def orthogonal(rng: np.random.Generator, blocks: int, width: int) -> np.ndarray:
    return np.stack([np.linalg.qr(rng.standard_normal((width, width)))[0] for _ in range(blocks)]).astype(np.float32)


def chain_graph(seed: int, blocks: int, tokens: int, width: int, tail: int, heads: int, with_bias: bool,
                piece_first: bool, reader: str = "Identity") -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A forward chain as QuICLinear and attention write it: per block i the rotated slice Y_i = S_i C_i
    ([tokens, width]) and an untouched piece P_i, all concatenated along features, reshaped to [batch, tokens, features],
    a bias added, split into heads and transposed; that last tensor and every S_i are read by nodes named as ORT's
    gradient builder names its own (so both count as kept). C_i is made from an `angles` input by a product with a
    constant orthogonal matrix (so it is angle-made). reader: "Gemm" or "FusedMatMul": S_i's reader is C_i's gradient as
    ORT writes it, S_i^T G_i (transA=1), which the rewrite reassociates; "Identity": a reader for which it remakes S_i."""
    rng = np.random.default_rng(seed)
    features = blocks * (width + tail)
    batch = 2
    assert tokens % batch == 0 and features % heads == 0
    feeds = {"angles": np.eye(width, dtype=np.float32)}
    inits = [numpy_helper.from_array(orthogonal(rng, blocks, width), "Q"),
             numpy_helper.from_array(np.array([batch, tokens // batch, features], np.int64), "tokens_shape"),
             numpy_helper.from_array(np.array([batch, tokens // batch, heads, features // heads], np.int64), "heads")]
    nodes, pieces, outputs = [helper.make_node("MatMul", ["Q", "angles"], ["C"])], [], ["kept_grad"]
    for i in range(blocks):
        feeds[f"S{i}_in"] = rng.standard_normal((tokens, width)).astype(np.float32)
        feeds[f"P{i}"] = rng.standard_normal((tokens, tail)).astype(np.float32)
        inits.append(numpy_helper.from_array(np.array([i], np.int64), f"index{i}"))
        nodes += [helper.make_node("Identity", [f"S{i}_in"], [f"S{i}"]),
                  helper.make_node("Gather", ["C", f"index{i}"], [f"C{i}_1"], axis=0),
                  helper.make_node("Squeeze", [f"C{i}_1", "index0_axis"], [f"C{i}"]),
                  helper.make_node("MatMul", [f"S{i}", f"C{i}"], [f"Y{i}"])]
        pieces += [f"Y{i}", f"P{i}"] if piece_first else [f"P{i}", f"Y{i}"]
        if reader != "Identity":
            feeds[f"G{i}"] = rng.standard_normal((tokens, width)).astype(np.float32)
            domain = "com.microsoft" if reader == "FusedMatMul" else ""
            extra = {"beta": 0.0} if reader == "Gemm" else {"transB": 0}
            nodes.append(helper.make_node(reader, [f"S{i}", f"G{i}"], [f"C{i}_grad"], name=f"rotation{i}_Grad/product",
                                          domain=domain, transA=1, alpha=1.0, **extra))
        else:
            nodes.append(helper.make_node("Identity", [f"S{i}"], [f"C{i}_grad"], name=f"rotation{i}_Grad/read"))
        outputs.append(f"C{i}_grad")
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "index0_axis"))
    nodes += [helper.make_node("Concat", pieces, ["flat_tokens"], axis=1),
              helper.make_node("Reshape", ["flat_tokens", "tokens_shape"], ["flat"])]
    last = "flat"
    if with_bias:
        feeds["bias"] = rng.standard_normal(features).astype(np.float32)
        nodes.append(helper.make_node("Add", [last, "bias"], ["biased"]))
        last = "biased"
    nodes += [helper.make_node("Reshape", [last, "heads"], ["split"]),
              helper.make_node("Transpose", ["split"], ["kept"], perm=[0, 2, 1, 3]),
              helper.make_node("Identity", ["kept"], ["kept_grad"], name="attention_Grad/read")]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape) for name, value in feeds.items()]
    graph = helper.make_graph(nodes, "chain", inputs,
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets), feeds


def run_graph(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), blocks=st.integers(1, 3), width=st.integers(2, 9), tail=st.integers(1, 4),
       heads=st.sampled_from([1, 2]), with_bias=st.booleans(), piece_first=st.booleans())
def test_the_recovered_slice_equals_the_kept_one(seed, blocks, width, tail, heads, with_bias, piece_first):
    tokens = 6
    if (blocks * (width + tail)) % heads:
        heads = 1
    proto, feeds = chain_graph(seed, blocks, tokens, width, tail, heads, with_bias, piece_first)
    slices = [f"S{i}" for i in range(blocks)]
    assert sorted(stashed_tensors(proto)) == sorted([*slices, "kept"])
    assert recover_rotation_inputs(proto, {"angles"}) == slices
    assert not set(slices) & set(stashed_tensors(proto))  # C is read now (in a model it is kept anyway)
    for i in range(blocks):
        proto.graph.output.append(helper.make_tensor_value_info(f"S{i}_read", TensorProto.FLOAT, None))
        reader = next(n for n in proto.graph.node if n.name == f"rotation{i}_Grad/read")
        proto.graph.node.append(helper.make_node("Identity", [reader.input[0]], [f"S{i}_read"]))
    got = run_graph(proto, feeds)
    for i in range(blocks):
        np.testing.assert_allclose(got[f"S{i}_read"], feeds[f"S{i}_in"], rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), blocks=st.integers(1, 3), width=st.integers(2, 9), tail=st.integers(1, 4),
       with_bias=st.booleans(), piece_first=st.booleans(), reader=st.sampled_from(["Gemm", "FusedMatMul"]))
def test_the_compound_gradient_is_reassociated(seed, blocks, width, tail, with_bias, piece_first, reader):
    """C's gradient S^T G (a Gemm or FusedMatMul with transA, as ORT writes it) becomes C (Y^T G): no S is remade,
    and the gradient equals S^T G computed here."""
    proto, feeds = chain_graph(seed, blocks, 6, width, tail, 1, with_bias, piece_first, reader)
    assert recover_rotation_inputs(proto, {"angles"}) == [f"S{i}" for i in range(blocks)]
    assert not any(name.startswith("S") for name in stashed_tensors(proto))
    names = {o for n in proto.graph.node for o in n.output}
    assert not any(name.endswith(RECOVERED + "__recompute") for name in names)  # S itself is never remade
    got = run_graph(proto, feeds)
    for i in range(blocks):
        np.testing.assert_allclose(got[f"C{i}_grad"], feeds[f"S{i}_in"].T @ feeds[f"G{i}"], rtol=1e-4, atol=1e-4)


def test_nothing_is_recovered_without_orthogonal_angles_or_a_kept_end():
    proto, _ = chain_graph(0, 2, 6, 4, 2, 2, True, True)
    assert recover_rotation_inputs(proto, set()) == []  # e.g. the unconstrained control: C is not orthogonal
    proto, _ = chain_graph(0, 2, 6, 4, 2, 2, True, True)
    for node in proto.graph.node:
        if node.name == "attention_Grad/read":
            node.input[0] = "P0"  # attention keeps nothing at the chain's end (as for the first layer's query)
    assert recover_rotation_inputs(proto, {"angles"}) == []
    assert "S0" in stashed_tensors(proto)


def test_only_orthogonal_rotations_are_named():
    model, _ = models.load("llama-tiny", num_labels=NUM_LABELS, seed=0)
    model = apply_quic(model, QuICConfig(blocks=2, orders=(1, 2), target_modules=("q_proj",)))
    assert orthogonal_angles(model) and all(name.endswith("q_proj.angles") for name in orthogonal_angles(model))
    free, _ = models.load("llama-tiny", num_labels=NUM_LABELS, seed=0)
    free = apply_quic(free, QuICConfig(blocks=2, orders=(1, 2), target_modules=("q_proj",), matrix="unconstrained"))
    assert orthogonal_angles(free) == set()


@pytest.fixture(scope="module")
def training_graph(tmp_path_factory):
    return tiny_llama_training_graph(tmp_path_factory.mktemp("recover") / "bundle")


def test_a_training_step_is_unchanged_and_the_slices_are_no_longer_kept(training_graph):
    graph, angles = training_graph
    after = onnx.ModelProto()
    after.CopyFrom(graph)
    recovered = recover_rotation_inputs(after, angles)
    # the values' slices: attention keeps the value for the probabilities' gradient; the query goes through the
    # rotary embedding (not an invertible step here), so its slices stay kept
    assert recovered and set(recovered) <= set(stashed_tensors(graph))
    assert not set(recovered) & set(stashed_tensors(after))
    assert any(RECOVERED in n.name for n in after.graph.node)
    assert any(n.name.endswith(RECOVERED + "_outer__recompute") for n in after.graph.node)  # C's gradient reassociated
    before_step, after_step = run(graph), run(after)
    logits = 1 + 4 * NUM_LABELS  # the loss and the logits come first
    assert before_step[:logits] == after_step[:logits]
    np.testing.assert_allclose(after_step[logits:], before_step[logits:], rtol=1e-4, atol=1e-6)

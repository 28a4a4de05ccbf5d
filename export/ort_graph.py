"""Rewrites of an exported ONNX graph before ONNX Runtime builds its training artifacts (export/ort.py runs them).

- `strip_prefix`: initializers named as the model's own parameters (not the loss wrapper's).
- `patch_layer_norm`: LayerNormalization gets its Mean and InvStdDev outputs (ORT's gradient builder reads them;
  onnxruntime#22465).
- `cast_like_to_cast`: CastLike(x, like) becomes Cast(x, to=like's type); ORT's gradient builder has no CastLike
  (DistilBERT's attention mask and other `torch.finfo(dtype).min` patterns export to it).
- `split_sequences_to_split`: SplitToSequence followed by SequenceAt at constant positions becomes one Split (ORT has
  no gradient for sequence ops; `tensor.split(size, dim)`, as in GPT-2's attention, exports to them).
- `scale_parameters`: a learning-rate multiplier per tensor, inside ONNX Runtime's own optimizer. ORT's optimizer
  graph runs one AdamW (or SGD) over all trainable tensors in an order the C++ side does not fix, so rates cannot be
  split there. Instead a tensor w is stored as theta = w / c and the graph computes with c * theta: AdamW's step on
  theta is scale-free, so w moves c times as far (c = the group's lr_scale; for SGD, whose step scales with the
  gradient too, c = sqrt(lr_scale)). The device loop multiplies by c when it reads tensors and divides when it writes
  them (runtimes/ort.py), so deltas and checkpoints hold w as everywhere else. Decoupled weight decay would act at the
  base rate, so groups with weight decay are refused for ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def strip_prefix(proto: onnx.ModelProto, prefix: str) -> None:
    renames = {i.name: i.name[len(prefix):] for i in proto.graph.initializer if i.name.startswith(prefix)}
    for init in proto.graph.initializer:
        init.name = renames.get(init.name, init.name)
    for value in (*proto.graph.input, *proto.graph.value_info):
        value.name = renames.get(value.name, value.name)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def patch_layer_norm(proto: onnx.ModelProto) -> None:
    for k, node in enumerate(proto.graph.node):
        if node.op_type == "LayerNormalization" and node.domain in ("", "ai.onnx") and len(node.output) == 1:
            node.output.extend([f"{node.output[0]}__mean_{k}", f"{node.output[0]}__inv_std_{k}"])


def cast_like_to_cast(proto: onnx.ModelProto) -> int:
    """Replace every CastLike whose second input has a known element type by a Cast to that type; returns how many."""
    types = {v.name: v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.value_info,
                                                            *proto.graph.output)}
    types |= {i.name: i.data_type for i in proto.graph.initializer}
    if any(n.op_type == "CastLike" and not types.get(n.input[1]) for n in proto.graph.node):
        inferred = onnx.shape_inference.infer_shapes(proto)
        types |= {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    count = 0
    for k, node in enumerate(proto.graph.node):
        if node.op_type == "CastLike" and node.domain in ("", "ai.onnx") and types.get(node.input[1]):
            cast = helper.make_node("Cast", [node.input[0]], list(node.output), name=node.name or f"cast_like_{k}",
                                    to=types[node.input[1]])
            proto.graph.node[k].CopyFrom(cast)
            count += 1
    return count


def graph_constants(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The values of a graph's initializers and Constant nodes, by tensor name."""
    found = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                found[node.output[0]] = numpy_helper.to_array(value.t)
    return found


def split_sequences_to_split(proto: onnx.ModelProto) -> int:
    """Each SplitToSequence whose sizes, axis length and readers' positions are constant becomes a Split whose outputs
    the former SequenceAt readers return (through Identity); returns how many were rewritten."""
    graph, constants = proto.graph, graph_constants(proto)
    splits = [n for n in graph.node if n.op_type == "SplitToSequence" and n.domain in ("", "ai.onnx")]
    if not splits:
        return 0
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    shapes |= {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
    count = 0
    for node in splits:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, keep = int(attrs.get("axis", 0)), int(attrs.get("keepdims", 1))
        readers = [n for n in graph.node if node.output[0] in n.input]
        shape = shapes.get(node.input[0])
        if (len(node.input) < 2 or node.input[1] not in constants or not shape or shape[axis] is None or not keep
                or any(r.op_type != "SequenceAt" or r.input[1] not in constants for r in readers)):
            continue
        size, length = constants[node.input[1]], shape[axis]
        sizes = [int(x) for x in size.reshape(-1)] if size.ndim else (
            [int(size)] * (length // int(size)) + ([length % int(size)] if length % int(size) else []))
        parts = [f"{node.output[0]}__part{i}" for i in range(len(sizes))]
        sizes_name = f"{node.output[0]}__sizes"
        graph.initializer.append(numpy_helper.from_array(np.array(sizes, dtype=np.int64), sizes_name))
        at = list(graph.node).index(node)
        graph.node.insert(at, helper.make_node("Split", [node.input[0], sizes_name], parts, axis=axis,
                                               name=f"{node.name or 'split'}__as_split"))
        for reader in readers:
            index = int(constants[reader.input[1]]) % len(sizes)
            reader.CopyFrom(helper.make_node("Identity", [parts[index]], list(reader.output), name=reader.name))
        graph.node.remove(node)
        count += 1
    return count


def scale_parameters(proto: onnx.ModelProto, scales: dict[str, float]) -> None:
    """Store each named initializer divided by its scale and feed its consumers the product (see the module text)."""
    inits = {i.name: i for i in proto.graph.initializer}
    for name, scale in scales.items():
        if scale == 1.0:
            continue
        init = inits[name]
        init.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(init) / np.float32(scale)).astype(np.float32), name))
        scaled = f"{name}__lr_scaled"
        for node in proto.graph.node:
            for i, value in enumerate(node.input):
                if value == name:
                    node.input[i] = scaled
        const = numpy_helper.from_array(np.array(scale, np.float32), f"{name}__lr_scale")
        proto.graph.initializer.append(const)
        proto.graph.node.insert(0, helper.make_node("Mul", [name, const.name], [scaled], name=f"{name}__lr_scale_mul"))


# ---- recomputing cheap tensors in the backward pass ---------------------------------------------------------------
RECOMPUTABLE_OPS = frozenset({"Cast", "Mul", "Unsqueeze", "Squeeze", "Transpose", "Reshape", "Gather", "GatherND",
                              "Identity"})
RECOMPUTE_SUFFIX = "__recompute"
# ONNX Runtime merges identical subgraphs back (common-subexpression elimination): a training session running a graph
# with recomputed tensors must turn that pass off (the device loops read this from the manifest).
RECOMPUTE_SESSION_OPTIONS = {"optimization.disable_specified_optimizers": "CommonSubexpressionElimination"}


def is_backward(node: onnx.NodeProto) -> bool:
    """A node of the backward pass: added by ONNX Runtime's gradient builder (its tensors carry the _grad suffix, or
    the node is named `<forward node>_Grad/...`, as the reshapes of a MatMul's operands for its weight gradient are) or
    a recomputing copy made here."""
    return "_Grad/" in node.name or any("_grad" in name or name.endswith(RECOMPUTE_SUFFIX)
                                        for name in (*node.input, *node.output))


def tensor_shapes(proto: onnx.ModelProto) -> dict[str, tuple[list[int], int]]:
    """(dims, ONNX element type) of every tensor whose static shape ONNX shape inference finds."""
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    shapes = {}
    for value in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            shapes[value.name] = (dims, value.type.tensor_type.elem_type)
    return shapes


def tensor_bytes(proto: onnx.ModelProto) -> dict[str, int]:
    """Bytes of every tensor whose static shape ONNX shape inference finds."""
    return {name: int(np.prod(dims)) * np.dtype(helper.tensor_dtype_to_np_dtype(elem)).itemsize
            for name, (dims, elem) in tensor_shapes(proto).items()}


def stashed_tensors(proto: onnx.ModelProto) -> list[str]:
    """Forward tensors that backward nodes read: what a training step keeps alive from forward to backward."""
    forward_outputs = {o for n in proto.graph.node if not is_backward(n) for o in n.output}
    read = {i for n in proto.graph.node if is_backward(n) for i in n.input}
    return sorted(read & forward_outputs)


def recompute_in_backward(proto: onnx.ModelProto, min_bytes: int = 1 << 18, anchor_fraction: float = 1 / 8) -> list[str]:
    """Give the backward pass its own copy of every stashed tensor of at least `min_bytes` that a chain of cheap ops
    (RECOMPUTABLE_OPS: dequantization, gathers, layout; and gathers written as products with a constant selection
    matrix, quic_edge.compounds) makes from graph inputs, initializers or a much smaller
    tensor (an anchor, at most `anchor_fraction` of its size, which stays stashed instead). The forward copy is then
    freed after its last forward use. The copies go to the front of the node list (ONNX Runtime then runs them late,
    next to their backward readers; appended copies ran early and saved nothing). Returns the recomputed names."""
    graph = proto.graph
    producer = {o: n for n in graph.node for o in n.output}
    leaves = {i.name for i in graph.initializer} | {i.name for i in graph.input}
    sizes = tensor_bytes(proto)
    constants = graph_constants(proto)
    gathering = {o for n in graph.node if gathers_by_product(n, constants) for o in n.output}
    clones: dict[str, onnx.NodeProto] = {}  # original output name -> its clone (shared by every recomputed tensor)
    order: list[onnx.NodeProto] = []
    recomputed = []
    for name in stashed_tensors(proto):
        size = sizes.get(name, 0)
        if size < min_bytes:
            continue
        chain = _cheap_chain(name, producer, leaves, sizes, size * anchor_fraction, gathering)
        if chain is None:
            continue
        for node in chain:
            if node.output[0] not in clones:
                copy = onnx.NodeProto()
                copy.CopyFrom(node)
                copy.name = (node.name or node.output[0]) + RECOMPUTE_SUFFIX
                del copy.output[:]
                copy.output.extend(o + RECOMPUTE_SUFFIX for o in node.output)
                for i, value in enumerate(copy.input):
                    if value in producer and producer[value] in chain:
                        copy.input[i] = value + RECOMPUTE_SUFFIX
                clones[node.output[0]] = copy
                order.append(copy)
        for node in graph.node:
            if is_backward(node):
                for i, value in enumerate(node.input):
                    if value == name:
                        node.input[i] = name + RECOMPUTE_SUFFIX
        recomputed.append(name)
    for copy in reversed(order):
        graph.node.insert(0, copy)
    return recomputed


def gathers_by_product(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    """A MatMul by a constant 0/1 matrix that puts one entry of the other operand in each output: P @ A with at most
    one 1 in each row of P, or A @ Q with at most one 1 in each column of Q (quic_edge.compounds' minors)."""
    if node.op_type != "MatMul":
        return False
    left, right = (constants.get(name) for name in node.input[:2])
    return (left is not None and _one_hot(left, axis=1)) or (right is not None and _one_hot(right, axis=0))


def _one_hot(value: np.ndarray, axis: int) -> bool:
    return (value.ndim == 2 and value.dtype.kind == "f" and bool(np.isin(value, (0.0, 1.0)).all())
            and bool((value.sum(axis=axis) <= 1).all()))


def _cheap_chain(name: str, producer: dict[str, onnx.NodeProto], leaves: set[str], sizes: dict[str, int],
                 anchor_limit: float, gathering: set[str]) -> list[onnx.NodeProto] | None:
    """The forward nodes (producers first) that remake `name` from leaves or small anchors, or None (`gathering`: the
    outputs of products that gather, gathers_by_product)."""
    chain: list[onnx.NodeProto] = []
    seen: set[str] = set()

    def visit(value: str, top: bool) -> bool:
        if not value or value in leaves or value in seen:
            return True
        if not top and 0 < sizes.get(value, 1 << 62) <= anchor_limit:
            return True  # a small anchor: it stays stashed
        node = producer.get(value)
        if node is None or is_backward(node) or node.domain not in ("", "ai.onnx"):
            return False
        if node.op_type not in RECOMPUTABLE_OPS and value not in gathering:
            return False
        seen.update(node.output)
        if not all(visit(i, False) for i in node.input):
            return False
        chain.append(node)
        return True

    return chain if visit(name, True) else None

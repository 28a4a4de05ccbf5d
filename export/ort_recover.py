"""Recovering the rotation's inputs in the backward pass instead of keeping them (a rewrite of ONNX Runtime's training
graph, after export/ort_graph.py's recompute).

The gradient of a compound C in Y = S C (S: a slice of the layer's output, [blocks, tokens, C(n, k)]) is S^T dY, so
ORT keeps every S from forward to backward: 24 slices, 8.4 MiB, for MiniLM's query and value. But C is orthogonal
(a compound of an orthogonal matrix) and Y travels through invertible steps (concatenation, transposes, reshapes, the
bias, grouped-query attention's copies) into a tensor that attention keeps anyway (its query for the key's gradient,
its value for the probabilities' gradient). So S = Y C^T, and Y is that kept tensor with the steps undone: the
backward pass remakes Y from it with a slice, a few layout ops and one subtraction, and S is freed after its last
forward use. Where S's only backward readers are C's gradient S^T dY (a Gemm or FusedMatMul with transA, as ORT's
gradient builder writes it), that becomes C (Y^T dY): S is never remade, which saves the product Y C^T of the
activations' size; otherwise S = Y C^T is remade for its readers.

A slice is recovered only when the tensor at the end of its chain is kept for backward anyway (the first layer's query
is not: nothing below it trains, so its key needs no gradient and attention does not keep it); only compounds made
from orthogonal angles alone qualify (not the unconstrained control). The recovered S equals the kept one up to
rounding (a few float32 ulps, the bias subtracted again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quic_edge.export.ort_graph import RECOMPUTE_SUFFIX, graph_constants, is_backward, stashed_tensors, tensor_shapes

T = TypeVar("T")
MAX_STEPS = 16  # invertible steps followed from a rotation's output to a kept tensor
RECOVERED = "__recovered"


@dataclass(frozen=True)
class Step:
    """One invertible forward step, as it is undone: ("transpose", perm), ("reshape", input shape), ("slice", axis,
    start, end) for a concatenation, ("sub", the added tensor) for an addition, ("squeeze", axes) for an Unsqueeze,
    ("first", axes) for an Expand along those axes (every copy is the same)."""

    op: str
    args: tuple = ()


def recover_rotation_inputs(proto: onnx.ModelProto, orthogonal_angles: set[str]) -> list[str]:
    """Rewrite the backward readers of every kept rotation input that can be recovered (module text); returns their
    names. `orthogonal_angles`: the trainable tensors whose compounds are orthogonal."""
    if not orthogonal_angles:
        return []
    graph = proto.graph
    forward = [n for n in graph.node if not is_backward(n)]
    producer = {o: n for n in forward for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in forward:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    kept = set(stashed_tensors(proto))
    pure = _from_angles_only(graph, forward, orthogonal_angles)
    shapes = tensor_shapes(proto)
    constants = graph_constants(proto)
    added: list[onnx.NodeProto] = []
    made: dict[tuple, str] = {}
    recovered = []
    backward = [n for n in graph.node if is_backward(n)]
    for node in forward:
        if node.op_type != "MatMul" or node.input[0] not in kept or node.input[1] not in pure:
            continue
        if node.input[0] in pure or len(shapes.get(node.input[1], ([], 0))[0]) < 2:
            continue
        found = _steps_to_kept(node.output[0], readers, kept, shapes, constants, producer)
        if found is None:
            continue
        anchor, steps = found
        name, compound = node.input
        y, undone = _undo(anchor, steps, name, graph, made)
        added += undone
        gradients = [n for n in backward if name in n.input]
        if _transposed_products(gradients, name):
            added += _reassociate(gradients, y, compound)
        else:
            added += _remake(y, compound, len(shapes[compound][0]), name)
        recovered.append(name)
    renamed = {name: name + RECOVERED + RECOMPUTE_SUFFIX for name in recovered}
    for reader in graph.node:
        if is_backward(reader):
            for i, value in enumerate(reader.input):
                reader.input[i] = renamed.get(value, value)
    for new in reversed(added):  # at the front: ONNX Runtime then runs them late, beside their readers (ort_graph.py)
        graph.node.insert(0, new)
    return recovered


def _transposed_products(gradients: list[onnx.NodeProto], name: str) -> bool:
    """Every backward reader of S is a plain product S^T G, as ORT's gradient builder writes a MatMul's second
    factor's gradient: a Gemm with transA (2-D) or a FusedMatMul with transA (batched)."""
    def plain(node: onnx.NodeProto) -> bool:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kind = (node.op_type == "Gemm" and node.domain in ("", "ai.onnx")) or (
            node.op_type == "FusedMatMul" and node.domain == "com.microsoft")
        return (kind and len(node.input) == 2 and node.input[0] == name and node.input[1] != name
                and attrs.get("transA") == 1 and not attrs.get("transB") and attrs.get("alpha", 1.0) == 1.0
                and not attrs.get("transBatchA") and not attrs.get("transBatchB"))
    return bool(gradients) and all(plain(n) for n in gradients)


def _reassociate(gradients: list[onnx.NodeProto], y: str, compound: str) -> list[onnx.NodeProto]:
    """C's gradient S^T G, with S = Y C^T, made as C (Y^T G): S is never remade and the product of the activations'
    size that would remake it is saved (C (Y^T G) costs C's size cubed). Each reader becomes Y^T G; a new product with
    C gives its output."""
    nodes = []
    for gemm in gradients:
        out = gemm.output[0]
        inner = f"{out}{RECOVERED}_inner{RECOMPUTE_SUFFIX}"
        gemm.input[0] = y
        gemm.output[0] = inner
        nodes.append(helper.make_node("MatMul", [compound, inner], [out], name=f"{out}{RECOVERED}_outer{RECOMPUTE_SUFFIX}"))
    return nodes


def _from_angles_only(graph: onnx.GraphProto, forward: list[onnx.NodeProto], angles: set[str]) -> set[str]:
    """Forward tensors made from `angles` and constants only (at least one angle tensor among them)."""
    constant = {i.name for i in graph.initializer}
    pure = {i.name for i in graph.input if i.name in angles}
    pure |= {i.name for i in graph.initializer if i.name in angles}
    for node in forward:
        inputs = [i for i in node.input if i]
        if not inputs and node.op_type == "Constant":
            constant.update(node.output)
        elif inputs and all(i in pure or i in constant for i in inputs):
            if any(i in pure for i in inputs):
                pure.update(node.output)
            else:
                constant.update(node.output)
    return pure


def _steps_to_kept(start: str, readers: dict[str, list[onnx.NodeProto]], kept: set[str],
                   shapes: dict[str, tuple[list[int], int]], constants: dict[str, np.ndarray],
                   producer: dict[str, onnx.NodeProto]) -> tuple[str, list[Step]] | None:
    """Follow `start` through single-reader invertible forward steps to a kept tensor: (its name, the steps in
    forward order), or None."""
    current, steps = start, []
    for _ in range(MAX_STEPS):
        if current != start and current in kept:
            return current, steps
        following = readers.get(current, [])
        if len(following) != 1 or current not in shapes:
            return None
        node = following[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Identity":
            pass  # nothing to undo
        elif node.op_type == "Transpose" and "perm" in attrs:
            steps.append(Step("transpose", tuple(int(p) for p in attrs["perm"])))
        elif node.op_type == "Reshape":
            steps.append(Step("reshape", tuple(shapes[current][0])))
        elif node.op_type == "Unsqueeze":
            axes = attrs.get("axes") if len(node.input) < 2 else constants.get(node.input[1])
            if axes is None:
                return None
            steps.append(Step("squeeze", tuple(int(a) for a in np.ravel(axes))))
        elif node.op_type == "Expand":  # copies along axes of length 1 (grouped-query attention's repeated values)
            before, after = shapes[current][0], shapes.get(node.output[0], ([], 0))[0]
            if len(before) != len(after):
                return None
            steps.append(Step("first", tuple(a for a, (b, c) in enumerate(zip(before, after, strict=True)) if b != c)))
        elif node.op_type in ("Concat", "ConcatTraining") and node.domain in ("", "ai.onnx", "com.microsoft"):
            rank = len(shapes[current][0])
            axis = int(attrs.get("axis", 0)) % rank
            widths = [shapes.get(i, ([], 0))[0] for i in node.input]
            if any(len(w) != rank for w in widths) or list(node.input).count(current) != 1:
                return None
            at = list(node.input).index(current)
            start_at = sum(w[axis] for w in widths[:at])
            steps.append(Step("slice", (axis, start_at, start_at + widths[at][axis])))
        elif node.op_type == "Add":
            other = node.input[1] if node.input[0] == current else node.input[0]
            if node.input[0] == node.input[1] or not _static(other, constants, producer):
                return None
            if shapes.get(node.output[0], ([], 0))[0] != shapes[current][0]:
                return None  # the addition broadcast the rotation's output: not undone by a subtraction
            steps.append(Step("sub", (other,)))
        else:
            return None
        current = node.output[0]
    return None


def undo_steps(anchor: T, steps: list[Step], made: dict[tuple, T], undo_one: Callable[[T, Step], T]) -> T:
    """The rotation's output remade from the kept `anchor` (either runtime's graph): `undo_one(tensor, step)` undoes
    one step, the steps in reverse order. `made` maps (anchor, undone steps) to what is already made for another slice
    of the same output, so the orders of one layer share everything up to their slice."""
    current, done = anchor, (anchor,)
    for step in reversed(steps):
        done = (*done, step)
        if done not in made:
            made[done] = undo_one(current, step)
        current = made[done]
    return current


def _static(name: str, constants: dict[str, np.ndarray], producer: dict[str, onnx.NodeProto]) -> bool:
    """A constant or a graph input (a frozen bias): not made by a forward node from the data."""
    return name in constants or name not in producer


def _undo(anchor: str, steps: list[Step], name: str, graph: onnx.GraphProto,
          made: dict[tuple, str]) -> tuple[str, list[onnx.NodeProto]]:
    """The rotation's output Y = S C remade from the kept `anchor` (the steps undone in reverse order) for S named
    `name`: (its tensor, the new nodes). `made` maps (anchor, undone steps) to the tensor already made for another
    slice of the same output, so the orders of one layer share everything up to their slice."""
    nodes: list[onnx.NodeProto] = []

    def undo_one(current: str, step: Step) -> str:
        out = f"{name}{RECOVERED}_{len(nodes)}{RECOMPUTE_SUFFIX}"
        if step.op == "transpose" and current == anchor:
            # an Einsum, not a Transpose: ONNX Runtime's transpose optimizer cancels a Transpose of the anchor
            # against the forward Transpose that made it, and the backward pass then reads (keeps) its input too
            letters = "abcdefghijklmnop"[:len(step.args)]
            inverse = np.argsort(step.args)
            equation = f"{letters}->{''.join(letters[i] for i in inverse)}"
            node = helper.make_node("Einsum", [current], [out], name=out, equation=equation)
        elif step.op == "transpose":
            node = helper.make_node("Transpose", [current], [out], name=out, perm=[int(i) for i in np.argsort(step.args)])
        elif step.op == "reshape":
            node = helper.make_node("Reshape", [current, _int64s(graph, f"{out}_shape", list(step.args))], [out], name=out)
        elif step.op == "slice":
            axis, start, end = step.args
            ends = [_int64s(graph, f"{out}_{what}", [value]) for what, value in (("start", start), ("end", end),
                                                                                   ("axis", axis))]
            node = helper.make_node("Slice", [current, *ends], [out], name=out)
        elif step.op == "sub":
            node = helper.make_node("Sub", [current, step.args[0]], [out], name=out)
        elif step.op == "squeeze":
            node = helper.make_node("Squeeze", [current, _int64s(graph, f"{out}_axes", list(step.args))], [out], name=out)
        elif step.op == "first":  # every copy is the same: keep the first
            axes = list(step.args)
            bounds = [_int64s(graph, f"{out}_{what}", values) for what, values in (("start", [0] * len(axes)),
                                                                                   ("end", [1] * len(axes)),
                                                                                   ("axis", axes))]
            node = helper.make_node("Slice", [current, *bounds], [out], name=out)
        else:
            raise ValueError(f"no undo for step {step.op!r}")
        nodes.append(node)
        return out

    return undo_steps(anchor, steps, made, undo_one), nodes


def _remake(y: str, compound: str, rank: int, name: str) -> list[onnx.NodeProto]:
    """S = Y C^T under the name the backward readers are given."""
    transposed = f"{name}{RECOVERED}_ct{RECOMPUTE_SUFFIX}"
    out = name + RECOVERED + RECOMPUTE_SUFFIX
    return [helper.make_node("Transpose", [compound], [transposed], name=transposed,
                             perm=[*range(rank - 2), rank - 1, rank - 2]),
            helper.make_node("MatMul", [y, transposed], [out], name=out)]


def _int64s(graph: onnx.GraphProto, name: str, values: list[int]) -> str:
    graph.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
    return name

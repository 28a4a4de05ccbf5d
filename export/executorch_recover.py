"""Recovering the rotation's inputs in the backward pass instead of keeping them: ExecuTorch's joint graph, the same
rewrite as ONNX Runtime's (export/ort_recover.py, whose module text gives the reasoning: S = Y C^T with Y the kept
attention tensor with the invertible steps undone).

The joint graph's rotation is an `mm(S, C)` per block and order (ExecuTorch traces the per-block layout,
quic_edge.layer.per_block_products; a batched `bmm` is handled alike) whose S (a slice of the layer's output) the
backward pass reads for C's gradient S^T G. After the rewrite that gradient is C (Y^T G), with Y remade just before the
first reader (`_reassociate`), or, where S has other readers, they read S = Y C^T; either way S is freed after the
forward product. Only compounds made from orthogonal angles alone qualify.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.fx import Graph, Node

from quic_edge.export.executorch_graph import backward_readers, forward_nodes, kept_tensors
from quic_edge.export.ort_recover import MAX_STEPS, Step, undo_steps

aten = torch.ops.aten
LAYOUT_NO_OPS = frozenset({aten.clone.default, aten.alias.default})  # nothing to undo
RESHAPES = frozenset({aten.view.default, aten._unsafe_view.default, aten.reshape.default})
PRODUCTS = frozenset({aten.mm.default, aten.bmm.default})  # a rotation's product: one block's, or batched


def recover_rotation_inputs(program: Any, orthogonal_angles: set[str]) -> list[str]:
    """Rewrite the backward readers of every kept rotation input that can be recovered; returns their node names.
    `orthogonal_angles`: the program's names (parameter targets) of the angle tensors whose compounds are orthogonal."""
    graph: Graph = program.graph_module.graph
    forward = forward_nodes(program)
    kept = set(kept_tensors(program, forward))
    frozen = _frozen_placeholders(program)
    pure = _from_angles_only(program, forward, orthogonal_angles, frozen)
    order = {n: i for i, n in enumerate(graph.nodes)}
    groups: dict[Node, list[tuple[Node, Node, list[Step], Any]]] = {}
    for node in graph.nodes:
        if node not in forward or node.target not in PRODUCTS:
            continue
        s, c = node.args[:2]
        if s not in kept or s in pure or c not in pure or _shape(c)[-1] != _shape(c)[-2]:
            continue
        found = _steps_to_kept(node, forward, kept, frozen)
        if found is not None:
            anchor, steps = found
            groups.setdefault(anchor, []).append((s, c, steps, node.target))
    recovered = []
    for anchor, items in groups.items():
        readers = {s: sorted(backward_readers(s, forward), key=order.__getitem__) for s, *_ in items}
        first = min((r[0] for r in readers.values()), key=order.__getitem__)
        made: dict[tuple, Node] = {}
        with graph.inserting_before(first):
            outputs = [undo_steps(anchor, steps, made, lambda node, step: _undo_one(graph, node, step))
                       for _, _, steps, _ in items]
        for (s, c, _, product), y in zip(items, outputs, strict=True):
            if not _reassociate(graph, s, c, y, readers[s]):
                # before S's own first reader: `first` may be a reader another slice's reassociation has erased
                with graph.inserting_before(readers[s][0]):
                    remade = _call(graph, product, (y, _call(graph, aten.permute.default, (c, _swap(c)))))
                for reader in readers[s]:
                    reader.replace_input_with(s, remade)
            recovered.append(s.name)
    graph.lint()
    program.graph_module.recompile()
    return recovered


def _reassociate(graph: Graph, s: Node, c: Node, y: Node, readers: list[Node]) -> bool:
    """C's gradient S^T G, with S = Y C^T, made as C (Y^T G): S is never remade, one product of the activations' size
    less (the inner product is Y's size; C (Y^T G) costs C's size cubed). Applies when every backward reader of S is its
    transpose, read only as the first factor of a product; returns whether it applied (else S is remade)."""
    swap = _swap(s)
    products = []
    for reader in readers:
        if reader.target != aten.permute.default or [int(p) % len(swap) for p in reader.args[1]] != swap:
            return False
        for use in reader.users:
            if use.target not in PRODUCTS or use.args[0] is not reader or use.args[1] is reader:
                return False
            products.append(use)
    for use in products:
        with graph.inserting_before(use):
            inner = _call(graph, use.target, (_call(graph, aten.permute.default, (y, swap)), use.args[1]))
            use.replace_all_uses_with(_call(graph, use.target, (c, inner)))
        graph.erase_node(use)
    for reader in readers:
        graph.erase_node(reader)
    return True


def _swap(node: Node) -> list[int]:
    """The permutation that transposes a tensor's last two axes."""
    rank = len(_shape(node))
    return [*range(rank - 2), rank - 1, rank - 2]


def _frozen_placeholders(program: Any) -> set[Node]:
    """Placeholders neither fed by the data nor trained: frozen weights, biases, constants."""
    signature = program.graph_signature
    trainable = {spec.target for spec in signature.output_specs if spec.kind.name == "GRADIENT_TO_PARAMETER"}
    return {p for p in program.graph_module.graph.nodes if p.op == "placeholder" and p.name not in signature.user_inputs
            and signature.inputs_to_parameters.get(p.name) not in trainable}


def _from_angles_only(program: Any, forward: set[Node], angles: set[str], frozen: set[Node]) -> set[Node]:
    """Forward nodes made from the orthogonal angles and frozen placeholders only (at least one angle among their
    sources)."""
    params = program.graph_signature.inputs_to_parameters
    pure = {p for p in program.graph_module.graph.nodes if p.op == "placeholder" and params.get(p.name) in angles}
    static = set(frozen)
    for node in program.graph_module.graph.nodes:
        if node in forward and node.op == "call_function":
            inputs = node.all_input_nodes
            if all(i in pure or i in static for i in inputs):
                (pure if any(i in pure for i in inputs) else static).add(node)
    return pure


def _steps_to_kept(start: Node, forward: set[Node], kept: set[Node],
                   frozen: set[Node]) -> tuple[Node, list[Step]] | None:
    """Follow `start` through single-reader invertible forward steps to a kept tensor: (it, the steps in forward
    order), or None. An addition is undone only when its other operand is `frozen` (a bias)."""
    current, steps = start, []
    for _ in range(MAX_STEPS):
        if current is not start and current in kept:
            return current, steps
        following = [u for u in current.users if u in forward]
        if len(following) != 1:
            return None
        node = following[0]
        before, after = _shape(current), _shape(node)
        if node.target in LAYOUT_NO_OPS or (node.target == aten.expand.default and before == after):
            pass
        elif node.target == aten.permute.default:
            steps.append(Step("transpose", tuple(int(p) % len(before) for p in node.args[1])))
        elif node.target in RESHAPES:
            steps.append(Step("reshape", before))
        elif node.target == aten.unsqueeze.default:
            steps.append(Step("squeeze", (int(node.args[1]) % len(after),)))
        elif node.target == aten.expand.default:  # copies along axes of length 1 (grouped-query attention)
            if len(before) != len(after):
                return None
            steps.append(Step("first", tuple(a for a, (b, c) in enumerate(zip(before, after, strict=True)) if b != c)))
        elif node.target == aten.cat.default:
            pieces = list(node.args[0])
            axis = int(node.args[1] if len(node.args) > 1 else 0) % len(before)
            if pieces.count(current) != 1 or any(len(_shape(p)) != len(before) for p in pieces):
                return None
            at = pieces.index(current)
            offset = sum(_shape(p)[axis] for p in pieces[:at])
            steps.append(Step("slice", (axis, offset, offset + before[axis])))
        elif node.target == aten.add.Tensor and len(node.args) == 2 and not node.kwargs:
            other = node.args[1] if node.args[0] is current else node.args[0]
            if other is current or other not in frozen or after != before:
                return None
            steps.append(Step("sub", (other,)))
        else:
            return None
        current = node
    return None


def _undo_one(graph: Graph, current: Node, step: Step) -> Node:
    """A node that undoes one forward step (ort_recover.Step) of the rotation's output."""
    if step.op == "transpose":
        inverse = sorted(range(len(step.args)), key=step.args.__getitem__)
        current = _call(graph, aten.permute.default, (current, inverse))
    elif step.op == "reshape":
        if not current.meta["val"].is_contiguous():
            current = _call(graph, aten.clone.default, (current,), {"memory_format": torch.contiguous_format})
        current = _call(graph, aten.view.default, (current, list(step.args)))
    elif step.op == "slice":
        axis, start, end = step.args
        current = _call(graph, aten.slice.Tensor, (current, axis, start, end))
    elif step.op == "sub":
        current = _call(graph, aten.sub.Tensor, (current, step.args[0]))
    elif step.op == "squeeze":
        current = _call(graph, aten.squeeze.dims, (current, list(step.args)))
    elif step.op == "first":  # every copy is the same: keep the first
        for axis in step.args:
            current = _call(graph, aten.slice.Tensor, (current, axis, 0, 1))
    else:
        raise ValueError(f"no undo for step {step.op!r}")
    return current


def _call(graph: Graph, target: Any, args: tuple, kwargs: dict | None = None) -> Node:
    """A new node with its fake value (the metadata later passes read), computed in the program's fake mode."""
    node = graph.call_function(target, args, kwargs or {})
    values = [a.meta["val"] for a in node.all_input_nodes]
    with values[0].fake_mode:
        node.meta["val"] = target(*(a.meta["val"] if isinstance(a, Node) else a for a in args), **(kwargs or {}))
    return node


def _shape(node: Any) -> tuple[int, ...]:
    value = node.meta.get("val") if isinstance(node, Node) else None
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()

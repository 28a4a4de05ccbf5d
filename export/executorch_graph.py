"""Rewrites of ExecuTorch's joint forward-backward graph that shorten what a training step keeps alive (issue 11).

The joint program is one graph: the forward nodes, then the backward nodes, in the order ExecuTorch runs them; its
memory planner gives every tensor a lifetime from its producer to its last reader, so a forward tensor that a backward
node reads (a "kept" tensor) holds its bytes through the whole step. `recompute_in_backward` gives such readers their
own copy of the tensor, remade just before the first of them from what is kept anyway, the same rewrite as ONNX
Runtime's (export/ort_graph.py): fp32 weights dequantized from int8, and QuIC's compound entries (products with a
constant selection matrix, quic_edge.compounds). It applies to every adapter alike.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.fx import Graph, Node

aten = torch.ops.aten
# ops that remake a tensor cheaply from a frozen weight or a small anchor: dequantization, layout and gathers
RECOMPUTABLE_OPS = frozenset({aten._to_copy.default, aten.mul.Tensor, aten.mul.Scalar, aten.permute.default,
                              aten.view.default, aten.unsqueeze.default, aten.squeeze.dims, aten.expand.default,
                              aten.clone.default, aten.slice.Tensor, aten.select.int, aten.t.default,
                              aten.alias.default, aten.index.Tensor})
PRODUCTS = frozenset({aten.mm.default, aten.bmm.default})
LEADING_AXES_OPS = frozenset({aten.unsqueeze.default, aten.expand.default, aten.view.default, aten.alias.default})


def forward_nodes(program: Any) -> set[Node]:
    """The nodes the loss and the user outputs depend on (the rest of the joint graph is the backward pass)."""
    output = next(n for n in program.graph_module.graph.nodes if n.op == "output")
    kinds = [spec.kind.name for spec in program.graph_signature.output_specs]
    roots = [value for value, kind in zip(output.args[0], kinds, strict=True) if kind in ("LOSS_OUTPUT", "USER_OUTPUT")]
    seen: set[Node] = set()
    stack = [r for r in roots if isinstance(r, Node)]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(node.all_input_nodes)
    return seen


def node_bytes(node: Node) -> int:
    value = node.meta.get("val")
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def backward_readers(node: Node, forward: set[Node]) -> list[Node]:
    """The backward nodes that read `node` (`forward`: forward_nodes of its program)."""
    return [u for u in node.users if u not in forward and u.op != "output"]


def kept_tensors(program: Any, forward: set[Node] | None = None) -> list[Node]:
    """Forward nodes that a backward node reads, in graph order (`forward`: forward_nodes, if already found)."""
    forward = forward_nodes(program) if forward is None else forward
    return [n for n in program.graph_module.graph.nodes if n in forward and n.op == "call_function"
            and backward_readers(n, forward)]


def constant_values(program: Any) -> dict[str, torch.Tensor]:
    """Placeholder name -> value for the program's lifted constants and buffers."""
    signature = program.graph_signature
    values = {}
    for placeholder, target in signature.inputs_to_lifted_tensor_constants.items():
        values[placeholder] = program.constants[target]
    for placeholder, target in signature.inputs_to_buffers.items():
        source = program.constants if target in program.constants else program.state_dict
        values[placeholder] = source[target]
    return values


def gathers_by_product(node: Node, constants: dict[str, torch.Tensor]) -> bool:
    """A product with a constant 0/1 matrix that puts one entry of the other operand in each output: P @ A with at most
    one 1 in each row of P, or A @ Q with at most one 1 in each column of Q (quic_edge.compounds' minors)."""
    if node.target not in PRODUCTS:
        return False
    left, right = (_constant_matrix(a, constants) for a in node.args[:2])
    return (left is not None and _one_hot(left, -1)) or (right is not None and _one_hot(right, -2))


def _constant_matrix(node: Any, constants: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The constant matrix behind a product's operand: a placeholder, or one broadcast over leading (batch) axes by
    unsqueezes, expands and views that keep its last two axes (how a batched product of a constant is traced)."""
    if not isinstance(node, Node) or not isinstance(node.meta.get("val"), torch.Tensor):
        return None
    trailing = tuple(node.meta["val"].shape[-2:])
    while node.op == "call_function" and node.target in LEADING_AXES_OPS and isinstance(node.args[0], Node):
        node = node.args[0]
    if node.op != "placeholder" or node.name not in constants:
        return None
    value = constants[node.name]
    return value if value.dim() == 2 and tuple(value.shape) == trailing else None


def _one_hot(value: torch.Tensor, axis: int) -> bool:
    return (value.dtype.is_floating_point and bool(((value == 0) | (value == 1)).all())
            and bool((value.sum(dim=axis) <= 1).all()))


def recompute_in_backward(program: Any, min_bytes: int = 1 << 18, anchor_fraction: float = 1 / 8) -> list[str]:
    """Give the backward readers of every kept tensor of at least `min_bytes` that a chain of cheap ops makes from
    placeholders (weights, constants) or a much smaller tensor (an anchor, at most `anchor_fraction` of its size, which
    stays kept instead) their own copy, made just before the first of them; the forward copy is then freed after its
    last forward use. Returns the recomputed nodes' names."""
    graph: Graph = program.graph_module.graph
    constants = constant_values(program)
    forward = forward_nodes(program)
    order = {n: i for i, n in enumerate(graph.nodes)}
    recomputed = []
    for node in kept_tensors(program, forward):
        size = node_bytes(node)
        if size < min_bytes:
            continue
        chain = _cheap_chain(node, forward, constants, size * anchor_fraction)
        if chain is None:
            continue
        readers = sorted(backward_readers(node, forward), key=order.__getitem__)
        copies = _copy_chain(graph, chain, before=readers[0])
        for reader in readers:
            reader.replace_input_with(node, copies[node])
        recomputed.append(node.name)
    graph.lint()
    program.graph_module.recompile()
    return recomputed


def _copy_chain(graph: Graph, chain: list[Node], before: Node) -> dict[Node, Node]:
    """Copies of `chain`'s nodes (producers first), inserted before `before`, reading each other: original -> copy."""
    copies: dict[Node, Node] = {}
    with graph.inserting_before(before):
        for original in chain:
            copies[original] = graph.node_copy(original, lambda n: copies.get(n, n))  # noqa: B023 (used at once)
    return copies


def _cheap_chain(top: Node, forward: set[Node], constants: dict[str, torch.Tensor],
                 anchor_limit: float) -> list[Node] | None:
    """The forward nodes (producers first) that remake `top` from placeholders or small anchors, or None."""
    chain: list[Node] = []
    seen: set[Node] = set()

    def visit(node: Node, is_top: bool) -> bool:
        if node.op == "placeholder" or node in seen:
            return True
        if node.op != "call_function" or node not in forward:
            return False
        if not is_top and 0 < node_bytes(node) <= anchor_limit:
            return True  # a small anchor: it stays kept
        if node.target not in RECOMPUTABLE_OPS and not gathers_by_product(node, constants):
            return False
        seen.add(node)
        if not all(visit(i, False) for i in node.all_input_nodes):
            return False
        chain.append(node)
        return True

    return chain if visit(top, True) else None

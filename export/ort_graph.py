"""Rewrites of an exported ONNX graph before ONNX Runtime builds its training artifacts (export/ort.py runs them).

- `strip_prefix`: initializers named as the model's own parameters (not the loss wrapper's).
- `patch_layer_norm`: LayerNormalization gets its Mean and InvStdDev outputs (ORT's gradient builder reads them;
  onnxruntime#22465).
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

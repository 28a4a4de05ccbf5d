"""ONNX Runtime on-device training bundles: training, eval and optimizer models plus a checkpoint.

    from quic_edge.export.ort import export_ort
    export_ort(model, example_batch("minilm", 8, 64, 3), "bundle/", labels=["a", "b", "c"], optimizer="adamw")

How (RUNTIMES.md): the model wrapped in WithLoss (first output the loss) is exported by the dynamo exporter with
`optimize=False` (optimizing folds the angles and the int8 weights away); initializers are renamed to the model's
own parameter names; LayerNormalization gets its two optional outputs (ORT's gradient builder reads them);
`generate_artifacts` builds the gradient graph with the frozen int8 weights listed in `frozen_params` (so they
stay int8 in the checkpoint). AdamW is switched to torch semantics (`adam_mode=0`: torch.optim.AdamW, eps
added after bias correction, decoupled weight decay); ORT's default is the Hugging Face variant.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from quic_edge.export.common import ExportError, export_bundle, orthogonal_angles, split_batch
from quic_edge.export.ort_graph import (
    RECOMPUTE_SESSION_OPTIONS,
    cast_like_to_cast,
    patch_layer_norm,
    recompute_in_backward,
    scale_parameters,
    split_sequences_to_split,
    strip_prefix,
)
from quic_edge.export.ort_recover import recover_rotation_inputs
from quic_edge.formats.optimizer import stored_scales
from quic_edge.state import delta_parameters
from quic_edge.tasks import TARGET_NAME, WithLoss

ARTIFACTS = {
    "training_model": "training_model.onnx",
    "eval_model": "eval_model.onnx",
    "optimizer_model": "optimizer_model.onnx",
    "checkpoint": "checkpoint",
}
WRAPPER_PREFIX = "model."  # WithLoss holds the model as .model; names in the bundle are the model's own
OUTPUTS = ("loss", "logits")


VERSIONS = ("onnx", "onnxruntime-training-cpu", "onnxscript")


def export_ort(model: nn.Module, example_batch: dict[str, np.ndarray], out_dir: str | os.PathLike, **options: Any) -> dict:
    """An ONNX Runtime training bundle: quic_edge.export.common.export_bundle("ort", ...), options as there."""
    return export_bundle("ort", model, example_batch, out_dir, **options)


def write_files(model: nn.Module, example_batch: dict[str, np.ndarray], staging: Path, manifest: dict[str, Any],
                recompute: bool = True) -> dict:
    """The training, eval and optimizer graphs and the checkpoint, written into `staging`; returns their roles.

    recompute: the backward pass remakes cheap large tensors (dequantized weights, gathered compound entries) instead
    of keeping them from the forward pass (export/ort_graph.py), and the rotations' inputs from what attention keeps
    (export/ort_recover.py); the session options it needs go into the manifest."""
    proto = to_onnx(model, example_batch, manifest["task"])
    check_int8(proto, model)
    write_artifacts(proto, model, staging, manifest["optimizer"])
    if recompute:
        path = staging / ARTIFACTS["training_model"]
        training = onnx.load(path)
        recomputed = recompute_in_backward(training)
        if recomputed:
            manifest["session_options"] = dict(RECOMPUTE_SESSION_OPTIONS)
        if recover_rotation_inputs(training, orthogonal_angles(model)) or recomputed:
            onnx.save(training, path)
    return dict(ARTIFACTS)


def to_onnx(model: nn.Module, example_batch: dict[str, np.ndarray], task: str) -> onnx.ModelProto:
    """The (loss, logits) graph of `model` with the model's parameter names on its initializers."""
    inputs, target = split_batch(example_batch)
    wrapper = WithLoss(model, task, tuple(inputs)).eval()
    args = tuple(torch.from_numpy(a) for a in (*inputs.values(), target))
    try:
        with _quiet():
            program = torch.onnx.export(
                wrapper, args, dynamo=True, optimize=False, input_names=[*inputs, TARGET_NAME],
                output_names=list(OUTPUTS), verbose=False,
            )
    except Exception as err:  # torch.onnx's own errors carry pages of advice for PyTorch developers
        raise _conversion_error(err, wrapper, args) from None
    proto = program.model_proto
    strip_prefix(proto, WRAPPER_PREFIX)
    patch_layer_norm(proto)
    cast_like_to_cast(proto)
    split_sequences_to_split(proto)
    return proto


def check_int8(proto: onnx.ModelProto, model: nn.Module) -> None:
    """Every int8 tensor of the model must be an int8 initializer of the graph (some settings fold them to fp32)."""
    dtypes = {i.name: i.data_type for i in proto.graph.initializer}
    for name, tensor in model.state_dict().items():
        if tensor.dtype == torch.int8 and dtypes.get(name) != onnx.TensorProto.INT8:
            raise ExportError(f"int8 weight {name} did not stay int8 in the ONNX graph; export with optimize=False")


def write_artifacts(proto: onnx.ModelProto, model: nn.Module, folder: Path, spec: dict[str, Any]) -> None:
    """generate_artifacts into `folder`; an op without a gradient raises ExportError naming it and its module."""
    from onnxruntime.training import artifacts
    from onnxruntime.training.onnxblock import optim

    trainable = list(delta_parameters(model))
    names = {i.name for i in proto.graph.initializer}
    missing = sorted(set(trainable) - names)
    if missing:
        raise ExportError(f"trainable tensors {missing} are not in the exported graph (unused by forward?)")
    state = set(model.state_dict())
    frozen = [n for n in names if n in state and n not in set(trainable)]
    if spec.get("groups") and spec["weight_decay"]:
        raise ExportError("head_lr with weight decay: ONNX Runtime's AdamW would decay the head at the base rate; "
                          "use weight_decay=0 or one learning rate")
    proto = _with_scaled_parameters(proto, stored_scales(spec, trainable))
    if spec["name"] == "adamw":
        block: Any = optim.AdamW(betas=tuple(spec["betas"]), eps=spec["eps"], weight_decay=spec["weight_decay"])
    else:
        block = optim.SGD()
    try:
        with _quiet():
            artifacts.generate_artifacts(
                _without_metadata(proto), requires_grad=trainable, frozen_params=frozen, loss=None, optimizer=block,
                artifact_directory=folder,
            )
    except RuntimeError as err:
        raise _gradient_error(err, proto) from None
    if spec["name"] == "adamw":
        _torch_adamw(folder / ARTIFACTS["optimizer_model"])


def _with_scaled_parameters(proto: onnx.ModelProto, scales: dict[str, float]) -> onnx.ModelProto:
    """A copy in which grouped tensors train at their own rate (export/ort_graph.py, scale_parameters)."""
    if all(s == 1.0 for s in scales.values()):
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    scale_parameters(copy, scales)
    return copy


def _without_metadata(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without the exporter's per-node stack traces (megabytes of text; kept in `proto` for error messages)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for node in copy.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    return copy


def _torch_adamw(path: Path) -> None:
    optimizer_model = onnx.load(path)
    for node in optimizer_model.graph.node:
        if node.op_type == "AdamWOptimizer":
            for attr in node.attribute:
                if attr.name == "adam_mode":
                    attr.i = 0  # torch.optim.AdamW
    onnx.save(optimizer_model, path)


def _gradient_error(err: RuntimeError, proto: onnx.ModelProto) -> ExportError:
    message = str(err)
    match = re.search(r"[Gg]radient[^:]*not[^:]*registered[^:]*?:?\s*(\w+)", message) or re.search(
        r"No gradient builder[^\w]*(?:for)?\s*(\w+)", message
    )
    op = match.group(1) if match else None
    node_name = re.search(r"node[ :]+['\"]?([\w./:-]+)", message)
    module = _module_of(proto, op, node_name.group(1) if node_name else None)
    if op is None:
        return ExportError(f"ONNX Runtime could not build the training graph: {message.strip().splitlines()[-1]}")
    return ExportError(
        f"ONNX Runtime cannot differentiate the op {op} (from module {module}); rewrite that module with "
        "differentiable ops (Gather, MatMul, Mul, Add, ...) or freeze it. Nothing was written."
    )


def _conversion_error(err: Exception, wrapper: nn.Module, args: tuple[torch.Tensor, ...]) -> ExportError:
    """The op ONNX cannot express and the module it comes from (found in torch.export's graph)."""
    text = str(err)
    found = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)'", text)
    if found is None:
        last = next((line for line in reversed(text.splitlines()) if "Error" in line), text.strip()[-300:])
        return ExportError(f"the model could not be converted to ONNX: {last.strip()}")
    op, module = found.group(1), "an unknown module"
    try:
        graph = torch.export.export(wrapper, args, strict=False).graph
        for node in graph.nodes:
            stack = node.meta.get("nn_module_stack") or {}
            if node.op == "call_function" and op.split(".")[-1] in str(node.target) and stack:
                path, kind = list(stack.values())[-1]
                module = f"{path.removeprefix('L__self__.').removeprefix(WRAPPER_PREFIX)} ({getattr(kind, '__name__', kind)})"
                break
    except Exception:  # noqa: BLE001 - the search only improves the message
        pass
    return ExportError(f"ONNX has no form of the op {op} (from module {module}); rewrite that module with ops ONNX "
                       "expresses, or export for --runtime executorch. Nothing was written.")


def _module_of(proto: onnx.ModelProto, op: str | None, node_name: str | None) -> str:
    for node in proto.graph.node:
        if node.name == node_name or (node_name is None and node.op_type == op):
            props = {p.key: p.value for p in node.metadata_props}
            scopes = props.get("pkg.torch.onnx.name_scopes")
            classes = props.get("pkg.torch.onnx.class_hierarchy")
            if scopes and classes:
                names, types = ast.literal_eval(scopes), ast.literal_eval(classes)
                path = names[-2].removeprefix(WRAPPER_PREFIX) if len(names) > 2 else ""  # [.., module, op]
                kind = types[-2] if len(types) > 1 else types[-1]
                return f"{path or '<root>'} ({kind})"
    return "unknown"


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and (at C++ level) graph-optimizer logs meant for developers; keep a
    user's terminal clean. Failures still arrive as exceptions."""
    from onnxruntime.capi import _pybind_state

    _pybind_state.set_default_logger_severity(3)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        logging.disable(previous)

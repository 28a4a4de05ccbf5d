"""ExecuTorch training bundles: one `.pte` program whose forward returns (loss, logits) and the gradients.

    from quic_edge.export.executorch import export_executorch
    export_executorch(model, example_batch("minilm", 8, 64, 3), "bundle/", labels=["a", "b", "c"])

How (RUNTIMES.md): torch.export of the model wrapped in WithLoss (first output the loss, logits detached),
`_export_forward_backward` for the joint graph, to_edge, to_executorch. The int8 weights are dequantized as
`w_int8.float() * scale`, so they stay int8 constants inside the program (checked before writing). The
optimizer runs on the host (runtimes/executorch.py) on the program's aliased parameter tensors.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quic_edge.export.common import ExportError, export_bundle, orthogonal_angles, split_batch
from quic_edge.export.executorch_graph import recompute_in_backward
from quic_edge.export.executorch_recover import recover_rotation_inputs
from quic_edge.layer import per_block_products
from quic_edge.tasks import WithLoss

PROGRAM = "training.pte"
WRAPPED = "model"  # WithLoss keeps the model under this name: the program's parameter names start with it


VERSIONS = ("executorch",)


def export_executorch(model: nn.Module, example_batch: dict[str, np.ndarray], out_dir: str | os.PathLike,
                      **options: Any) -> dict:
    """An ExecuTorch training bundle: quic_edge.export.common.export_bundle("executorch", ...), options as there."""
    return export_bundle("executorch", model, example_batch, out_dir, **options)


def write_files(model: nn.Module, example_batch: dict[str, np.ndarray], staging: Path, manifest: dict[str, Any],
                recompute: bool = True) -> dict:
    """The joint forward-backward program, written into `staging`; returns its role.

    recompute: the backward pass remakes cheap large tensors (dequantized weights, gathered compound entries) instead
    of keeping them from the forward pass (export/executorch_graph.py), and the rotations' inputs from what attention
    keeps (export/executorch_recover.py), so the memory planner frees them after their forward use."""
    (staging / PROGRAM).write_bytes(to_program(model, example_batch, manifest["task"], recompute))
    return {"program": PROGRAM}


def to_program(model: nn.Module, example_batch: dict[str, np.ndarray], task: str, recompute: bool = True) -> bytes:
    """The `.pte` bytes of the joint forward-backward program (recompute: as in `write_files`)."""
    from executorch.exir import EdgeCompileConfig, to_edge

    program = joint_program(model, example_batch, task, recompute)
    edge = to_edge(program, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    return edge.to_executorch().buffer


def joint_program(model: nn.Module, example_batch: dict[str, np.ndarray], task: str, recompute: bool = True,
                  per_block: bool = True) -> Any:
    """The joint forward-backward ExportedProgram in core ATen ops, rewritten as `write_files` says. per_block: QuIC's
    rotation traced as one product per block and order (what bundles use); False traces the batched layout eager
    PyTorch and ONNX Runtime run (`bmm`), for tests."""
    from torch._decomp import core_aten_decompositions
    from torch.export import export
    from torch.export.experimental import _export_forward_backward

    inputs, target = split_batch(example_batch)
    args = tuple(torch.from_numpy(a) for a in (*inputs.values(), target))
    # per block: no transposes of the activations, which ExecuTorch's kernels copy (quic_edge.layer)
    with per_block_products(model) if per_block else contextlib.nullcontext():
        program = _export_forward_backward(export(WithLoss(model, task, tuple(inputs)).eval(), args, strict=False))
    table = core_aten_decompositions()
    table[torch.ops.aten.empty_permuted.default] = _empty_permuted  # no ExecuTorch kernel (SiLU's backward uses it)
    # The pip runtime has optimized (BLAS) kernels for mm/bmm/linear/add but only a naive loop for addmm, which every
    # biased Linear becomes in the joint graph: mm + add took a MiniLM 8 x 64 step from about 69 s to 0.75 s.
    table[torch.ops.aten.addmm.default] = _addmm
    program = program.run_decompositions(table)
    check_int8(program, model)
    if recompute:
        recompute_in_backward(program)
        recover_rotation_inputs(program, program_angle_names(model))
    return program


def program_angle_names(model: nn.Module) -> set[str]:
    """The joint program's names of the model's orthogonal angle tensors (WithLoss keeps the model as `model`)."""
    return {f"{WRAPPED}.{name}" for name in orthogonal_angles(model)}


def check_int8(program: Any, model: nn.Module) -> None:
    """Every int8 tensor of the model must be an int8 constant of the program (not folded to fp32)."""
    stored = {**program.state_dict, **program.constants}
    for name, tensor in model.state_dict().items():
        if tensor.dtype == torch.int8:
            found = stored.get(f"{WRAPPED}.{name}")
            if found is None or found.dtype != torch.int8:
                raise ExportError(f"int8 weight {name} did not stay int8 in the ExecuTorch program")


def _empty_permuted(size: list[int], physical_layout: list[int], **kwargs: Any) -> torch.Tensor:
    empty = torch.empty([size[i] for i in physical_layout], **kwargs)
    return empty.permute([physical_layout.index(i) for i in range(len(size))])


def _addmm(bias: torch.Tensor, mat1: torch.Tensor, mat2: torch.Tensor, *, beta: Any = 1, alpha: Any = 1) -> torch.Tensor:
    out = torch.ops.aten.mm.default(mat1, mat2)
    if alpha != 1:
        out = out * alpha
    return out + (bias if beta == 1 else bias * beta)

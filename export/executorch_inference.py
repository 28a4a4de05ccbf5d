"""Merged inference model as an ExecuTorch program: torch.export -> to_edge -> to_executorch, fixed input shapes.

Portable kernels only; int8 weights are dequantized as `w_int8.float() * scale` and stay int8 constants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def export_executorch_program(merged: nn.Module, path: str | Path, example: tuple[torch.Tensor, ...]) -> Path:
    """A `.pte` inference program of `merged` for inputs shaped like `example` (pad shorter texts)."""
    from executorch.exir import EdgeCompileConfig, to_edge

    program = torch.export.export(merged.eval(), example, strict=False)
    edge = to_edge(program, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    path = Path(path)
    path.write_bytes(edge.to_executorch().buffer)
    return path


def run_executorch(path: str | Path, *inputs: torch.Tensor) -> np.ndarray:
    """The program's first output for `inputs`."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return method.execute(list(inputs))[0].numpy()

"""The swappable inference graph: the unmerged model on its int8 base, with every delta tensor (angles and head) a
graph input, so one file serves many people (quic_edge.runtimes.serving.SwappableSession feeds a delta file).

The graph's metadata holds the identity of the base and adapter it serves (quic_edge.formats.identity), so a delta
of another base or config is refused before it is fed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from quic_edge import hf
from quic_edge.formats.identity import IDENTITY_KEYS
from quic_edge.state import delta_parameters, state_of


class SwappableModel(nn.Module):
    """forward(input_ids, attention_mask, *delta tensors) -> logits: the delta is an input, not a weight."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if hf.input_names(model) != hf.TEXT_INPUTS:
            raise ValueError(f"swappable: the swappable graph serves text models (inputs {hf.TEXT_INPUTS}); "
                             f"{type(model).__name__} takes {hf.input_names(model)}: deploy it merged instead")
        self.model = model
        self.delta_names = list(delta_parameters(model))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *delta: torch.Tensor) -> torch.Tensor:
        tensors = dict(zip(self.delta_names, delta, strict=True))
        args, kwargs = hf.arguments(self.model, hf.TEXT_INPUTS, (input_ids, attention_mask))
        return hf.logits_of(torch.func.functional_call(self.model, tensors, args, kwargs))


def export_swappable_onnx(model: nn.Module, path: str | Path, example: tuple[torch.Tensor, torch.Tensor]) -> Path:
    """The unmerged adapted model as ONNX with inputs input_ids, attention_mask and every delta tensor by name.

    Batch and sequence length are dynamic. optimize=False keeps the int8 initializers (RUNTIMES.md).
    """
    wrapper = SwappableModel(model.eval())
    params = dict(model.named_parameters())
    delta = tuple(params[name].detach().clone() for name in wrapper.delta_names)
    batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("sequence", min=2, max=hf.max_sequence(model))
    shapes = ({0: batch, 1: seq}, {0: batch, 1: seq}, tuple(None for _ in delta))  # *delta is one varargs entry
    program = torch.export.export(wrapper, (*example, *delta), dynamic_shapes=shapes, strict=False)
    path = Path(path)
    torch.onnx.export(
        program, (), str(path), dynamo=True, optimize=False, external_data=False,
        input_names=["input_ids", "attention_mask", *wrapper.delta_names], output_names=["logits"],
    )
    state = state_of(model)
    _strip_and_tag(path, {**{k: state.identity()[k] for k in IDENTITY_KEYS}, "base_model": state.base_model})
    return path


def _strip_and_tag(path: Path, metadata: dict[str, str]) -> None:
    """Drop the exporter's per-node stack traces (9.5 MB for MiniLM) and record which base the graph serves."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))

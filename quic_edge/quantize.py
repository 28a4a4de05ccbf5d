"""int8 weight-only quantization as its own step: symmetric, one scale per output channel, dequantized in the graph.

    quantize_int8(model, skip=("classifier",))   # every large frozen linear layer and embedding table -> int8
    dequantize(model)                            # back to fp32 layers holding the dequantized values (exactly)

Weights are stored as int8 buffers so they stay int8 in exported ONNX initializers and `.pte` constants;
dequantization is a plain `w_int8.float() * scale`, which both runtimes differentiate through.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

# A frozen weight smaller than this stays fp32: the scale vector would cost more than it saves.
MIN_QUANTIZED_NUMEL = 4096


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, ...] fp32 -> (int8 values, fp32 scale per row). Error per entry at most scale / 2."""
    flat = weight.detach().float().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(weight.shape).contiguous(), scale  # contiguous: a transposed (Conv1D) weight stays exportable


class Int8Linear(nn.Module):
    """A frozen linear layer whose weight is int8 with per-output-channel scales. `conv1d`: it replaced a Hugging Face
    Conv1D (weight stored [in, out]), which dequantize gives back, so a saved checkpoint loads into its class again."""

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                 conv1d: bool = False) -> None:
        super().__init__()
        self.in_features = weight_int8.shape[1]
        self.out_features = weight_int8.shape[0]
        self.conv1d = conv1d
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, conv1d: bool = False) -> Int8Linear:
        q, scale = quantize_per_channel(linear.weight)
        return cls(q, scale, linear.bias, conv1d)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]  # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8{', conv1d' if self.conv1d else ''}"


class Int8Embedding(nn.Module):
    """A frozen embedding table in int8: gather the int8 rows first, then scale only those rows."""

    def __init__(self, weight_int8: torch.Tensor, scale: torch.Tensor, padding_idx: int | None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight_int8.shape
        self.padding_idx = padding_idx
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("weight_scale", scale)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        q, scale = quantize_per_channel(embedding.weight)
        return cls(q, scale, embedding.padding_idx)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight_int8[ids].float()  # (..., dim)
        return rows * self.weight_scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


def quantize_int8(module: nn.Module, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace, in place, every large nn.Linear (or Hugging Face Conv1D) / nn.Embedding below `module` by its int8
    twin; modules whose name (last part) is in `skip` (the task head) stay as they are. Already int8 layers are left
    alone. Returns `module`."""
    for name, child in list(module.named_children()):
        if name in skip:
            continue
        if _is_conv1d(child) and child.weight.numel() >= MIN_QUANTIZED_NUMEL:
            setattr(module, name, Int8Linear(*quantize_per_channel(child.weight.T), child.bias, conv1d=True))
        elif isinstance(child, nn.Linear) and child.weight.numel() >= MIN_QUANTIZED_NUMEL:
            setattr(module, name, Int8Linear.from_linear(child))
        elif isinstance(child, nn.Embedding) and child.weight.numel() >= MIN_QUANTIZED_NUMEL:
            setattr(module, name, Int8Embedding.from_embedding(child))
        else:
            quantize_int8(child, skip)
    return module


@torch.no_grad()
def dequantize(module: nn.Module) -> nn.Module:
    """Replace, in place, every Int8Linear / Int8Embedding below `module` by the fp32 layer holding its dequantized
    values (bit for bit what the int8 layer computes with): an nn.Linear, or the Conv1D it replaced. Returns `module`."""
    for name, child in list(module.named_children()):
        if isinstance(child, Int8Linear):
            linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            linear.weight.copy_(child.dequantized_weight())
            if child.bias is not None:
                linear.bias.copy_(child.bias)
            if child.conv1d:
                from transformers.pytorch_utils import Conv1D

                linear = requantize_like(Conv1D(child.out_features, child.in_features), linear)
            linear.requires_grad_(False)
            setattr(module, name, linear)
        elif isinstance(child, Int8Embedding):
            table = child.weight_int8.float() * child.weight_scale[:, None]
            setattr(module, name, nn.Embedding.from_pretrained(table, freeze=True, padding_idx=child.padding_idx))
        else:
            dequantize(child)
    return module


def base_dtype(model: nn.Module) -> str:
    """'int8' when the model holds int8 layers, else 'fp32'."""
    return "int8" if any(isinstance(m, Int8Linear | Int8Embedding) for m in model.modules()) else "fp32"


def dequantized_weight(layer: nn.Module) -> torch.Tensor:
    """The fp32 weight [out, in] a linear layer computes with (an Int8Linear's dequantized, an nn.Linear's own, a
    Conv1D's transposed)."""
    if isinstance(layer, Int8Linear):
        return layer.dequantized_weight()
    return layer.weight.T if _is_conv1d(layer) else layer.weight


def requantize_like(base: nn.Module, linear: nn.Linear) -> nn.Module:
    """`linear` in the kind of `base`: int8 again for an Int8Linear, a Conv1D for a Conv1D, else as it is."""
    if isinstance(base, Int8Linear):
        return Int8Linear.from_linear(linear, conv1d=base.conv1d)
    if _is_conv1d(base):
        conv = copy.deepcopy(base)
        with torch.no_grad():
            conv.weight.copy_(linear.weight.T)
        return conv
    return linear


def _is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's Conv1D (GPT-2 style): a linear layer whose weight is stored [in, out]."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None

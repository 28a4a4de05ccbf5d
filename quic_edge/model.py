"""Model surgery: put QuIC on the target layers, freeze and quantize the rest, merge back."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from . import rotations
from .config import QuICConfig
from .layer import QuICLinear
from .quantize import quantize_frozen


def base_fingerprint(model: nn.Module, skip: tuple[str, ...] = ()) -> str:
    """sha256 over the names, shapes, dtypes and bytes of the frozen base weights (the task head skipped)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if any(part in skip for part in name.split(".")):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def apply_quic(model: nn.Module, config: QuICConfig, quantize: str | None = "int8") -> nn.Module:
    """Adapt `model` in place: QuIC on `config.target_modules`, the head trainable, all else frozen.

    With quantize="int8" every large frozen linear layer and embedding table is stored int8.

    Example:
        >>> model, tokenizer = quic_edge.models.load("minilm", num_labels=3)
        >>> model = apply_quic(model, QuICConfig(blocks=3, orders=(1, 2)))
    """
    if quantize not in ("int8", None):
        raise ValueError(f"quantize: must be 'int8' or None, got {quantize!r}")
    if getattr(model, "quic_config", None) is not None:
        raise ValueError("apply_quic: this model already has QuIC adapters; load a fresh base model")
    fingerprint = base_fingerprint(model, skip=config.trainable_modules)
    targets = _replace_targets(model, config, quantize)
    if not targets:
        names = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(
            f"target_modules: none of {config.target_modules} is a linear layer here; linear layers: {names}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    if quantize == "int8":
        quantize_frozen(model, skip=config.trainable_modules)
    for name, module in model.named_modules():
        if isinstance(module, QuICLinear):
            module.angles.requires_grad_(True)
        elif name.split(".")[-1] in config.trainable_modules:
            module.requires_grad_(True)
    rotations.attach(model)
    model.quic_config = config
    model.quic_quantize = quantize
    model.quic_fingerprint = fingerprint
    model.quic_adapter = "quic"
    return model


def _replace_targets(model: nn.Module, config: QuICConfig, quantize: str | None) -> list[str]:
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in config.target_modules and isinstance(child, nn.Linear):
                setattr(module, child_name, QuICLinear.from_linear(child, config, quantize))
                replaced.append(f"{name}.{child_name}" if name else child_name)
    return replaced


def quic_layers(model: nn.Module) -> dict[str, QuICLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, QuICLinear)}


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The tensors training updates: the angles and the task head."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def merge(model: nn.Module, quantize: str | None = "int8") -> nn.Module:
    """Fold every rotation into its frozen weight (W' = R^T W); int8 per channel again, or fp32."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, QuICLinear):
                setattr(module, child_name, child.to_linear(quantize=quantize))
    model.quic_config = None
    return model

"""What QuIC is compared with, on the same frozen int8 base: a head alone, LoRA (Hugging Face PEFT), full.

Each returns the model prepared for training, carrying the same attributes as apply_quic sets
(`quic_config` None, `quic_quantize`, `quic_fingerprint`, `quic_adapter`), so exporters and device loops
treat every adapter alike.
"""

from __future__ import annotations

from torch import nn

from .model import base_fingerprint
from .quantize import Int8Linear, quantize_frozen

HEAD_MODULES = ("classifier", "score")


def head_only(model: nn.Module, quantize: str | None = "int8") -> nn.Module:
    """Freeze (and quantize) everything but the task head."""
    _mark(model, "head", quantize)
    model.requires_grad_(False)
    if quantize == "int8":
        quantize_frozen(model, skip=HEAD_MODULES)
    _unfreeze(model, HEAD_MODULES)
    return model


def lora(model: nn.Module, rank: int, targets: tuple[str, ...], quantize: str | None = "int8") -> nn.Module:
    """LoRA rank `rank` on `targets` with the real PEFT library; the wrapped base layers int8."""
    from peft import LoraConfig, inject_adapter_in_model

    _mark(model, "lora", quantize)
    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(targets))
    inject_adapter_in_model(config, model)
    if quantize == "int8":
        for module in model.modules():
            base = getattr(module, "base_layer", None)
            if isinstance(base, nn.Linear):
                module.base_layer = Int8Linear.from_linear(base)
        quantize_frozen(model, skip=(*HEAD_MODULES, "lora_A", "lora_B", "base_layer"))
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    _unfreeze(model, HEAD_MODULES)
    return model


def full(model: nn.Module) -> nn.Module:
    """Every weight trainable, fp32 (int8 storage cannot be trained)."""
    _mark(model, "full", None)
    model.requires_grad_(True)
    return model


def _mark(model: nn.Module, adapter: str, quantize: str | None) -> None:
    if quantize not in ("int8", None):
        raise ValueError(f"quantize: must be 'int8' or None, got {quantize!r}")
    model.quic_fingerprint = base_fingerprint(model, skip=HEAD_MODULES)
    model.quic_config = None
    model.quic_quantize = quantize
    model.quic_adapter = adapter


def _unfreeze(model: nn.Module, names: tuple[str, ...]) -> None:
    for name, module in model.named_modules():
        if name.split(".")[-1] in names:
            module.requires_grad_(True)

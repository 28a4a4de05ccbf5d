"""Model surgery: put QuIC on the target layers, freeze the rest, and take it off again (merge or unload).

    model = apply_quic(model, QuICConfig(blocks=3, orders=(1, 2)))   # int8 base, angles and head trainable
    merged = merge(model)                                            # W' = R^T W folded in: a plain model again
"""

from __future__ import annotations

import torch
from torch import nn

from . import hf, rotations
from .config import QuICConfig
from .layer import QuICLinear
from .quantize import base_dtype, quantize_int8
from .state import (
    AdapterError,
    AdapterState,
    base_fingerprint,
    clear_state,
    delta_names,
    delta_parameters,
    has_adapter,
    set_state,
    state_of,
    train_only,
)
from .targets import linear_layers, matching_layers


def apply_quic(model: nn.Module, config: QuICConfig, *, quantize: bool = True, base_model: str | None = None) -> nn.Module:
    """Adapt `model` in place: QuIC on `config.target_modules`, `config.trainable_modules` (the head) trainable, all
    else frozen. quantize=True first stores the frozen base in int8 (`quic_edge.quantize_int8`); False keeps the base
    as it is (fp32, or int8 quantized by the caller). `base_model` names the base for deltas (default: the name
    quic_edge.models.load gave it).

    Example:
        >>> model, tokenizer = quic_edge.models.load("minilm", num_labels=3)
        >>> model = apply_quic(model, QuICConfig(blocks=3, orders=(1, 2)))
    """
    if has_adapter(model):
        raise AdapterError("apply_quic: this model already has an adapter; merge(model) or unload(model) it first")
    hf.make_exportable(model)  # a transformers model with SDPA attention: eager attention, with a notice
    if hf.is_transformers_model(model) and hf.task_of(model) == "classification" and not hf.head_modules(
            model, config.trainable_modules):
        raise ValueError(f"trainable_modules: none of {config.trainable_modules} is a module of {type(model).__name__}; "
                         "name its task head, for example QuICConfig(trainable_modules=('classifier',))")
    original = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
    if quantize:
        quantize_int8(model, skip=config.trainable_modules)
    layers = _replace_targets(model, config)
    if not layers:
        names = sorted({n.split(".")[-1] for n in linear_layers(model, skip=config.trainable_modules)})
        raise ValueError(
            f"target_modules: none of {config.target_modules} is a linear layer here; linear layers (last names): {names}"
        )
    rotations.attach(model, layers)
    delta = delta_names(model, "quic", config.trainable_modules)
    train_only(model, delta)
    set_state(model, AdapterState(
        "quic", config, base_fingerprint(model, exclude=set(delta)), base_dtype(model),
        base_model if base_model is not None else _base_name(model), config.trainable_modules,
        original,
    ))
    return model


def _base_name(model: nn.Module) -> str:
    return hf.base_name(model) if hf.is_transformers_model(model) else getattr(model, "quic_base_name", "")


def _replace_targets(model: nn.Module, config: QuICConfig) -> list[QuICLinear]:
    layers = []
    for name in matching_layers(model, config.target_modules, config.trainable_modules):
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = QuICLinear.from_linear(getattr(parent, child_name), config)
        setattr(parent, child_name, layer)
        layers.append(layer)
    return layers


def quic_layers(model: nn.Module) -> dict[str, QuICLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, QuICLinear)}


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The tensors training updates, by name: the angles and the task head (the model's delta)."""
    return delta_parameters(model)


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """Fold every rotation into its frozen weight (W' = R^T W; int8 per channel again for an int8 base), remove the
    adapter's hooks and state, and return the plain model (apply_quic may adapt it again). Non-finite angles refuse."""
    _require_quic(model)
    for name, layer in quic_layers(model).items():
        if not torch.isfinite(layer.angles).all():
            raise ValueError(f"{name}.angles hold NaN or infinite values: nothing was merged; load a good delta first")
    return _take_off(model, lambda layer: layer.to_linear())


def unload(model: nn.Module) -> nn.Module:
    """Remove QuIC without merging: every adapted layer back to its base layer, hooks and state removed, parameters
    trainable as they were before apply_quic. The base stays as apply_quic left it (int8 if it quantized it)."""
    _require_quic(model)
    return _take_off(model, lambda layer: layer.base_layer)


def _take_off(model: nn.Module, replacement) -> nn.Module:
    state = state_of(model)
    rotations.remove(model)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, QuICLinear):
                setattr(module, child_name, replacement(child))
    clear_state(model)
    train_only(model, sorted(state.original_trainable))
    return model


def _require_quic(model: nn.Module) -> None:
    if state_of(model).adapter != "quic":
        raise AdapterError(f"this model carries a {state_of(model).adapter} adapter, not QuIC")

"""The adapter state of a prepared model: what adapter it carries, on which base, and which tensors form its delta.

One object (`model.quic_state`, an AdapterState) replaces loose attributes; one function (`delta_parameters`)
decides what training updates and what a delta holds, from the adapter and its config (never from requires_grad
flags, which are set from it); one fingerprint identifies the frozen base. Every adapter kind (QuIC and the
baselines it is compared with) is described the same way, so exporters and device loops treat them alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import QuICConfig
from .formats.identity import make_identity

STATE_ATTR = "quic_state"
HEAD_MODULES = ("classifier", "score")
WRAPPER_PARTS = ("base_layer",)  # name parts adapters insert around a base layer (ours and PEFT's)


class AdapterError(ValueError):
    """A model without (or with another) adapter than the operation needs."""


@dataclass(frozen=True)
class AdapterState:
    """adapter: 'quic', 'lora', 'head' or 'full'; config: the QuICConfig (QuIC only); base_dtype: 'int8' or 'fp32'."""

    adapter: str
    config: QuICConfig | None
    base_fingerprint: str
    base_dtype: str
    base_model: str = ""
    trainable_modules: tuple[str, ...] = HEAD_MODULES
    # what `unload` restores: the parameters that required grad before the adapter came
    original_trainable: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def identity(self) -> dict[str, str]:
        """The identity strings a delta, bundle, checkpoint or graph of this model carries (quic_edge.formats.identity)."""
        config = None if self.config is None else self.config.to_dict()
        return make_identity(self.adapter, self.base_fingerprint, config, self.base_dtype)


def state_of(model: nn.Module) -> AdapterState:
    """The model's adapter state; AdapterError when it has none."""
    state = getattr(model, STATE_ATTR, None)
    if not isinstance(state, AdapterState):
        raise AdapterError("this model has no adapter: call quic_edge.apply_quic(model, config) (or a baseline) first")
    return state


def has_adapter(model: nn.Module) -> bool:
    return isinstance(getattr(model, STATE_ATTR, None), AdapterState)


def set_state(model: nn.Module, state: AdapterState) -> None:
    setattr(model, STATE_ATTR, state)


def clear_state(model: nn.Module) -> None:
    if hasattr(model, STATE_ATTR):
        delattr(model, STATE_ATTR)


def delta_names(model: nn.Module, adapter: str, trainable_modules: tuple[str, ...]) -> list[str]:
    """The parameters an adapter trains (its delta), in named_parameters order: the adapter's own tensors (QuIC: every
    QuICLinear's angles; LoRA: lora_*; full: everything) plus every parameter under a module in `trainable_modules`."""
    from .layer import QuICLinear

    angles = {f"{name}.angles" if name else "angles" for name, m in model.named_modules() if isinstance(m, QuICLinear)}
    names = []
    for name, _ in model.named_parameters():
        parts = name.split(".")
        own = (adapter == "full" or (adapter == "quic" and name in angles)
               or (adapter == "lora" and any(p.startswith("lora_") for p in parts)))
        if own or set(parts[:-1]) & set(trainable_modules):
            names.append(name)
    return names


def delta_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The tensors training updates and a delta holds (angles and head for QuIC), by name."""
    state = state_of(model)
    params = dict(model.named_parameters())
    return {name: params[name] for name in delta_names(model, state.adapter, state.trainable_modules)}


def train_only(model: nn.Module, names: list[str]) -> None:
    """requires_grad on exactly the named parameters."""
    chosen = set(names)
    for name, p in model.named_parameters():
        p.requires_grad_(name in chosen)


def base_fingerprint(model: nn.Module, exclude: set[str] | frozenset[str] = frozenset()) -> str:
    """sha256 over the names, shapes, dtypes and bytes of the frozen base: every state tensor but `exclude` (the delta),
    names taken without adapter wrapper parts, so the same base gives the same fingerprint under any adapter."""
    digest = hashlib.sha256()
    entries = {}
    for name, tensor in model.state_dict().items():
        if name in exclude:
            continue
        entries[".".join(p for p in name.split(".") if p not in WRAPPER_PARTS)] = tensor
    for name in sorted(entries):
        t = entries[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()

"""What QuIC is compared with, on the same frozen int8 base: a head alone, LoRA (Hugging Face PEFT), full fine-tuning.

Each returns the model prepared for training with an AdapterState (quic_edge.state) like apply_quic's, so exporters,
device loops and deltas treat every adapter alike.
"""

from __future__ import annotations

from torch import nn

from .quantize import base_dtype, quantize_int8
from .state import HEAD_MODULES, AdapterState, base_fingerprint, delta_names, has_adapter, set_state, train_only
from .targets import matching_layers


def head_only(model: nn.Module, quantize: bool = True, head: tuple[str, ...] = HEAD_MODULES) -> nn.Module:
    """Freeze (and quantize) everything but the task head."""
    if quantize:
        quantize_int8(model, skip=head)
    return _prepare(model, "head", head)


def lora(model: nn.Module, rank: int, targets: tuple[str, ...] | str, quantize: bool = True,
         head: tuple[str, ...] = HEAD_MODULES) -> nn.Module:
    """LoRA rank `rank` (alpha 2 rank, no dropout) on `targets` with the real PEFT library; the frozen base int8.
    `targets`: entries as QuIC's target_modules reads them (quic_edge.targets: names, "re:PATTERN"), resolved to full
    module names for PEFT; or one string PEFT reads as a regular expression of the full name."""
    from peft import LoraConfig, inject_adapter_in_model

    _refuse_second_adapter(model)
    if not isinstance(targets, str):  # the layers QuIC would adapt for the same entries, so both read them one way
        names = sorted(matching_layers(model, tuple(targets), head))
        if not names:
            raise ValueError(f"LoRA targets {list(targets)}: no linear layer of the model matches; name modules as "
                             "quic_edge.targets describes (a name suffix such as 'query', or 're:PATTERN')")
        targets = names
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets)
    inject_adapter_in_model(config, model)
    if quantize:
        quantize_int8(model, skip=(*head, "lora_A", "lora_B"))
    return _prepare(model, "lora", head)


def full(model: nn.Module, head: tuple[str, ...] = HEAD_MODULES) -> nn.Module:
    """Every weight trainable, fp32 (int8 storage cannot be trained)."""
    return _prepare(model, "full", head)


def _refuse_second_adapter(model: nn.Module) -> None:
    if has_adapter(model):
        raise ValueError("this model already has an adapter; start from a fresh base model")


def _prepare(model: nn.Module, adapter: str, head: tuple[str, ...]) -> nn.Module:
    _refuse_second_adapter(model)
    original = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
    delta = delta_names(model, adapter, head)
    # full fine-tuning trains every weight: its base is identified by everything but the head
    exclude = set(delta_names(model, "head", head)) if adapter == "full" else set(delta)
    train_only(model, delta)
    set_state(model, AdapterState(adapter, None, base_fingerprint(model, exclude), base_dtype(model),
                                  getattr(model, "quic_base_name", ""), head, original))
    return model

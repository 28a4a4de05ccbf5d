"""Parameter counts: QuIC angles per adapted layer against LoRA on the same layers and on all linear layers.

Counted from layer shapes and the formulas of DESIGN.md section 1, without building the adapters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from math import comb

from torch import nn

from .config import QuICConfig, compound_width
from .givens import gate_count
from .targets import layer_dims, linear_layers, matching_layers


@dataclass(frozen=True)
class LayerCount:
    name: str
    d_in: int
    d_out: int
    blocks: int
    block_size: int
    n: int
    orders: tuple[int, ...]
    compound_sizes: tuple[int, ...]
    padding: int  # identity features inside each block
    tail: int  # identity features after the last block
    angles: int


def quic_layer_count(name: str, d_in: int, d_out: int, config: QuICConfig) -> LayerCount:
    n = config.block_dim(d_out)
    b = d_out // config.blocks
    copies = 1 if config.share_blocks else config.blocks
    angles = config.chain * copies * gate_count(n, config.layout, config.depth)
    return LayerCount(
        name, d_in, d_out, config.blocks, b, n, config.orders, tuple(comb(n, k) for k in config.orders),
        b - compound_width(n, config.orders), d_out - config.blocks * b, angles,
    )


def lora_params(layers: dict[str, nn.Module], rank: int) -> int:
    """LoRA rank r adds r * (d_in + d_out) numbers per layer (A: r x d_in, B: d_out x r)."""
    return sum(rank * sum(layer_dims(m)) for m in layers.values())


def count(model: nn.Module, config: QuICConfig, lora_rank: int | None = None) -> dict:
    """Per-layer QuIC rows and totals for an unadapted model; LoRA counts when lora_rank is given."""
    all_linear = linear_layers(model, skip=config.trainable_modules)
    targets = matching_layers(model, config.target_modules, config.trainable_modules)
    if not targets:
        known = sorted({name.split(".")[-1] for name in all_linear})
        raise ValueError(f"targets: none of {config.target_modules} is a linear layer of this model; it has {known}")
    rows = [quic_layer_count(name, *layer_dims(m), config) for name, m in targets.items()]
    result = {
        "config": asdict(config),
        "layers": [asdict(r) for r in rows],
        "trainable_angles": sum(r.angles for r in rows),
        "base_params": sum(  # the base model without its task head
            p.numel() for name, p in model.named_parameters() if not set(name.split(".")) & set(config.trainable_modules)
        ),
    }
    if lora_rank is not None:
        result["lora_rank"] = lora_rank
        result["lora_params"] = lora_params(targets, lora_rank)
        result["lora_params_all_linear"] = lora_params(all_linear, lora_rank)
        result["ratio_lora"] = result["lora_params"] / result["trainable_angles"]
        result["ratio_lora_all_linear"] = result["lora_params_all_linear"] / result["trainable_angles"]
    return result

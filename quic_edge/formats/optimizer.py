"""The optimizer entry of a bundle manifest: what the exporters write, the device loops and `training.fit` follow.

Torch-free. AdamW means torch.optim.AdamW (decoupled weight decay, eps added after bias correction) on every side;
"groups" give tensors their own learning-rate multipliers (the head and the angles want different rates).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

OPTIMIZERS = ("adamw", "sgd")


def optimizer_spec(
    name: str = "adamw", lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
    weight_decay: float = 0.0, groups: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The optimizer entry of a bundle manifest, and what `fit` takes: AdamW means torch.optim.AdamW (decoupled decay,
    eps after bias correction). groups: [{"name", "params": [tensor names], "lr_scale"}], each group trained at
    lr * lr_scale (tensors in no group at lr)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: must be one of {OPTIMIZERS}, got {name!r}")
    if not (isinstance(lr, int | float) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr: must be a finite number > 0, got {lr!r}")
    spec = {"name": name, "lr": float(lr), "betas": [float(b) for b in betas], "eps": float(eps),
            "weight_decay": float(weight_decay)}
    if groups:
        for g in groups:
            if not (isinstance(g.get("lr_scale"), int | float) and g["lr_scale"] > 0 and math.isfinite(g["lr_scale"])):
                raise ValueError(f"optimizer group {g.get('name')!r}: lr_scale must be a finite number > 0")
        spec["groups"] = [{"name": str(g.get("name", i)), "params": list(g["params"]), "lr_scale": float(g["lr_scale"])}
                          for i, g in enumerate(groups)]
    return spec


def lr_scales(spec: dict[str, Any], names: Iterable[str]) -> dict[str, float]:
    """Each trainable tensor's learning-rate multiplier under `spec` (1 outside every group)."""
    scales = {name: 1.0 for name in names}
    for group in spec.get("groups", []):
        for name in group["params"]:
            scales[name] = float(group["lr_scale"])
    return scales


def stored_scales(spec: dict[str, Any], names: Iterable[str]) -> dict[str, float]:
    """How ONNX Runtime bundles store each trainable tensor: divided by this factor, which the graph multiplies back,
    so ORT's single optimizer moves it at its group's rate (export/ort_graph.py): lr_scale for AdamW (its step does not
    scale with the gradient), sqrt(lr_scale) for SGD (its step does)."""
    scales = lr_scales(spec, names)
    return {n: (s if spec["name"] == "adamw" else math.sqrt(s)) for n, s in scales.items()}

"""How far averaging angles is from averaging rotations, measured on real client updates (README.md).

For one adapted block, clients i with weights w_i send angles t_i. FedAvg sends back A(t_bar), t_bar = sum w_i t_i.
Averaging the rotations instead gives M = sum w_i A(t_i) (not orthogonal), or its nearest rotation P = polar(M).
Near the identity A(t) = I + sum_g t_g X_g + O(|t|^2), so A(t_bar) and M agree to first order and differ by
O(spread of the t_i squared). `rotation_gap` reports ||M - A(t_bar)||_F and ||P - A(t_bar)||_F, relative to the
mean size of the clients' rotations ||A(t_i) - I||_F, over every adapted block of every round's updates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from quic_edge.givens import chain_product, gate_count, orthogonal

WEIGHT_KEY = "__num_examples__"


def read_updates(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """updates-round-R.npz (written by the server) -> ({client: tensors}, {client: weight})."""
    tensors: dict[str, dict[str, np.ndarray]] = {}
    weights: dict[str, float] = {}
    with np.load(path) as data:
        for key in data.files:
            client, _, name = key.partition("/")
            if name == WEIGHT_KEY:
                weights[client] = float(data[key])
            else:
                tensors.setdefault(client, {})[name] = data[key]
    return tensors, weights


def block_size(gates: int, layout: str, depth: int | None) -> int:
    for n in range(2, 256):
        if gate_count(n, layout, depth) == gates:
            return n
    raise ValueError(f"no circuit of {gates} gates for layout {layout!r}, depth {depth}")


def rotation_gap(
    tensors: dict[str, dict[str, np.ndarray]], weights: dict[str, float], config: dict[str, Any]
) -> dict[str, float]:
    """Gaps between A(mean angles), the mean of the rotations and its nearest rotation, over all angle tensors."""
    clients = sorted(tensors)
    w = torch.tensor([weights[c] for c in clients], dtype=torch.float64)
    w = w / w.sum()
    layout, depth = config.get("layout", "planes"), config.get("depth")
    gaps, polar_gaps, sizes, max_angle = [], [], [], 0.0
    for name in (n for n in tensors[clients[0]] if n.endswith("angles")):
        thetas = torch.from_numpy(np.stack([tensors[c][name] for c in clients])).double()  # (K, M, N, G)
        n = block_size(thetas.shape[-1], layout, depth)
        mats = chain_product(orthogonal(thetas, n, layout, depth))  # (K, N, n, n)
        averaged = chain_product(orthogonal(torch.einsum("k,k...->...", w, thetas), n, layout, depth))  # (N, n, n)
        mean = torch.einsum("k,k...->...", w, mats)  # (N, n, n)
        u, _, vh = torch.linalg.svd(mean)
        polar = u @ vh
        gaps.append(torch.linalg.matrix_norm(mean - averaged))
        polar_gaps.append(torch.linalg.matrix_norm(polar - averaged))
        sizes.append(torch.einsum("k,kb->b", w, torch.linalg.matrix_norm(mats - torch.eye(n, dtype=mats.dtype))))
        max_angle = max(max_angle, float(thetas.abs().max()))
    gap, polar_gap, size = torch.cat(gaps), torch.cat(polar_gaps), torch.cat(sizes)
    return {
        "blocks": int(gap.numel()),
        "max_abs_angle": max_angle,
        "mean_rotation_size": float(size.mean()),  # mean over blocks of sum_i w_i ||A(t_i) - I||_F
        "max_gap_mean_rotation": float(gap.max()),  # ||sum w_i A(t_i) - A(t_bar)||_F, worst block
        "max_relative_gap_mean_rotation": float((gap / size).max()),
        "max_gap_polar": float(polar_gap.max()),  # ||polar(sum w_i A(t_i)) - A(t_bar)||_F, worst block
        "max_relative_gap_polar": float((polar_gap / size).max()),
    }


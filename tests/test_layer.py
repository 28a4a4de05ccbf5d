"""QuICLinear: y = (x W^T) R + b with R assembled here from numpy minors; merge; counts; init."""

from __future__ import annotations

from contextlib import nullcontext
from math import comb

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import block_diag
from torch import nn

from quic_edge import QuICConfig, QuICLinear
from quic_edge.layer import per_block_products
from quic_edge.quantize import Int8Linear
from tests.test_compounds import minors


def dense_rotation(layer: QuICLinear) -> np.ndarray:
    """blockdiag(B_1..B_N, I_tail), B_i = C_k1(A_i) (+) ... (+) I, with A_i = A_i,1 ... A_i,M (chain)."""
    mats = layer.orthogonal().detach().double().numpy()  # (M, N or 1, n, n)
    cfg = layer.config
    blocks = []
    for i in range(cfg.blocks):
        A = np.eye(layer.n)
        for m in range(cfg.chain):
            A = A @ mats[m, 0 if cfg.share_blocks else i]
        parts = [minors(A, k) for k in cfg.orders]
        pad = layer.block_size - sum(comb(layer.n, k) for k in cfg.orders)
        blocks.append(block_diag(*parts, np.eye(pad)) if pad else block_diag(*parts))
    tail = layer.out_features - cfg.blocks * layer.block_size
    return block_diag(*blocks, np.eye(tail)) if tail else block_diag(*blocks)


CONFIGS = [
    QuICConfig(blocks=3, orders=(1, 2)),
    QuICConfig(blocks=2, orders=(1, 2, 3), layout="brick"),
    QuICConfig(blocks=4, orders=(2,), share_blocks=True),
    QuICConfig(blocks=3, orders=(2, 3), chain=2, depth=3),
    QuICConfig(blocks=1, orders=(1, 2, 3, 4)),
    QuICConfig(blocks=5, orders=(1,), n=4),
]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("per_block", [False, True], ids=["batched", "per-block"])
def test_forward_equals_xWT_R_plus_b(config, int8, per_block):
    torch.manual_seed(0)
    linear = nn.Linear(24, 47).double()  # 47 = blocks * b + tail for most configs
    layer = QuICLinear.from_linear(Int8Linear.from_linear(linear) if int8 else linear, config).double()
    layer.per_block_products = per_block
    with torch.no_grad():
        layer.angles.normal_(0, 0.7)
    x = torch.randn(5, 2, 24, dtype=torch.float64)
    W = layer.base_layer.dequantized_weight().double() if int8 else linear.weight
    R = torch.from_numpy(dense_rotation(layer))
    expected = (x @ W.T) @ R + linear.bias
    torch.testing.assert_close(layer(x), expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(layer.rotation(), R, atol=1e-10, rtol=1e-10)
    merged = layer.to_linear()
    assert type(merged) is type(layer.base_layer)  # the base layer's own kind
    if not int8:
        torch.testing.assert_close(merged(x), layer(x), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_both_layouts_give_the_same_angle_gradients(config):
    torch.manual_seed(0)
    layer = QuICLinear.from_linear(nn.Linear(24, 47).double(), config).double()
    with torch.no_grad():
        layer.angles.normal_(0, 0.7)
    x, target = torch.randn(5, 2, 24, dtype=torch.float64), torch.randn(5, 2, 47, dtype=torch.float64)
    gradients = []
    for model in (layer, nn.Sequential(layer)):
        context = per_block_products(model) if isinstance(model, nn.Sequential) else nullcontext()
        with context:
            assert layer.per_block_products is isinstance(model, nn.Sequential)
            layer.angles.grad = None
            ((layer(x) - target) ** 2).sum().backward()
            gradients.append(layer.angles.grad.clone())
    assert not layer.per_block_products  # the context put the value it found back
    torch.testing.assert_close(gradients[1], gradients[0], atol=1e-10, rtol=1e-10)
    assert gradients[0].abs().max() > 0


def test_the_layout_context_puts_back_the_value_it_found_even_when_nested():
    layer = QuICLinear.from_linear(nn.Linear(24, 47), CONFIGS[0])
    with per_block_products(layer):
        with per_block_products(layer):
            assert layer.per_block_products
        assert layer.per_block_products, "the inner context must not end the outer one"
    assert not layer.per_block_products


def test_identity_at_initialisation():
    linear = nn.Linear(16, 30)
    layer = QuICLinear.from_linear(linear, QuICConfig(blocks=2))
    torch.testing.assert_close(layer.rotation(), torch.eye(30))
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), linear(x))


def test_int8_merge_requantizes_within_the_bound():
    torch.manual_seed(1)
    layer = QuICLinear.from_linear(Int8Linear.from_linear(nn.Linear(32, 48)), QuICConfig(blocks=3))
    with torch.no_grad():
        layer.angles.normal_(0, 0.3)
    fp32 = layer.rotation().T @ layer.base_layer.dequantized_weight()  # W' = R^T W from the int8 base
    int8 = layer.to_linear()
    assert isinstance(int8, Int8Linear) and int8.weight_int8.dtype == torch.int8
    bound = int8.weight_scale[:, None] / 2 + 1e-7
    assert ((int8.dequantized_weight() - fp32).abs() <= bound).all()


def test_merging_non_finite_angles_is_refused():
    layer = QuICLinear.from_linear(nn.Linear(8, 12), QuICConfig(blocks=2))
    with torch.no_grad():
        layer.angles[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        layer.to_linear()


@settings(max_examples=60, deadline=None)
@given(d_out=st.integers(12, 400), blocks=st.integers(1, 4), orders=st.sampled_from([(1,), (1, 2), (2,), (1, 2, 3)]),
       layout=st.sampled_from(["planes", "brick"]), share=st.booleans(), chain=st.integers(1, 3),
       depth=st.one_of(st.none(), st.integers(1, 3)))
def test_angle_count_follows_the_formula(d_out, blocks, orders, layout, share, chain, depth):
    config = QuICConfig(blocks=blocks, orders=orders, layout=layout, share_blocks=share, chain=chain, depth=depth)
    b = d_out // blocks
    fits = [n for n in range(max(orders), b + 1) if sum(comb(n, k) for k in orders) <= b]
    if not fits:
        return
    n = max(fits)
    if n < 2:
        return
    full_rounds = (n - 1 if n % 2 == 0 else n) if layout == "planes" else n
    if depth is not None and depth > full_rounds:
        with pytest.raises(ValueError, match="depth"):
            QuICLinear.from_linear(nn.Linear(4, d_out), config)
        return
    layer = QuICLinear.from_linear(nn.Linear(4, d_out), config)
    rounds = full_rounds if depth is None else depth
    # planes: every round of the circle method holds n // 2 disjoint pairs; brick: round r pairs (p, p+1), p = r % 2, ...
    gates = rounds * (n // 2) if layout == "planes" else sum(len(range(r % 2, n - 1, 2)) for r in range(rounds))
    if rounds == full_rounds:
        assert gates == n * (n - 1) // 2  # the full circuit spans SO(n)
    assert tuple(layer.angles.shape) == (chain, 1 if share else blocks, gates)


class ThreeLayers(nn.Module):
    """Two adapted layers of one circuit shape (d_out 24) and one of another (d_out 40)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 24), nn.Linear(24, 24), nn.Linear(24, 40)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.tanh(self.b(torch.tanh(self.a(x)))))


def test_a_model_builds_all_rotations_in_one_batch_and_computes_each_layer_exactly():
    from quic_edge import apply_quic
    from quic_edge.model import quic_layers

    torch.manual_seed(0)
    model = apply_quic(ThreeLayers(), QuICConfig(blocks=2, orders=(1, 2), target_modules=("a", "b", "c"), chain=2),
                       quantize=False)
    layers = quic_layers(model)
    assert [layer.n for layer in layers.values()] == [4, 4, 5]  # 4 + C(4,2) <= 12 < 5 + C(5,2); 5 + 10 <= 20
    with torch.no_grad():
        for layer in layers.values():
            layer.angles.normal_(0, 0.5)
    model.double()
    x = torch.randn(5, 6, dtype=torch.float64)
    h = x.numpy()
    for name in ("a", "b", "c"):  # (x W^T) R + b per layer, R from numpy minors
        layer = layers[name]
        base = layer.base_layer
        h = h @ base.weight.detach().double().numpy().T @ dense_rotation(layer) + base.bias.detach().numpy()
        h = np.tanh(h) if name != "c" else h
    out = model(x)
    np.testing.assert_allclose(out.detach().numpy(), h, rtol=1e-9, atol=1e-10)
    assert all(layer.batched_compounds is None for layer in layers.values())  # dropped after the forward

    out.sum().backward()  # the batched build gives each layer the gradient its own build gives
    batched = {name: layer.angles.grad.clone() for name, layer in layers.items()}
    model.zero_grad()
    x1 = torch.tanh(model.a(x))  # layer by layer: no model forward, so each layer builds its own rotation
    model.c(torch.tanh(model.b(x1))).sum().backward()
    for name, layer in layers.items():
        torch.testing.assert_close(layer.angles.grad, batched[name], rtol=1e-9, atol=1e-12)

    with pytest.raises(RuntimeError):
        model(torch.randn(5, 7, dtype=torch.float64))  # a failed forward leaves no stale rotation behind
    assert all(layer.batched_compounds is None for layer in layers.values())

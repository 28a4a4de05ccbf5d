"""The ExecuTorch op count (quic_edge/bench/executorch_ops.py) read from a `.pte`, against what the program was built
from: one product of known shapes, one activation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quic_edge.bench.executorch_ops import op_volume, volume_table


class ProductThenRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(24, 40))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.mm(x, self.weight))


@pytest.fixture(scope="module")
def volume():
    from executorch.exir import to_edge

    program = torch.export.export(ProductThenRelu(), (torch.randn(16, 24),))
    return op_volume(to_edge(program).to_executorch().buffer)


def test_the_product_and_the_activation_are_counted_with_their_bytes_and_arithmetic(volume):
    product, relu = volume["by_op"]["aten::mm"], volume["by_op"]["aten::relu"]
    assert product["nodes"] == 1 and relu["nodes"] == 1
    assert product["mib_written"] == pytest.approx(16 * 40 * 4 / 2**20)
    assert relu["mib_written"] == pytest.approx(16 * 40 * 4 / 2**20)
    assert product["gflop"] == pytest.approx(2 * 16 * 40 * 24 / 1e9)
    assert relu["gflop"] == 0
    assert volume["nodes"] == 2 and volume["gflop"] == pytest.approx(product["gflop"])


def test_the_table_names_every_program_and_adds_up(volume):
    lines = volume_table({"a": volume, "b": volume})
    assert "| a | b |" in lines[3]
    assert lines[-1] == "| total | 2 / 0.0, 0.00 GF | 2 / 0.0, 0.00 GF |"

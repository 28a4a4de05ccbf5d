"""QuICConfig: n derived as DESIGN.md section 1 says, every invalid value a ValueError naming the field."""

from __future__ import annotations

from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quic_edge import QuICConfig

ORDER_SETS = [(1,), (2,), (1, 2), (2, 3), (1, 2, 3), (1, 2, 3, 4)]


def largest_n(b: int, orders: tuple[int, ...]) -> int | None:
    fits = [n for n in range(1, b + 1) if n >= max(orders) and sum(comb(n, k) for k in orders) <= b]
    return max(fits) if fits else None


@settings(max_examples=100, deadline=None)
@given(d_out=st.integers(8, 2048), blocks=st.integers(1, 8), orders=st.sampled_from(ORDER_SETS))
def test_n_is_the_largest_that_fits_a_block(d_out, blocks, orders):
    config = QuICConfig(blocks=blocks, orders=orders)
    expected = largest_n(d_out // blocks, orders)
    if expected is None or d_out // blocks < 2:
        with pytest.raises(ValueError, match="blocks|orders"):
            config.block_dim(d_out)
    else:
        assert config.block_dim(d_out) == expected


def test_explicit_n_is_checked():
    assert QuICConfig(n=10).block_dim(384) == 10
    with pytest.raises(ValueError, match="n=16 needs 136 features"):
        QuICConfig(n=16).block_dim(384)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"blocks": 0}, "blocks"), ({"blocks": 2.5}, "blocks"), ({"blocks": True}, "blocks"),
    ({"orders": ()}, "orders"), ({"orders": (0, 1)}, "orders"), ({"orders": (5,)}, "orders"),
    ({"orders": (2, 1)}, "orders"), ({"orders": (1, 1)}, "orders"),
    ({"target_modules": ()}, "target_modules"), ({"target_modules": ("",)}, "target_modules"),
    ({"layout": "zigzag"}, "layout"), ({"depth": 0}, "depth"), ({"chain": 0}, "chain"),
    ({"n": 1}, "n"), ({"n": 2, "orders": (1, 2, 3)}, "n"),
])
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        QuICConfig(**kwargs)


def test_json_round_trip_and_unknown_fields():
    config = QuICConfig(blocks=4, orders=(1, 2, 3), layout="brick", depth=3, share_blocks=True, chain=2)
    assert QuICConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown fields"):
        QuICConfig.from_json('{"blocks": 3, "rank": 8}')


def test_every_field_has_help_text():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(QuICConfig))

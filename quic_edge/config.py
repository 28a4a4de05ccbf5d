"""The adapter configuration: one dataclass, validated on construction."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from math import comb

LAYOUTS = ("planes", "brick")
MATRICES = ("orthogonal", "unconstrained")
MAX_ORDER = 4
ALL_LINEAR = "all-linear"
REGEX_PREFIX = "re:"


@dataclass(frozen=True)
class QuICConfig:
    """How QuIC adapts the target linear layers (DESIGN.md sections 1 and 2).

    Example:
        >>> QuICConfig(blocks=3, orders=(1, 2)).block_dim(384)
        15
    """

    blocks: int = field(default=3, metadata={"help": "N: output features are split into N blocks of floor(d_out / N)."})
    orders: tuple[int, ...] = field(
        default=(1, 2), metadata={"help": "Hamming-weight orders k of the compound matrices, each in 1..4, ascending."}
    )
    target_modules: tuple[str, ...] = field(
        default=("query", "value"),
        metadata={"help": "Linear layers to adapt: a name or dotted suffix ('query', 'self.query'), 're:REGEX' on the "
                          "full name, or 'all-linear' (a single string is a regular expression, as in PEFT)."},
    )
    layout: str = field(default="planes", metadata={"help": "Givens circuit: 'planes' (default) or 'brick'."})
    depth: int | None = field(
        default=None, metadata={"help": "Rounds of the circuit (layers of disjoint pairs); None = the full circuit."}
    )
    share_blocks: bool = field(default=False, metadata={"help": "One orthogonal matrix shared by all blocks."})
    chain: int = field(default=1, metadata={"help": "M >= 1 rotations in sequence, each with its own angles."})
    n: int | None = field(
        default=None, metadata={"help": "Size of the orthogonal matrix; None = the largest that fits a block."}
    )
    matrix: str = field(
        default="orthogonal",
        metadata={"help": "'orthogonal' (QuIC: A from Givens rotations) or 'unconstrained' (the ablation's control: "
                          "A = I + an upper-triangular matrix with as many free numbers, same compound structure)."},
    )
    trainable_modules: tuple[str, ...] = field(
        default=("classifier", "score"),
        metadata={"help": "Modules (by name, last part) trained in full beside the angles: the task head."},
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "orders", tuple(int(k) for k in self.orders))
        if isinstance(self.target_modules, str):  # PEFT: a string is a regular expression on the full name
            single = self.target_modules
            as_regex = single if single == ALL_LINEAR or single.startswith(REGEX_PREFIX) else REGEX_PREFIX + single
            object.__setattr__(self, "target_modules", (as_regex,))
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        object.__setattr__(self, "trainable_modules", tuple(self.trainable_modules))
        _check_int("blocks", self.blocks, 1)
        _check_int("chain", self.chain, 1)
        if not self.orders:
            raise ValueError("orders: give at least one Hamming-weight order, for example orders=(1, 2)")
        if any(k < 1 or k > MAX_ORDER for k in self.orders):
            raise ValueError(f"orders: each order must be in 1..{MAX_ORDER}, got {self.orders}")
        if list(self.orders) != sorted(set(self.orders)):
            raise ValueError(f"orders: list each order once, ascending, got {self.orders}")
        if not self.target_modules:
            raise ValueError("target_modules: give module names such as ('query', 'value'), 're:REGEX' or 'all-linear'")
        check_patterns(self.target_modules)
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout: must be one of {LAYOUTS}, got {self.layout!r}")
        if self.depth is not None:
            _check_int("depth", self.depth, 1)
        if self.matrix not in MATRICES:
            raise ValueError(f"matrix: must be one of {MATRICES}, got {self.matrix!r}")
        if self.matrix == "unconstrained" and (self.depth is not None or self.layout != "planes"):
            raise ValueError("matrix: an unconstrained matrix has no circuit; leave depth and layout at their defaults")
        if self.n is not None:
            _check_int("n", self.n, 2)
            if max(self.orders) > self.n:
                raise ValueError(f"n: must be at least the largest order {max(self.orders)}, got {self.n}")

    def block_dim(self, d_out: int) -> int:
        """n for a layer with d_out output features (explicit n is checked against the block size)."""
        b = d_out // self.blocks
        if b < 2:
            raise ValueError(f"blocks: {self.blocks} blocks leave fewer than 2 features each of d_out={d_out}")
        if self.n is not None:
            if compound_width(self.n, self.orders) > b:
                raise ValueError(
                    f"n: n={self.n} needs {compound_width(self.n, self.orders)} features per block for orders "
                    f"{self.orders}, but a block of d_out={d_out} / blocks={self.blocks} has only {b}"
                )
            return self.n
        n = max(self.orders)
        if compound_width(n, self.orders) > b:
            raise ValueError(
                f"orders: {self.orders} need at least {compound_width(n, self.orders)} features per block, "
                f"but d_out={d_out} / blocks={self.blocks} gives {b}; use fewer blocks or lower orders"
            )
        while compound_width(n + 1, self.orders) <= b:
            n += 1
        return n

    def to_dict(self) -> dict:
        """The fields as plain JSON values (tuples become lists)."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> QuICConfig:
        """The config of `to_dict`; unknown fields or bad values raise ValueError naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"config: expected an object of QuICConfig fields, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config: unknown fields {sorted(unknown)}; this quic-edge knows {sorted(known)}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except TypeError as err:
            raise ValueError(f"config: {err}") from None

    @classmethod
    def from_json(cls, text: str) -> QuICConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config: not valid JSON ({err.msg})") from None
        return cls.from_dict(data)


def check_patterns(patterns: tuple[str, ...]) -> None:
    """ValueError naming a bad target entry (empty, or a regular expression that does not compile)."""
    for entry in patterns:
        if not isinstance(entry, str) or not entry or entry == REGEX_PREFIX:
            raise ValueError(f"target_modules: each entry must be a non-empty name, 're:REGEX' or '{ALL_LINEAR}', "
                             f"got {entry!r}")
        if entry.startswith(REGEX_PREFIX):
            try:
                re.compile(entry[len(REGEX_PREFIX):])
            except re.error as err:
                raise ValueError(f"target_modules: {entry!r} is not a valid regular expression ({err})") from None


def compound_width(n: int, orders: tuple[int, ...]) -> int:
    """Features of a block taken by the compounds: sum over k of C(n, k)."""
    return sum(comb(n, k) for k in orders)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")

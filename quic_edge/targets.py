"""Which layers an adapter goes on: target_modules as PEFT users write them.

An entry of `QuICConfig.target_modules` is
- a name: a module whose full name is it, or ends with "." + it ("query", "attention.self.query", or a full name);
- "re:PATTERN": a module whose full name matches the regular expression (re.fullmatch), e.g.
  r"re:.*layer\\.[45]\\..*\\.(query|value)" for the top two layers only;
- "all-linear": every linear layer but the head (the modules named in trainable_modules), as PEFT's shortcut.
Linear layers are nn.Linear, quic_edge's Int8Linear, and Hugging Face's Conv1D (GPT-2 style, weight stored
transposed).

    linear_layers(model)                     # {name: module} of every linear layer
    matching_layers(model, config)           # {name: module} the config adapts
"""

from __future__ import annotations

import re

from torch import nn

from .config import ALL_LINEAR, REGEX_PREFIX
from .quantize import Int8Linear


def linear_kinds() -> tuple[type, ...]:
    """The module types adapted like nn.Linear (Conv1D when transformers is installed)."""
    kinds: tuple[type, ...] = (nn.Linear, Int8Linear)
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return kinds
    return (*kinds, Conv1D)


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, linear_kinds())


def layer_dims(module: nn.Module) -> tuple[int, int]:
    """(d_in, d_out) of a linear layer (a Conv1D stores its weight [d_in, d_out])."""
    if isinstance(module, nn.Linear | Int8Linear):
        return module.in_features, module.out_features
    return int(module.weight.shape[0]), int(module.weight.shape[1])


def linear_layers(model: nn.Module, skip: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    """Every linear layer by full name, but those under a module whose name (a part) is in `skip` (the head)."""
    return {name: m for name, m in model.named_modules()
            if name and is_linear(m) and not set(name.split(".")) & set(skip)}


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Does the module name match any entry (see the module text; all-linear is decided by matching_layers)?"""
    for entry in patterns:
        if entry == ALL_LINEAR:
            return True
        if entry.startswith(REGEX_PREFIX):
            if re.fullmatch(entry[len(REGEX_PREFIX):], name):
                return True
        elif name == entry or name.endswith("." + entry):
            return True
    return False


def matching_layers(model: nn.Module, target_modules: tuple[str, ...], head: tuple[str, ...]) -> dict[str, nn.Module]:
    """The linear layers the targets select (the head never: it trains in full)."""
    return {name: m for name, m in linear_layers(model, skip=head).items() if matches(name, target_modules)}

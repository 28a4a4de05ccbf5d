"""Command-line flags for QuICConfig, generated from its fields and their help texts (one source for both).

    add_config_arguments(parser)                  # --blocks, --orders, --targets, --layout, --depth, ...
    config = config_from_arguments(args, target_modules=("query", "value"))   # defaults for flags not given
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Any

from .config import LAYOUTS, QuICConfig

FLAGS = {"target_modules": "targets", "trainable_modules": "head"}  # shorter flags for two fields
CHOICES = {"layout": LAYOUTS}


def _flag(name: str) -> str:
    return "--" + FLAGS.get(name, name).replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per QuICConfig field; a flag left out keeps the default (shown in its help)."""
    group = parser.add_argument_group("QuIC adapter (QuICConfig)")
    hints = typing.get_type_hints(QuICConfig)
    for f in fields(QuICConfig):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{f.metadata.get('help', '')} (default {shown})"
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(_flag(f.name), dest=f.name, action="store_true", default=None, help=help_text)
        elif _is_tuple(kind):
            group.add_argument(_flag(f.name), dest=f.name, metavar="A,B", default=None, help=f"{help_text}; comma separated")
        else:
            group.add_argument(_flag(f.name), dest=f.name, type=_scalar(kind), choices=CHOICES.get(f.name),
                               default=None, help=help_text)


def config_from_arguments(args: argparse.Namespace, **defaults: Any) -> QuICConfig:
    """The QuICConfig the flags ask for: flags given win, then `defaults` (e.g. the model's usual targets), then the
    dataclass defaults. Bad values raise ValueError naming the field."""
    values = dict(defaults)
    hints = typing.get_type_hints(QuICConfig)
    for f in fields(QuICConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = _comma_list(given, typing.get_args(hints[f.name])[0], f.name) if _is_tuple(hints[f.name]) else given
    return QuICConfig(**values)


def _is_tuple(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple


def _scalar(kind: Any):
    """int for `int` and `int | None`, str for `str`."""
    options = [k for k in typing.get_args(kind) if k is not type(None)] if isinstance(kind, types.UnionType) else [kind]
    return options[0]


def _comma_list(text: str, item: type, name: str) -> tuple:
    """'1,2' -> (1, 2) for tuple fields; ValueError naming the flag otherwise."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return tuple(item(p) for p in parts)
    except ValueError:
        raise ValueError(f"{_flag(name)}: give {item.__name__} values separated by commas, got {text!r}") from None


MODEL_TASKS = ("classification", "image-classification", "causal-lm")  # the heads a model folder can get
MODEL_HELP = ("base model: minilm (bundled), llama-tiny, mlp, or a folder saved by transformers' save_pretrained "
              "(config.json + .safetensors; its tokenizer.json travels into the bundle)")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model NAME_OR_FOLDER and --task, shared by export, info and deploy."""
    p.add_argument("--model", default="minilm", metavar="NAME_OR_FOLDER", help=MODEL_HELP + " (default minilm)")
    p.add_argument("--task", choices=MODEL_TASKS,
                   help="the head a model folder gets (default: from its config's architectures)")


def load_model(args: argparse.Namespace, num_labels: int, seed: int = 0) -> tuple[Any, QuICConfig]:
    """The base model the flags name, and the QuICConfig the flags ask for on it (the model's usual targets unless
    --targets says otherwise)."""
    from quic_edge import models

    model, _ = models.load(args.model, num_labels=num_labels, seed=seed, task=getattr(args, "task", None))
    return model, config_from_arguments(args, target_modules=models.default_targets(args.model, model))

"""Eager training and evaluation in PyTorch: the one `fit` and `evaluate` the demo, parity, the benchmarks and the
README example use. They mirror the device loops: the same optimizer semantics (torch.optim.AdamW / SGD, per-group
learning rates from the bundle's optimizer entry), the same shuffled fixed-size batches (quic_edge.data.batches with
`default_rng(seed)`), eval mode (dropout off), the loss of quic_edge.tasks.

    inputs, targets = encode_examples(tokenizer, train, labels, seq_len=64)
    losses = fit(model, shuffled_batches(inputs, targets, batch_size=8, epochs=3, seed=0), optimizer_spec("adamw", 1e-2))
    accuracy = evaluate(model, *encode_examples(tokenizer, test, labels, seq_len=64))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from . import hf
from .data import batches
from .formats.optimizer import lr_scales, optimizer_spec
from .state import delta_parameters
from .tasks import TARGET_NAME, WithLoss


def make_optimizer(params: dict[str, nn.Parameter], spec: dict[str, Any]) -> torch.optim.Optimizer:
    """A torch optimizer over `params` as `spec` (optimizer_spec) describes it, one param group per learning rate."""
    scales = lr_scales(spec, params)
    by_scale: dict[float, list[nn.Parameter]] = {}
    for name, p in params.items():
        by_scale.setdefault(scales[name], []).append(p)
    groups = [{"params": ps, "lr": spec["lr"] * scale} for scale, ps in by_scale.items()]
    if spec["name"] == "adamw":
        return torch.optim.AdamW(groups, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"],
                                 weight_decay=spec["weight_decay"])
    return torch.optim.SGD(groups, lr=spec["lr"], weight_decay=spec["weight_decay"])


def shuffled_batches(inputs: dict[str, np.ndarray], targets: np.ndarray, batch_size: int, epochs: int,
                     seed: int) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-size shuffled batches (the target under 'labels'), in the order a device loop's `fit` draws them."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for index in batches(len(targets), batch_size, rng):
            yield {**{name: array[index] for name, array in inputs.items()}, TARGET_NAME: targets[index]}


__all__ = ["evaluate", "fit", "make_optimizer", "optimizer_spec", "predict", "shuffled_batches"]

StepHook = Callable[[int, torch.Tensor], None]  # (step, loss) after backward, before the optimizer step


def fit(model: nn.Module, data: Iterable[dict[str, np.ndarray]], optimizer: dict[str, Any] | torch.optim.Optimizer,
        task: str = "classification", on_step: StepHook | None = None) -> list[float]:
    """Train the model's delta (quic_edge.state.delta_parameters) over `data` (batches of numpy arrays, the target
    under 'labels', inputs in the model's argument order); returns the loss of every step."""
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(delta_parameters(model), optimizer)
    wrapper = None
    losses = []
    for step, batch in enumerate(data):
        names = tuple(name for name in batch if name != TARGET_NAME)
        wrapper = wrapper or WithLoss(model, task, names).eval()
        inputs = [torch.from_numpy(np.ascontiguousarray(batch[name])) for name in names]
        loss, _ = wrapper(*inputs, torch.from_numpy(np.ascontiguousarray(batch[TARGET_NAME])))
        loss.backward()
        if on_step is not None:
            on_step(step, loss)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def predict(model: nn.Module, inputs: dict[str, np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Logits for every row of `inputs` (eval mode, in chunks of batch_size)."""
    model.eval()
    count = len(next(iter(inputs.values())))
    chunks = []
    for start in range(0, count, batch_size):
        args = [torch.from_numpy(np.ascontiguousarray(a[start : start + batch_size])) for a in inputs.values()]
        chunks.append(hf.call(model, tuple(inputs), args).numpy())
    return np.concatenate(chunks)


def evaluate(model: nn.Module, inputs: dict[str, np.ndarray], targets: np.ndarray, batch_size: int = 64) -> float:
    """Accuracy of the model's argmax over `inputs` against `targets`."""
    return float((predict(model, inputs, batch_size).argmax(-1) == targets).mean())

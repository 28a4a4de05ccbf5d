"""Training objectives: the loss a model trains on, and a module that returns (loss, logits) for export.

Both exporters wrap a model in WithLoss, so ONNX Runtime, ExecuTorch and eager PyTorch train on one loss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import hf
from .models import MLP_FEATURES, input_names

TASKS = {"minilm": "classification", "llama-tiny": "causal-lm", "mlp": "classification"}
TARGET_NAME = "labels"
IGNORE_INDEX = -100  # a causal-lm target at a padded position: no loss there (F.cross_entropy's default)


def task_loss(task: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy: per example (classification) or next token (causal-lm: target = input_ids, IGNORE_INDEX
    at padded positions)."""
    if task == "classification":
        return F.cross_entropy(logits, target)  # logits (B, L), target (B,)
    if task == "causal-lm":
        vocab = logits.shape[-1]
        return F.cross_entropy(logits[:, :-1].reshape(-1, vocab), target[:, 1:].reshape(-1),
                               ignore_index=IGNORE_INDEX)  # (B, T, V), (B, T)
    raise ValueError(f"task: unknown task {task!r}; known {sorted(set(TASKS.values()))}")


class WithLoss(nn.Module):
    """forward(*inputs, target) -> (loss, logits): the first output is the loss, as exporters expect. `names` are the
    inputs' names (a transformers model takes them by keyword and returns a ModelOutput: quic_edge.hf.call)."""

    def __init__(self, model: nn.Module, task: str, names: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.names = tuple(names)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *inputs, target = args
        logits = hf.call(self.model, self.names, inputs)
        # logits are an evaluation output, never differentiated (ExecuTorch's joint graph requires this)
        return task_loss(self.task, logits, target), logits.detach()


def example_batch(name: str | nn.Module, batch_size: int, seq_len: int, num_labels: int | None = None, seed: int = 0,
                  padded: bool = False) -> dict[str, np.ndarray]:
    """Random inputs of the right names, shapes and dtypes (plus the target under TARGET_NAME), for a model of
    quic_edge.models by name or for a transformers model (its config gives vocabulary, image size and labels).
    padded=True gives text rows random lengths (at least 2 tokens) with padding (id 0, mask 0) after them; a causal-lm
    target ignores padding."""
    if isinstance(name, nn.Module):
        return _transformers_batch(name, batch_size, seq_len, num_labels, seed, padded)
    if num_labels is None:
        raise ValueError("num_labels: give the number of classes")
    rng = np.random.default_rng(seed)
    if name == "mlp":
        batch = {"features": rng.standard_normal((batch_size, MLP_FEATURES)).astype(np.float32)}
    else:
        vocab = 256 if name == "llama-tiny" else 30522
        batch = _tokens(rng, 1000 if vocab > 1000 else 1, vocab, batch_size, seq_len, padded, pad_id=0)
        if "attention_mask" not in input_names(name):
            del batch["attention_mask"]
    return _with_target(batch, TASKS[name], num_labels, rng)


def _tokens(rng: np.random.Generator, low: int, vocab: int, batch_size: int, seq_len: int, padded: bool,
            pad_id: int) -> dict[str, np.ndarray]:
    ids = rng.integers(low, vocab, size=(batch_size, seq_len), dtype=np.int64)
    mask = np.ones((batch_size, seq_len), dtype=np.int64)
    if padded:
        for row, length in enumerate(rng.integers(min(2, seq_len), seq_len + 1, size=batch_size)):
            mask[row, length:] = 0
        mask[0] = 1  # one full row: the longest shape is exercised too
        ids[mask == 0] = pad_id
    return {"input_ids": ids, "attention_mask": mask}


def _with_target(batch: dict[str, np.ndarray], task: str, num_labels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    batch_size = len(next(iter(batch.values())))
    if task == "causal-lm":
        batch[TARGET_NAME] = np.where(batch["attention_mask"] == 1, batch["input_ids"], IGNORE_INDEX)
    else:
        batch[TARGET_NAME] = rng.integers(0, num_labels, size=(batch_size,), dtype=np.int64)
    return batch


def _transformers_batch(model: nn.Module, batch_size: int, seq_len: int, num_labels: int | None, seed: int,
                        padded: bool) -> dict[str, np.ndarray]:
    task = hf.task_of(model)
    if task is None:
        raise ValueError(f"example_batch: {type(model).__name__} is neither a transformers *ForSequenceClassification, "
                         "*ForImageClassification nor *ForCausalLM model nor a quic_edge.models name")
    rng = np.random.default_rng(seed)
    config = model.config
    if hf.input_names(model) == hf.IMAGE_INPUTS:
        size, channels = int(config.image_size), int(getattr(config, "num_channels", 3))
        batch = {"pixel_values": rng.standard_normal((batch_size, channels, size, size)).astype(np.float32)}
    else:
        vocab = int(config.vocab_size)
        batch = _tokens(rng, min(5, vocab - 1), vocab, batch_size, seq_len, padded,
                        pad_id=int(getattr(config, "pad_token_id", None) or 0))
    return _with_target(batch, task, num_labels or int(config.num_labels), rng)

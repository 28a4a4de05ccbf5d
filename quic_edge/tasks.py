"""Training objectives: the loss a model trains on, and a module that returns (loss, logits) for export.

Both exporters wrap a model in WithLoss, so ONNX Runtime, ExecuTorch and eager PyTorch train on one loss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
    """forward(*inputs, target) -> (loss, logits): the first output is the loss, as exporters expect."""

    def __init__(self, model: nn.Module, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *inputs, target = args
        logits = self.model(*inputs)
        # logits are an evaluation output, never differentiated (ExecuTorch's joint graph requires this)
        return task_loss(self.task, logits, target), logits.detach()


def example_batch(name: str, batch_size: int, seq_len: int, num_labels: int, seed: int = 0,
                  padded: bool = False) -> dict[str, np.ndarray]:
    """Random inputs of the right names, shapes and dtypes (plus the target under TARGET_NAME). padded=True gives text
    rows random lengths (at least 2 tokens) with padding (id 0, mask 0) after them; a causal-lm target ignores padding."""
    rng = np.random.default_rng(seed)
    if name == "mlp":
        batch = {"features": rng.standard_normal((batch_size, MLP_FEATURES)).astype(np.float32)}
    else:
        vocab = 256 if name == "llama-tiny" else 30522
        ids = rng.integers(1000 if vocab > 1000 else 1, vocab, size=(batch_size, seq_len), dtype=np.int64)
        mask = np.ones((batch_size, seq_len), dtype=np.int64)
        if padded:
            for row, length in enumerate(rng.integers(min(2, seq_len), seq_len + 1, size=batch_size)):
                mask[row, length:] = 0
            mask[0] = 1  # one full row: the longest shape is exercised too
            ids[mask == 0] = 0
        batch = {"input_ids": ids}
        if "attention_mask" in input_names(name):
            batch["attention_mask"] = mask
    if TASKS[name] == "causal-lm":
        batch[TARGET_NAME] = np.where(batch["attention_mask"] == 1, batch["input_ids"], IGNORE_INDEX)
    else:
        batch[TARGET_NAME] = rng.integers(0, num_labels, size=(batch_size,), dtype=np.int64)
    return batch

"""What the benchmarks share: one split per (task, seed), the adapters compared, their parameter counts.

Every adapter is built on the same base (all-MiniLM-L6-v2, frozen, int8 where frozen) and, where it has
targets, the same ones (query and value of every layer). A "seed" picks the data split, the batch order and the
initial trainable tensors (the head, and LoRA's A); it never changes the base.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from torch import nn

from quic_edge import baselines, models
from quic_edge.config import QuICConfig
from quic_edge.data import Example, load_dataset
from quic_edge.model import apply_quic
from quic_edge.state import delta_parameters

TARGETS = ("query", "value")
ALL_LINEAR = ("query", "key", "value", "dense")  # every linear layer of MiniLM's encoder (the head excluded)
LORA_RANK = 8


@dataclass(frozen=True)
class RunSettings:
    """What every benchmark run shares: tasks, seeds, split sizes, training length, shapes, output folder."""

    tasks: tuple[str, ...] = ("bbc", "tweets")
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 160
    n_test: int = 300
    epochs: int = 3
    batch_size: int = 8
    seq_len: int = 64
    out: str = "benchmarks/results"
    quick: bool = False
    QUICK: ClassVar[dict[str, Any]] = dict(tasks=("bbc",), seeds=(0,), n_train=16, n_test=16, epochs=1, quick=True)

    @classmethod
    def make(cls, quick: bool = False, **overrides: Any):
        """The full run, or with quick=True a smoke run (one task and seed, one short epoch); overrides win."""
        return cls(**{**(cls.QUICK if quick else {}), **overrides})


@dataclass(frozen=True)
class Split:
    task: str
    labels: list[str]
    train: list[Example]
    test: list[Example]


def task_split(task: str, n_train: int, n_test: int, seed: int) -> Split:
    """Disjoint train and test examples of an offline dataset (DATA.md), shuffled by `seed`."""
    examples = load_dataset(task)
    if n_train + n_test > len(examples):
        raise ValueError(f"{task}: n_train + n_test = {n_train + n_test} exceeds the {len(examples)} examples")
    labels = sorted({e.label for e in examples})
    order = np.random.default_rng(seed).permutation(len(examples))[: n_train + n_test]
    picked = [examples[i] for i in order]
    return Split(task, labels, picked[:n_train], picked[n_train:])


@dataclass(frozen=True)
class AdapterSpec:
    """One way to fine-tune the base: its name in results, the kind, its learning rate (AdamW)."""

    name: str
    title: str
    kind: str  # "quic", "lora", "head" or "full"
    lr: float
    config: QuICConfig | None = None
    rank: int = 0
    targets: tuple[str, ...] = field(default=TARGETS)

    def build(self, num_labels: int, seed: int) -> nn.Module:
        """The base MiniLM (head seeded by `seed`) prepared for training with this adapter."""
        model, _ = models.load("minilm", num_labels=num_labels, seed=seed)
        if self.kind == "quic":
            return apply_quic(model, self.config)
        if self.kind == "lora":
            return baselines.lora(model, rank=self.rank, targets=self.targets)
        if self.kind == "head":
            return baselines.head_only(model)
        if self.kind == "full":
            return baselines.full(model)
        raise ValueError(f"adapter kind: unknown {self.kind!r}")


def quic(name: str, title: str, **config) -> AdapterSpec:
    return AdapterSpec(name, title, "quic", 1e-2, QuICConfig(target_modules=TARGETS, **config))


# Learning rates: QuIC and head-only use the demo's 1e-2; LoRA 5e-3 (the fleet benchmark's, the upper end of the
# usual 1e-3..5e-3 for few steps); full fine-tuning 1e-4 (the usual 5e-5..1e-4). None was tuned on these data.
ADAPTERS = {
    spec.name: spec
    for spec in (
        quic("quic12", "QuIC (1,2)", blocks=3, orders=(1, 2)),
        quic("quic123", "QuIC (1,2,3)", blocks=3, orders=(1, 2, 3)),
        quic("quic1", "QuIC (1) = block OFT, b=32", blocks=12, orders=(1,)),
        AdapterSpec("lora8", "LoRA r8 (PEFT)", "lora", 5e-3, rank=LORA_RANK),
        AdapterSpec("head", "head only", "head", 1e-2),
        AdapterSpec("full", "full fine-tuning", "full", 1e-4),
    )
}


def adapter_numbers(model: nn.Module) -> tuple[int, int]:
    """(all trainable numbers, those outside the task head) of a prepared model."""
    total = adapter = 0
    for name, p in delta_parameters(model).items():
        total += p.numel()
        if not set(name.split(".")[:-1]) & set(baselines.HEAD_MODULES):
            adapter += p.numel()
    return total, adapter


def lora_all_linear_numbers(num_labels: int) -> int:
    """LoRA rank 8 built with PEFT on every linear layer of the encoder: its trainable numbers, head excluded."""
    spec = AdapterSpec("lora-8-all", "LoRA r8 all linear", "lora", 5e-3, rank=LORA_RANK, targets=ALL_LINEAR)
    return adapter_numbers(spec.build(num_labels, seed=0))[1]


def mean_spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}

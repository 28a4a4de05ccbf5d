"""What the benchmarks share: run settings, the adapters compared, their learning-rate grids, parameter counts.

Every adapter is built on the same base (all-MiniLM-L6-v2, frozen, int8 where frozen) and, where it has targets, the
same ones (query and value of every layer). A "seed" picks the data split, the batch order and the initial trainable
tensors (the head, and LoRA's A); it never changes the base.
"""

from __future__ import annotations

import shutil
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from quic_edge import baselines, models
from quic_edge.cli_types import MAX_SEED
from quic_edge.config import QuICConfig
from quic_edge.model import apply_quic
from quic_edge.state import delta_parameters
from quic_edge.suite import SUITE

if TYPE_CHECKING:
    from quic_edge.runtimes.loop import Schedule

TARGETS = ("query", "value")
QUERY_KEY = ("query", "key")  # the ablation's other targets: attention's scores only, the values untouched
# ... and two that keep the value and move the query's angles to an output projection: attention's (the heads mixed
# back into the residual stream) or the feed-forward block's ("output.dense" alone would match both)
ATTENTION_OUT, FFN_OUT = "attention.output.dense", r"re:.*layer\.\d+\.output\.dense"
VALUE_ATTENTION_OUT = ("value", ATTENTION_OUT)
VALUE_FFN_OUT = ("value", FFN_OUT)
# ... and the same angles spread wider: both projections that write into the residual stream, or those and the value
# (two blocks of n = 15 per layer there, so three targets keep the 3,780 angles)
RESIDUAL_WRITERS = (ATTENTION_OUT, FFN_OUT)
VALUE_RESIDUAL_WRITERS = ("value", *RESIDUAL_WRITERS)
FFN_IN = "intermediate.dense"  # the feed-forward block's first projection, 384 -> 1,536 features, before its GELU
ALL_LINEAR = ("query", "key", "value", "dense")  # every linear layer of MiniLM's encoder (the head excluded)
LORA_RANK = 8
LAYERS = 6  # MiniLM-L6's encoder layers


SCRATCH_MARK = ".quic-edge-scratch"  # in every scratch folder a benchmark made, so that a later run may remove it


def fresh_scratch(root: str | Path) -> Path:
    """An empty scratch folder at `root`. A folder already there is removed only when it is empty or a benchmark made
    it (SCRATCH_MARK is in it): a mistyped --work never deletes a user's files."""
    root = Path(root)
    if root.exists():
        if not root.is_dir() or (any(root.iterdir()) and not (root / SCRATCH_MARK).exists()):
            raise ValueError(f"{root}: not empty and not a scratch folder a benchmark made (no {SCRATCH_MARK} in it), "
                             "so it is left as it is; name a new or empty folder with --work")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / SCRATCH_MARK).write_text("made by a quic-edge benchmark; the next run given this folder removes it\n")
    return root


SCHEDULES = ("constant", "linear")
WARMUP_SHARE = 0.06  # "linear": the first 6 % of a run's steps warm up (the usual for fine-tuning BERT-like encoders)


def step_schedule(name: str, total: int) -> Schedule | None:
    """The learning-rate multiplier per step for a run of `total` steps (None: the bundle's rate throughout)."""
    from quic_edge.runtimes.loop import linear_schedule

    return linear_schedule(max(1, round(WARMUP_SHARE * total)), total) if name == "linear" else None


@dataclass(frozen=True)
class RunSettings:
    """What every benchmark run shares: tasks, seeds, split sizes, training length, shapes, output folder."""

    tasks: tuple[str, ...] = SUITE
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 1000
    n_val: int = 200
    n_test: int = 600
    epochs: int = 3
    batch_size: int = 8
    seq_len: int = 64
    schedule: str = "constant"  # the learning rate per step; "linear": SCHEDULES' warm-up, then linear decay to 0
    out: str = "benchmarks/results"
    quick: bool = False
    QUICK: ClassVar[dict[str, Any]] = dict(tasks=("bbc-same-topic",), seeds=(0,), n_train=16, n_val=16, n_test=16,
                                           epochs=1, quick=True)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks) or not set(self.tasks) <= set(SUITE):
            raise ValueError(f"tasks: give distinct suite tasks, at least one, got {list(self.tasks)}; the suite has "
                             f"{', '.join(SUITE)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(0 <= x <= MAX_SEED for x in self.seeds):
            raise ValueError(f"seeds: give distinct whole numbers from 0 to {MAX_SEED}, at least one, got "
                             f"{list(self.seeds)}")
        if not str(self.out).strip():
            raise ValueError("out: name a results folder (the default is benchmarks/results), got an empty name")
        for name in ("epochs", "n_train", "n_val", "n_test", "batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')}: must be at least 1, got {getattr(self, name)}")

    @classmethod
    def make(cls, quick: bool = False, **overrides: Any):
        """The full run, or with quick=True a smoke run (one task and seed, one short epoch); overrides win."""
        return cls(**{**(cls.QUICK if quick else {}), **overrides})


@dataclass(frozen=True)
class AdapterSpec:
    """One way to fine-tune the base: its name in results, the kind, and the learning rates its search tries for
    the adapter's own tensors (the head trains at the rate chosen for head-only training)."""

    name: str
    title: str
    kind: str  # "quic", "lora", "head" or "full"
    grid: tuple[float, ...]
    config: QuICConfig | None = None
    rank: int = 0
    targets: tuple[str, ...] = field(default=TARGETS)
    top: int | None = None  # adapters on the top `top` of MiniLM's six layers only (None: every layer)

    def build(self, num_labels: int, seed: int) -> nn.Module:
        """The base MiniLM (head seeded by `seed`) prepared for training with this adapter."""
        model, _ = models.load("minilm", num_labels=num_labels, seed=seed)
        pattern = None
        if self.top is not None:  # a regular expression of the full module name: layers 6 - top .. 5
            layers = "|".join(str(i) for i in range(LAYERS - self.top, LAYERS))
            pattern = rf".*layer\.({layers})\..*\.({'|'.join(self.targets)})"
        if self.kind == "quic":
            return apply_quic(model, self.config if pattern is None else replace(self.config, target_modules=f"re:{pattern}"))
        if self.kind == "lora":
            return baselines.lora(model, rank=self.rank, targets=pattern or self.targets)
        if self.kind == "head":
            return baselines.head_only(model)
        if self.kind == "full":
            return baselines.full(model)
        raise ValueError(f"adapter kind: unknown {self.kind!r}")


def quic(name: str, title: str, targets: tuple[str, ...] = TARGETS, **config: Any) -> AdapterSpec:
    return AdapterSpec(name, title, "quic", ANGLE_GRID, QuICConfig(target_modules=targets, **config), targets=targets)


# The searches: each grid starts with a rate at which the adapter barely moves (so "no better than head only" is
# always within reach), then the usual range. The head's rate is chosen once per task by head-only training.
HEAD_GRID = (3e-3, 1e-2, 3e-2)
ANGLE_GRID = (1e-5, 1e-3, 3e-3, 1e-2)
LORA_GRID = (1e-5, 3e-4, 1e-3, 3e-3)
FULL_GRID = (1e-6, 1e-5, 3e-5, 1e-4)
ADAPTERS = {
    spec.name: spec
    for spec in (
        quic("quic12", "QuIC (1,2)", blocks=3, orders=(1, 2)),
        quic("quic123", "QuIC (1,2,3)", blocks=3, orders=(1, 2, 3)),
        quic("quic1", "QuIC (1) = block OFT, b=32", blocks=12, orders=(1,)),
        AdapterSpec("lora8", "LoRA r8 (PEFT)", "lora", LORA_GRID, rank=LORA_RANK),
        AdapterSpec("head", "head only", "head", HEAD_GRID),
        AdapterSpec("full", "full fine-tuning", "full", FULL_GRID),
    )
}
MAIN = tuple(ADAPTERS)  # what `bench compare` runs unless told otherwise
# Placement (issue 11): the same adapters on the top k layers only; ONNX Runtime's gradient builder then stops the
# backward pass at the lowest adapted layer, so the layers below keep nothing for it.
PLACEMENT_K = (1, 2, 3, 4, 5)
ADAPTERS |= {f"{base}-top{k}": replace(ADAPTERS[base], name=f"{base}-top{k}", top=k,
                                       title=f"{ADAPTERS[base].title}, top {k} of {LAYERS} layers")
             for k in PLACEMENT_K for base in ("quic12", "lora8")}
# The paper's ablation (issue 12, quic_edge.bench.ablation): QuIC (1,2)'s neighbours, each one change away from it.
ABLATION_ADAPTERS = {
    spec.name: spec
    for spec in (
        quic("quic1-n15", "QuIC (1), n=15 (as (1,2))", blocks=3, orders=(1,), n=15),
        quic("quic2", "QuIC (2)", blocks=3, orders=(2,)),
        quic("quic23", "QuIC (2,3)", blocks=3, orders=(2, 3)),
        quic("quic12-free", "(1,2), unconstrained A = I + T", blocks=3, orders=(1, 2), matrix="unconstrained"),
        quic("quic12-d1", "QuIC (1,2), depth 1", blocks=3, orders=(1, 2), depth=1),
        quic("quic12-d3", "QuIC (1,2), depth 3", blocks=3, orders=(1, 2), depth=3),
        quic("quic12-d7", "QuIC (1,2), depth 7", blocks=3, orders=(1, 2), depth=7),
        quic("quic12-brick", "QuIC (1,2), brick layout", blocks=3, orders=(1, 2), layout="brick"),
        quic("quic12-qk", "QuIC (1,2) on query/key", blocks=3, orders=(1, 2), targets=QUERY_KEY),
        quic("quic12-vo", "QuIC (1,2) on value/attention output", blocks=3, orders=(1, 2), targets=VALUE_ATTENTION_OUT),
        quic("quic12-vf", "QuIC (1,2) on value/feed-forward output", blocks=3, orders=(1, 2), targets=VALUE_FFN_OUT),
        quic("quic12-of", "QuIC (1,2) on both output projections", blocks=3, orders=(1, 2), targets=RESIDUAL_WRITERS),
        quic("quic12-vfo", "QuIC (1,2) on value and both output projections, 2 blocks, n=15", blocks=2, orders=(1, 2),
             n=15, targets=VALUE_RESIDUAL_WRITERS),
        # ... and the same 3,780 angles elsewhere again: on the feed-forward block's first projection (its 1,536
        # features before the activation, six blocks of n = 15), or one rotation per layer shared by its three blocks
        # (105 angles) on every linear layer, so that a layer's angles reach attention's scores, values and both
        # feed-forward projections
        quic("quic12-ffn-in", "QuIC (1,2) on the feed-forward input projection, 6 blocks, n=15", blocks=6,
             orders=(1, 2), n=15, targets=(FFN_IN,)),
        quic("quic12-all-shared", "QuIC (1,2) on every linear layer, one rotation per layer shared by its 3 blocks",
             blocks=3, orders=(1, 2), n=15, share_blocks=True, targets=ALL_LINEAR),
        # blocks: fewer, larger blocks or more, smaller ones at about the same angles (at most 4,096, 18x fewer than
        # LoRA r8): n is the largest that fits (or the largest under the budget), so the rotation's reach and its
        # multiply-adds per token change, the angle count hardly does
        quic("quic12-b1", "QuIC (1,2), 1 block, n=26", blocks=1, orders=(1, 2), n=26),
        quic("quic12-b2", "QuIC (1,2), 2 blocks, n=18", blocks=2, orders=(1, 2), n=18),
        quic("quic12-b4", "QuIC (1,2), 4 blocks, n=13", blocks=4, orders=(1, 2)),
        quic("quic12-b6", "QuIC (1,2), 6 blocks, n=10", blocks=6, orders=(1, 2)),
        AdapterSpec("lora8-qk", "LoRA r8 (PEFT) on query/key", "lora", LORA_GRID, rank=LORA_RANK, targets=QUERY_KEY),
        AdapterSpec("lora8-vf", "LoRA r8 (PEFT) on value/feed-forward output", "lora", LORA_GRID, rank=LORA_RANK,
                    targets=VALUE_FFN_OUT),
        AdapterSpec("lora8-of", "LoRA r8 (PEFT) on both output projections", "lora", LORA_GRID, rank=LORA_RANK,
                    targets=RESIDUAL_WRITERS),
        AdapterSpec("lora8-vfo", "LoRA r8 (PEFT) on value and both output projections", "lora", LORA_GRID,
                    rank=LORA_RANK, targets=VALUE_RESIDUAL_WRITERS),
    )
}
ADAPTERS |= ABLATION_ADAPTERS


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
    spec = AdapterSpec("lora-8-all", "LoRA r8 all linear", "lora", LORA_GRID, rank=LORA_RANK, targets=ALL_LINEAR)
    return adapter_numbers(spec.build(num_labels, seed=0))[1]


def mean_spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}

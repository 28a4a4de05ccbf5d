"""The paper's ablation on our data: Hamming-weight orders, circuit depth below the full circuit, layout.

    from quic_edge.bench.ablation import AblationSettings, run_ablation
    summary = run_ablation(AblationSettings())        # ~25 min on 2 cores

Trained in eager PyTorch (one export per config would cost more than the training; the exported graphs compute
the same QuICLinear, within 1e-5 by the parity tests), with what the device loop does: AdamW (torch semantics)
at one learning rate for angles and head, the same fixed-size shuffled batches (`quic_edge.data.batches` with
`default_rng(seed)`), eval mode. All configs use query/value of the same frozen int8 MiniLM and the splits of
the compare benchmark.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from quic_edge.bench.common import TARGETS, AdapterSpec, RunSettings, adapter_numbers, mean_spread
from quic_edge.config import QuICConfig
from quic_edge.suite import suite_split


@dataclass(frozen=True)
class Variant:
    group: str  # "orders", "depth", "layout" or "reference"
    title: str
    config: QuICConfig | None  # None: head only


def _v(group: str, title: str, **config: Any) -> Variant:
    return Variant(group, title, QuICConfig(target_modules=TARGETS, **config))


VARIANTS = (
    _v("orders", "{1,2}", blocks=3, orders=(1, 2)),
    _v("orders", "{1}, n=15 (as {1,2})", blocks=3, orders=(1,), n=15),
    _v("orders", "{1} = block OFT b=32", blocks=12, orders=(1,)),
    _v("orders", "{2}", blocks=3, orders=(2,)),
    _v("orders", "{2,3}", blocks=3, orders=(2, 3)),
    _v("orders", "{1,2,3}", blocks=3, orders=(1, 2, 3)),
    _v("depth", "{1,2} depth 1", blocks=3, orders=(1, 2), depth=1),
    _v("depth", "{1,2} depth 3", blocks=3, orders=(1, 2), depth=3),
    _v("depth", "{1,2} depth 7", blocks=3, orders=(1, 2), depth=7),
    _v("layout", "{1,2} brick", blocks=3, orders=(1, 2), layout="brick"),
    Variant("reference", "head only", None),
)


@dataclass(frozen=True)
class AblationSettings(RunSettings):
    variants: tuple[str, ...] = tuple(v.title for v in VARIANTS)
    lr: float = 1e-2
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    QUICK: ClassVar[dict[str, Any]] = RunSettings.QUICK | dict(variants=("{1,2}", "{2}"))


def run_ablation(s: AblationSettings, progress: bool = True) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    from quic_edge.bench.report import write_ablation

    chosen = [v for v in VARIANTS if v.title in s.variants]
    if len(chosen) != len(s.variants):
        raise ValueError(f"variants: unknown {sorted(set(s.variants) - {v.title for v in VARIANTS})}")
    if s.threads:
        torch.set_num_threads(s.threads)
    start = time.perf_counter()
    bar = tqdm(total=len(chosen) * len(s.tasks) * len(s.seeds), disable=not progress, desc="bench ablation", unit="run")
    rows = []
    for variant in chosen:
        accuracy, angles, shape = {}, 0, {}
        for task in s.tasks:
            scores = []
            for seed in s.seeds:
                bar.set_postfix_str(f"{variant.title} {task} seed {seed}")
                score, angles, shape = train_eager(variant, suite_split(task, s.n_train, s.n_val, s.n_test, seed), seed, s)
                scores.append(score)
                bar.update(1)
            accuracy[task] = mean_spread(scores) | {"values": scores}
        rows.append({"group": variant.group, "title": variant.title, "angles": angles, **shape, "accuracy": accuracy,
                     "config": asdict(variant.config) if variant.config else None})
    bar.close()
    summary = {"settings": asdict(s), "configs": rows, "total_seconds": time.perf_counter() - start}
    write_ablation(Path(s.out), summary)
    return summary


def build(variant: Variant, num_labels: int, seed: int):
    if variant.config is None:
        return AdapterSpec("head", "head only", "head", ()).build(num_labels, seed)
    return AdapterSpec(variant.title, variant.title, "quic", (), variant.config).build(num_labels, seed)


def train_eager(variant: Variant, split, seed: int, s: AblationSettings) -> tuple[float, int, dict[str, Any]]:
    """(held-out accuracy, angles, circuit shape) after training one variant on one split (quic_edge.training)."""
    from tokenizers import Tokenizer

    from quic_edge.data import encode_examples
    from quic_edge.formats.optimizer import optimizer_spec
    from quic_edge.model import quic_layers
    from quic_edge.models import minilm_path
    from quic_edge.training import evaluate, fit, shuffled_batches

    model = build(variant, len(split.labels), seed)
    tokenizer = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    inputs, targets = encode_examples(tokenizer, split.train, split.labels, s.seq_len)
    fit(model, shuffled_batches(inputs, targets, s.batch_size, s.epochs, seed), optimizer_spec("adamw", s.lr))
    accuracy = evaluate(model, *encode_examples(tokenizer, split.test, split.labels, s.seq_len), batch_size=50)
    layers = list(quic_layers(model).values())
    shape = {"blocks": layers[0].config.blocks if layers else 0, "n": layers[0].n if layers else 0,
             "depth": (variant.config.depth or "full") if variant.config else "-"}
    return accuracy, adapter_numbers(model)[1], shape

"""The paper's ablation on the suite: Hamming-weight orders, circuit depth, layout and the orthogonality control.

    from quic_edge.bench.ablation import AblationSettings, run_ablation
    summary = run_ablation(AblationSettings(tasks=("bbc-word-order",)))   # ~15 min per new configuration on 2 cores

Every configuration is an adapter of the comparison (quic_edge.bench.common.ABLATION_ADAPTERS), trained the way
`bench compare` trains it: the ONNX Runtime device loop, its own learning rate chosen on the validation split (the
head at head-only's chosen rate), test accuracy over seeds. The runs are the comparison's runs: with the same work
folder (by default `bench compare`'s) and data settings, the rows a compare run made are reused, not trained again.
Each configuration is one change away from QuIC (1,2) (3 blocks, n = 15, full "planes" circuit):
- orders: which compound matrices act ({1}, {1,2}, {1,2,3}, {2}, {2,3}; n is the largest that fits a block, so the
  angles differ) and block OFT (order 1, 12 blocks of 32: a full orthogonal matrix per block);
- depth: the first 1, 3 or 7 rounds of the circuit instead of all of them;
- layout: the brick circuit instead of planes;
- orthogonality: the same blocks and compounds of A = I + T, T strictly upper triangular with as many free numbers
  as the circuit has angles (quic_edge.givens.unconstrained), so the matrix is no longer orthogonal;
- blocks: 1, 2, 4 or 6 blocks per layer instead of 3, n the largest that fits a block and keeps the angles at most
  4,096 (18x fewer than LoRA r8), so the angle count hardly moves while the rotation's reach and its multiply-adds
  per token do (their cost against LoRA: benchmarks/blocks.py);
- targets: query/key instead of query/value (the attention scores change, the values do not), for QuIC (1,2) and,
  so that the share of LoRA's gain compares like with like, for LoRA r8 too; and value with attention's output
  projection, or with the feed-forward block's, instead of the query (the same angles, rotations that reach the
  residual stream); and both output projections, alone or with the value (two blocks of n = 15 per layer there, so
  the angles stay 3,780), each with LoRA r8 on the same layers as its control.
The paper (arXiv 2502.06916, STS-B, its own encoder) reports C1 91.68, C1+C2 88.85, C1+C2+C3 88.48 and about 40 for
sets without C1; the table puts those numbers beside ours.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from quic_edge.bench.ablation_rows import ROWS
from quic_edge.bench.common import ADAPTERS
from quic_edge.bench.compare import CompareSettings, compare

HIDDEN = 384  # MiniLM's query/value width: what each configuration's n is computed from

GROUP = dict((name, group) for group, name in ROWS)
# The paper's STS-B results for the sets of orders it ablates (its Table on Hamming-weight subsets).
PAPER_STSB = {"quic1-n15": "91.68 (C1)", "quic12": "88.85 (C1+C2)", "quic123": "88.48 (C1+C2+C3)",
              "quic2": "about 40 (no C1)", "quic23": "about 40 (no C1)"}


@dataclass(frozen=True)
class AblationSettings(CompareSettings):
    adapters: tuple[str, ...] = tuple(name for _, name in ROWS)
    QUICK: ClassVar[dict[str, Any]] = CompareSettings.QUICK | dict(adapters=("head", "quic12", "quic2", "quic12-free"))


def run_ablation(s: AblationSettings, progress: bool = True) -> dict[str, Any]:
    """Train (or reuse) every configuration's runs, then write ablation.{json,md,png} to s.out; return the summary."""
    from quic_edge.bench.report import write_ablation

    unknown = sorted(set(s.adapters) - set(GROUP))
    if unknown:
        raise ValueError(f"adapters: not in the ablation {unknown}; the ablation's configurations are {list(GROUP)}")
    start = time.perf_counter()
    result = compare(s, progress)
    summary = {"settings": asdict(s), "head_lr": result["head_lr"], "total_seconds": time.perf_counter() - start,
               "trained": result["trained"], "runs": result["runs"],  # every run, so --runs-from can reuse them
               "rows": [ablation_row(name, result) for _, name in ROWS if name in s.adapters]}
    write_ablation(Path(s.out), summary)
    return summary


def circuit(name: str) -> dict[str, Any]:
    """What a configuration is, in the table's words: blocks, n, orders, depth, layout, matrix."""
    config = ADAPTERS[name].config
    if config is None:
        return {"blocks": 0, "n": 0, "orders": "-", "depth": "-", "layout": "-", "matrix": "-"}
    return {"blocks": config.blocks, "n": config.block_dim(HIDDEN), "orders": list(config.orders),
            "depth": config.depth or "full", "layout": config.layout, "matrix": config.matrix}


def ablation_row(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """One configuration: its circuit, its numbers, and per task the chosen rate, test accuracy over seeds, the points
    over head only and the share of LoRA's gain (when head and LoRA were run)."""
    row, head = result["adapters"][name], result["adapters"].get("head")
    tasks = {}
    for task, t in row["tasks"].items():
        entry = {"lr": t["lr"], "head_lr": t["head_lr"], "test": t["test"], "val_selection": t["val_selection"]}
        if head is not None:
            entry["points_over_head"] = 100 * (t["test"]["mean"] - head["tasks"][task]["test"]["mean"])
        captured = result.get("gain_captured", {}).get(name, {}).get(task)
        if captured is not None:
            entry["share_of_lora_gain"] = captured["ratio"]
            entry["share_per_seed"] = captured["per_seed"]
            entry["share_interval"] = captured.get("interval")
            if "same_layers" in captured:
                entry["share_same_layers"] = captured["same_layers"]
        tasks[task] = entry
    return {"group": GROUP[name], "adapter": name, "title": row["title"], "adapter_numbers": row["adapter_numbers"],
            "trainable": row["trainable"], **circuit(name), "paper_stsb": PAPER_STSB.get(name, ""), "tasks": tasks}

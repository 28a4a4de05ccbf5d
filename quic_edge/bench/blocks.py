"""What the block count costs and buys: QuIC (1,2) with 1, 2, 3, 4 or 6 blocks per layer at about the same angles.

    .venv/bin/python benchmarks/blocks.py [--rounds 3] [--accuracy benchmarks/results/ablation.json]

With the angles held near 3,800 (at most 4,096, 18x fewer than LoRA r8's 73,728), fewer, larger blocks reach further
across the features but pay more multiply-adds per token: a block's rotation costs sum over k of C(n, k)^2 per token
(QuIC (1,2), 3 blocks of n = 15: 3 x (15^2 + 105^2) = 33,750; LoRA r8 on a 384-wide layer: 2 x 384 x 8 = 6,144).
Each configuration and LoRA r8 are measured on the ONNX Runtime and ExecuTorch device loops exactly as `device_memory`
measures them (MiniLM, batch 8 x 64, AdamW, the recompute rewrite, ORT's CPU arena on; fresh processes, rounds in
rotated order; median and min-max; ratios to LoRA r8 taken within each round and runtime). `--accuracy` takes
ablation JSONs (`bench ablation`, which trains the blocks group) and puts each configuration's test accuracy and share
of LoRA's gain beside its cost.
Writes blocks.{json,md,png}.
"""

from __future__ import annotations

from math import comb
from pathlib import Path
from typing import Any

from quic_edge.bench.ablation import HIDDEN
from quic_edge.bench.common import ADAPTERS
from quic_edge.bench.device_memory import (
    ET_STEPS,
    STEPS,
    cost_cells,
    cost_command,
    measure_alternating,
    merge_accuracy,
    range_text,
    ratios_within_rounds,
)

CONFIGS = ("quic12-b1", "quic12-b2", "quic12", "quic12-b4", "quic12-b6")
BASELINE = "lora8"
RUNTIMES = ("ort", "executorch")
RUNTIME_NAMES = {"ort": "ONNX Runtime", "executorch": "ExecuTorch"}


def rotation_macs(adapter: str) -> int:
    """Multiply-adds per token and adapted layer of the adapter's forward product (LoRA: x A then (x A) B)."""
    spec = ADAPTERS[adapter]
    if spec.kind == "lora":
        return 2 * HIDDEN * spec.rank
    config = spec.config
    n = config.block_dim(HIDDEN)
    return config.blocks * sum(comb(n, k) ** 2 for k in config.orders)


def run(rounds: int, root: Path, progress: bool = True) -> dict[str, Any]:
    names = [BASELINE, *CONFIGS]
    rows = []
    for runtime in RUNTIMES:
        runs = measure_alternating(names, rounds, root, progress, runtime)
        lora = runs[BASELINE]
        for name in names:
            ms, spec = runs[name], ADAPTERS[name]
            rows.append({"runtime": runtime, "adapter": name, "title": spec.title,
                         "blocks": spec.config.blocks if spec.config else 0,
                         "n": spec.config.block_dim(HIDDEN) if spec.config else 0,
                         "macs_per_token": rotation_macs(name), **cost_cells(ms),
                         "planned_mib": ms[-1]["runtime_memory"].get("planned_total_mib"),
                         "over_lora": ratios_within_rounds(ms, lora)})
    return {"settings": {"model": "minilm", "batch": 8, "seq_len": 64, "steps": {"ort": STEPS, "executorch": ET_STEPS},
                         "rounds": rounds, "optimizer": "adamw", "arena": "on", "recompute": True}, "rows": rows}


def add_accuracy(results: dict[str, Any], ablations: list[dict[str, Any]]) -> None:
    """Each configuration's test accuracy and share of LoRA's gain from ablation summaries, per task: the summaries'
    tasks add up (one per task is the usual case), and where two have the same task the later one's figures win."""
    for ablation in ablations:
        found = {row["adapter"]: row for row in ablation["rows"]}
        for row in results["rows"]:
            if row["adapter"] in found:
                merge_accuracy(row, found[row["adapter"]]["tasks"])


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [f"MiniLM, batch {s['batch']} x {s['seq_len']}, AdamW, the device loops, {s['rounds']} rounds of fresh processes "
             "(median, min-max; ratios to LoRA r8 within each round and runtime). Multiply-adds: of the adapter's "
             "forward product, per token and adapted layer. Accuracy: the ablation's runs (3 seeds).", "",
             "| runtime | adapter | blocks | n | trainable | multiply-adds / token | peak MiB | peak / LoRA | step ms | "
             "step / LoRA | test accuracy (share of LoRA's gain) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        ratio = row["over_lora"]
        accuracy = "; ".join(f"{task} {a['mean']:.3f} ± {a['std']:.3f}" + ("" if a["share"] is None else
                                                                          f" ({a['share']:.2f})")
                             for task, a in row.get("accuracy", {}).items()) or "-"
        cells = [RUNTIME_NAMES[row["runtime"]], row["title"], row["blocks"] or "-", row["n"] or "-", f"{row['trainable']:,}",
                 f"{row['macs_per_token']:,}", range_text(row["peak_rss_mib"], ".1f"), range_text(ratio["peak"], ".3f"),
                 range_text(row["median_step_ms"], ".0f"), range_text(ratio["step"], ".2f"), accuracy]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Step time against LoRA r8's (x) and test accuracy (y) per configuration: the trade a user picks from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    names = list(dict.fromkeys(row["adapter"] for row in results["rows"]))
    for row in results["rows"]:
        step, color = row["over_lora"]["step"], f"C{names.index(row['adapter'])}"
        for a in row.get("accuracy", {}).values():
            ax.errorbar([step["median"]], [a["mean"]], yerr=[a["std"]],
                        xerr=[[step["median"] - step["min"]], [step["max"] - step["median"]]],
                        marker="o" if row["runtime"] == "ort" else "s", capsize=3, color=color, alpha=0.8,
                        label=row["title"] if row["runtime"] == RUNTIMES[0] else None)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("median step / LoRA r8's, 8 x 64 (circles: ONNX Runtime, squares: ExecuTorch)")
    ax.set_ylabel(f"test accuracy, {', '.join(sorted({t for r in results['rows'] for t in r.get('accuracy', {})}))}")
    ax.set_title("QuIC (1,2) block count at about 3,800 angles: cost against accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    cost_command(__doc__, "blocks", "runs/bench-blocks-cost", run, markdown, plot, add_accuracy,
                 "JSONs of `bench ablation` runs that trained the blocks group (a later file's figures win)")

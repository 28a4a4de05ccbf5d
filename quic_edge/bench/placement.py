"""Adapters on the top k layers only: training memory and step time against k, beside accuracy (issue 11's Pareto).

    .venv/bin/python benchmarks/placement.py [--rounds 3] [--accuracy benchmarks/results/compare.json runs/placement.json]

With adapters on MiniLM's top k layers, nothing below layer 6 - k trains, so ONNX Runtime's gradient builder stops the
backward pass there and the layers below keep nothing for it: memory and step time fall with k. QuIC (1,2) and LoRA r8
(query and value) for k = 1..5 (quic_edge.bench.common.PLACEMENT_K), with head only (k = 0) and the full placement
(k = 6) of each, on the ONNX Runtime device loop exactly as `device_memory` measures them (MiniLM, batch 8 x 64,
AdamW, the recompute rewrite, CPU arena on; fresh processes, rounds in rotated order, median and min-max, QuIC / LoRA
per round at the same k). `--accuracy` takes the JSON of a `bench compare` run over the same adapters (the rates it
chose on validation) and puts its test accuracy beside the cost. Writes placement.{json,md,png}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quic_edge.bench.common import LAYERS, PLACEMENT_K
from quic_edge.bench.device_memory import (
    STEPS,
    cost_cells,
    cost_command,
    measure_alternating,
    merge_accuracy,
    plot_spread,
    range_text,
    ratios_within_rounds,
)

FAMILIES = ("quic12", "lora8")


def name_at(family: str, k: int) -> str:
    """The adapter with `family` on the top k layers (k = 0: head only; k = 6: the family as it is)."""
    return "head" if k == 0 else family if k == LAYERS else f"{family}-top{k}"


def run(rounds: int, root: Path, progress: bool = True) -> dict[str, Any]:
    ks = (0, *PLACEMENT_K, LAYERS)
    names = list(dict.fromkeys(name_at(f, k) for k in ks for f in FAMILIES))
    runs = measure_alternating(names, rounds, root, progress)
    rows = []
    for k in ks:
        row: dict[str, Any] = {"k": k}
        for family in FAMILIES:
            row[family] = {"adapter": name_at(family, k), **cost_cells(runs[name_at(family, k)])}
        row["quic_over_lora"] = ratios_within_rounds(runs[name_at("quic12", k)], runs[name_at("lora8", k)])
        rows.append(row)
    return {"settings": {"model": "minilm", "batch": 8, "seq_len": 64, "steps": STEPS, "rounds": rounds,
                         "optimizer": "adamw", "arena": "on", "recompute": True}, "rows": rows}


def add_accuracy(results: dict[str, Any], compares: list[dict[str, Any]]) -> None:
    """Test accuracy (mean, std over seeds, the rate chosen on validation) of each placement the compare runs trained,
    per task, into the rows: the runs' tasks add up, and where two have the same task the later one's figures win."""
    for compare in compares:
        for row in results["rows"]:
            for family in FAMILIES:
                found = compare["adapters"].get(row[family]["adapter"])
                if found:
                    merge_accuracy(row[family], found["tasks"])


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [f"MiniLM, batch {s['batch']} x {s['seq_len']}, AdamW, ONNX Runtime device loop, {s['rounds']} rounds of fresh "
             "processes (median, min-max); k = adapted layers from the top (0: head only, 6: every layer).", "",
             "| k | QuIC (1,2) trainable | QuIC peak MiB | LoRA r8 trainable | LoRA peak MiB | QuIC / LoRA peak | "
             "QuIC step ms | LoRA step ms | QuIC / LoRA step | QuIC test acc | LoRA test acc |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        q, lo, ratio = row["quic12"], row["lora8"], row["quic_over_lora"]
        lines.append(f"| {row['k']} | {q['trainable']:,} | {range_text(q['peak_rss_mib'], '.1f')} | {lo['trainable']:,} | "
                     f"{range_text(lo['peak_rss_mib'], '.1f')} | {range_text(ratio['peak'], '.3f')} | "
                     f"{range_text(q['median_step_ms'], '.0f')} | {range_text(lo['median_step_ms'], '.0f')} | "
                     f"{range_text(ratio['step'], '.2f')} | {_accuracy(q)} | {_accuracy(lo)} |")
    return "\n".join(lines) + "\n"


def _accuracy(cell: dict[str, Any]) -> str:
    found = cell.get("accuracy")
    if not found:
        return "-"
    return "; ".join(f"{t} {a['mean']:.3f} ± {a['std']:.3f} (n={a['n']})" for t, a in found.items())


def plot(results: dict[str, Any], path: Path) -> None:
    """Peak RSS and step time against k, QuIC and LoRA, error bars min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["k"] for r in results["rows"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "peak_rss_mib", "peak RSS (MiB)"), (axes[1], "median_step_ms", "median step (ms)")):
        for family, label in (("quic12", "QuIC (1,2)"), ("lora8", "LoRA r8")):
            plot_spread(ax, ks, [r[family][key] for r in results["rows"]], label)
        ax.set_xlabel("adapted layers from the top (0 = head only)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].axhline(200, color="grey", linestyle="--", linewidth=1, label="200 MiB target")
    axes[0].legend()
    fig.suptitle("MiniLM, batch 8 x 64, ONNX Runtime device loop: cost of training against placement")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    cost_command(__doc__, "placement", "runs/bench-placement-memory", run, markdown, plot, add_accuracy,
                 "JSONs of `bench compare --json` runs over the placements")

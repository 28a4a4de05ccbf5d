"""Reports of the benchmarks: JSON, a markdown table and PNG plots in one results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _acc(a: dict[str, float]) -> str:
    return f"{a['mean']:.3f} ± {a['std']:.3f}"


def write_compare(folder: Path, summary: dict[str, Any], stem: str = "compare") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    (folder / f"{stem}.md").write_text(compare_markdown(summary))
    plot_accuracy(summary, folder / f"{stem}_accuracy.png")
    plot_memory(summary, folder / f"{stem}_memory.png")


def compare_markdown(summary: dict[str, Any]) -> str:
    s, rows, counts = summary["settings"], summary["adapters"], summary["counts"]
    tasks = s["tasks"]
    lines = [
        "# QuIC against block OFT, LoRA, head-only and full fine-tuning (one run)",
        "",
        f"Base all-MiniLM-L6-v2, frozen int8 (full fine-tuning: fp32, all trainable); adapters on {'/'.join(counts['targets'])}; "
        f"ONNX Runtime device loop, AdamW, batch {s['batch_size']} x sequence {s['seq_len']}. Accuracy: {s['n_train']} training "
        f"and {s['n_test']} held-out examples per task, {s['epochs']} epochs, seeds {list(s['seeds'])} (a seed picks the "
        "split, the batch order and the initial head / LoRA A), mean ± sample std. Memory and step time: "
        f"{s['memory_rounds']} fresh torch-free process(es) per adapter, rounds in rotated order, on the {tasks[0]} bundle, "
        "20 steps each, CPU arena on, mem pattern off; the highest peak per phase and the median of the per-process "
        "median step times.",
        "",
        "| adapter | lr | trainable (adapter + head) | bundle MB | checkpoint MB | delta bytes | peak RSS load / first / "
        "steady (MiB) | median step ms | " + " | ".join(f"acc {t}" for t in tasks) + " |",
        "|---" * (8 + len(tasks)) + "|",
    ]
    for r in rows.values():
        rss = r["peak_rss_mib"]
        lines.append(
            f"| {r['title']} | {r['lr']:g} | {r['adapter_numbers']:,} + {r['trainable'] - r['adapter_numbers']:,} | "
            f"{r['bundle_bytes'] / 1e6:.1f} | {r['checkpoint_bytes'] / 1e6:.1f} | {r['delta_bytes']:,} | "
            f"{rss['load']:.0f} / {rss['first_step']:.0f} / {rss['steady']:.0f} | {r['median_step_ms']:.0f} | "
            + " | ".join(_acc(r["accuracy"][t]) for t in tasks) + " |"
        )
    lines += ["", f"LoRA rank {counts['lora_rank']} built with PEFT: {counts['lora_built']:,} numbers on the same targets, "
              f"{counts['lora_all_linear_built']:,} on all linear layers of the encoder (head excluded).", "",
              "| QuIC | angles | LoRA same targets / angles | LoRA all linear / angles |", "|---|---|---|---|"]
    for name, c in counts.items():
        if isinstance(c, dict) and "angles" in c:
            lines.append(f"| {name} | {c['angles']:,} | {c['ratio_lora']:.1f}x | {c['ratio_lora_all_linear']:.1f}x |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for t in summary["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"| {t['target']} | {value} | {'n/a' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    lines += ["", f"Total time {summary['total_seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def accuracy_panels(points: list[tuple[str, int, dict[str, dict]]], tasks: list[str], xlabel: str, path: Path,
                    markers: list[str] | None = None) -> None:
    """Held-out accuracy (mean, min..max over seeds) against a count on a log axis, one panel per task.

    points: (label, count, accuracy by task) per adapter or config."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, (label, x, accuracy) in enumerate(points):
            a = accuracy[task]
            ax.errorbar(max(x, 1), a["mean"], yerr=[[a["mean"] - a["min"]], [a["max"] - a["mean"]]],
                        fmt=markers[i] if markers else "o", capsize=3, label=label)
        ax.set(xscale="log", xlabel=xlabel, ylabel="held-out accuracy", title=task)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize="x-small", ncol=2 if len(points) > 6 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy(summary: dict[str, Any], path: Path) -> None:
    points = [(r["title"], r["trainable"], r["accuracy"]) for r in summary["adapters"].values()]
    accuracy_panels(points, summary["settings"]["tasks"], "trainable numbers, adapter + head (log)", path)


def plot_memory(summary: dict[str, Any], path: Path) -> None:
    """Peak RSS per phase of the device loop, per adapter."""
    plt = _plt()
    rows = summary["adapters"]
    phases = ("load", "first_step", "steady")
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3, 4))
    width = 0.8 / len(phases)
    for i, phase in enumerate(phases):
        ax.bar([x + (i - 1) * width for x in range(len(rows))], [r["peak_rss_mib"][phase] for r in rows.values()], width,
               label=phase.replace("_", " "))
    ax.set_xticks(range(len(rows)), [r["title"].split(" = ")[0] for r in rows.values()], rotation=20, fontsize="small")
    ax.set(ylabel="peak RSS (MiB)", title="Device loop (ONNX Runtime) peak RSS per phase")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_ablation(folder: Path, summary: dict[str, Any], stem: str = "ablation") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    (folder / f"{stem}.md").write_text(ablation_markdown(summary))
    plot_ablation(summary, folder / f"{stem}.png")


def ablation_markdown(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    tasks = s["tasks"]
    lines = [
        "# QuIC ablation: orders, circuit depth, layout",
        "",
        f"Eager PyTorch (the same QuICLinear the exporters trace), all-MiniLM-L6-v2 frozen int8, query/value, AdamW lr "
        f"{s['lr']:g} (angles and head), batch {s['batch_size']} x sequence {s['seq_len']}, {s['n_train']} training and "
        f"{s['n_test']} held-out examples, {s['epochs']} epochs, seeds {list(s['seeds'])}; mean ± sample std.",
        "",
        "| group | config | blocks | n | depth | angles | " + " | ".join(f"acc {t}" for t in tasks) + " |",
        "|---" * (6 + len(tasks)) + "|",
    ]
    for r in summary["configs"]:
        lines.append(f"| {r['group']} | {r['title']} | {r['blocks']} | {r['n']} | {r['depth']} | {r['angles']:,} | "
                     + " | ".join(_acc(r["accuracy"][t]) for t in tasks) + " |")
    lines += ["", f"Total time {summary['total_seconds'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def plot_ablation(summary: dict[str, Any], path: Path) -> None:
    markers = {"orders": "o", "depth": "s", "layout": "^", "reference": "x"}
    rows = summary["configs"]
    accuracy_panels([(r["title"], r["angles"], r["accuracy"]) for r in rows], summary["settings"]["tasks"],
                    "trainable angles (log; head only drawn at 1)", path, [markers.get(r["group"], "o") for r in rows])

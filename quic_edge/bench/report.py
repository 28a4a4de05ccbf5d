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


def _interval(interval: dict[str, Any] | None) -> str:
    """A share's bootstrap interval over seeds (quic_edge.bench.compare.share_interval), for a table cell."""
    if not interval or interval["low"] is None:
        return ""
    nothing = interval["no_lora_gain"]
    return (f"({interval['level']:.0%}: {interval['low']:.2f} to {interval['high']:.2f}"
            + (f"; LoRA gains nothing in {nothing:.0%} of draws" if nothing else "") + ")")


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def schedule_text(s: dict[str, Any]) -> str:
    """How the learning rate moved over a run's steps, as the tables' introductions say it."""
    from quic_edge.bench.common import WARMUP_SHARE

    if s.get("schedule", "constant") == "linear":
        return (f"with the learning rate warmed up over the first {WARMUP_SHARE:.0%} of steps, then decayed linearly to 0 "
                "(--schedule linear)")
    return "at a constant learning rate"


def search_text(s: dict[str, Any]) -> str:
    """Which rates a search tried, as the tables' introductions say it."""
    if s.get("refine"):
        return ("a 1-3-10 ladder of rates, then the rates halfway (geometric) between the best and its neighbours "
                "(--refine)")
    return "a 1-3-10 ladder of rates"


def selection_text(s: dict[str, Any]) -> str:
    """On which seeds' validation splits the searches chose, as the tables' introductions say it."""
    chosen_on = s["seeds"][: s.get("select_seeds", 1)]
    if len(chosen_on) == 1:
        return f"seed {chosen_on[0]}"
    return f"the mean over seeds {', '.join(map(str, chosen_on))} (--select-seeds {len(chosen_on)})"


def head_text(s: dict[str, Any]) -> str:
    """At which rate an adapter's head trained, as the tables' introductions say it."""
    chosen = "the head at the rate head-only training chose on validation"
    mode = s.get("head_search")  # True in results written before there was a choice: "beside"
    if mode == "ladder":
        return (f"{chosen} or, where the adapter's validation was better (--head-search ladder), at another rate of "
                "head-only's 1-3-10 ladder, its own rate then searched again beside its choice at that head rate (the "
                "tables name the head rate then)")
    if mode:
        return (f"{chosen} or, where the adapter's validation was better (--head-search), at the rate head-only's "
                "search tried just below or above it (the tables name it then)")
    return chosen


def rate_cell(choice: dict[str, Any], head_lr: float | None) -> str:
    """A chosen rate, and the head's where it is not head-only's (--head-search)."""
    other = choice.get("head_lr")
    return f"{choice['lr']:g}" + ("" if other is None or other == head_lr else f", head {other:g}")


def compare_markdown(summary: dict[str, Any]) -> str:
    s, rows, counts = summary["settings"], summary["adapters"], summary["counts"]
    tasks, targets = s["tasks"], "/".join(counts["targets"])
    lines = [
        "# The suite: QuIC against block OFT, LoRA, head-only and full fine-tuning (one run)",
        "",
        f"Base all-MiniLM-L6-v2, frozen int8 (full fine-tuning: fp32, all trainable); adapters on {targets} unless a "
        "row names other layers; "
        f"ONNX Runtime device loop, AdamW, batch {s['batch_size']} x sequence {s['seq_len']}, {s['epochs']} epochs of "
        f"{s['n_train']} training examples {schedule_text(s)}; {s['n_val']} validation examples choose the "
        f"learning rates ("
        f"{selection_text(s)}), {s['n_test']} test examples are reported over seeds {list(s['seeds'])} (mean ± sample std). "
        f"Each adapter trains {head_text(s)}, and searches its own rate over {search_text(s)}.",
        "",
        "| adapter | trainable (adapter + head) | " + " | ".join(f"{t}: test acc (rate)" for t in tasks) + " |",
        "|---" * (2 + len(tasks)) + "|",
    ]
    for r in rows.values():
        cells = [f"{_acc(r['tasks'][t]['test'])} ({rate_cell(r['tasks'][t], summary['head_lr'][t])})" for t in tasks]
        lines.append(f"| {r['title']} | {r['adapter_numbers']:,} + {r['trainable'] - r['adapter_numbers']:,} | "
                     + " | ".join(cells) + " |")
    gaps = summary.get("gaps", {})
    if all(gaps.get(t) for t in tasks):
        lines += ["", "Does each task need adaptation? Head only against full fine-tuning (test means):", "",
                  "| task | head only | full fine-tuning | gap (points) |", "|---|---|---|---|"]
        lines += [f"| {t} | {gaps[t]['head']:.3f} | {gaps[t]['full']:.3f} | {gaps[t]['gap_points']:+.1f} |" for t in tasks]
    if summary.get("gain_captured"):
        lines += ["", "Share of LoRA r8's gain over head only that QuIC captures, (acc_QuIC - acc_head) / (acc_LoRA - "
                  "acc_head), on test means (per seed in brackets; in parentheses a paired bootstrap interval over seeds, "
                  "quic_edge.bench.compare.share_interval); whether the chosen rate is at least head only on "
                  "validation; and where the run has LoRA r8 on a QuIC row's own layers (another placement), the share "
                  "of that LoRA's gain after it:", "", "| QuIC | " + " | ".join(tasks) + " |", "|---" * (1 + len(tasks)) + "|"]
        for name, per_task in summary["gain_captured"].items():
            cells = []
            for t in tasks:
                g = per_task[t]
                seeds = ", ".join(_ratio(x) for x in g["per_seed"])
                cells.append(f"{_ratio(g['ratio'])} [{seeds}] {_interval(g.get('interval'))}"
                             f"{'' if g['val_at_least_head'] else ' (below head on val)'}"
                             + same_layers_text(g.get("same_layers")))
            lines.append(f"| {rows[name]['title']} | " + " | ".join(cells) + " |")
    lines += ["", f"LoRA rank {counts['lora_rank']} built with PEFT: {counts['lora_built']:,} numbers on {targets}, "
              f"{counts['lora_all_linear_built']:,} on all linear layers of the encoder (head excluded).", "",
              f"| QuIC | angles | LoRA on {targets} / angles | LoRA all linear / angles |", "|---|---|---|---|"]
    for name, c in counts.items():
        if isinstance(c, dict) and "angles" in c:
            lines.append(f"| {name} | {c['angles']:,} | {c['ratio_lora']:.1f}x | {c['ratio_lora_all_linear']:.1f}x |")
    lines += ["", f"Learning-rate searches (validation accuracy per rate, {selection_text(summary['settings'])}):", ""]
    for r in rows.values():
        for t in tasks:
            tried = ", ".join(f"{x['lr']:g}: {x['val']:.3f}" for x in r["tasks"][t]["search"])
            heads = r["tasks"][t].get("head_search")
            if heads:
                at, rate = r["tasks"][t].get("search_at_head"), r["tasks"][t].get("head_search_lr", r["tasks"][t]["lr"])
                tried += f"; at {rate:g}, head " + ", ".join(f"{x['head_lr']:g}: {x['val']:.3f}" for x in heads)
                if at:
                    tried += (f"; at head {r['tasks'][t]['head_lr']:g}, " + ", ".join(f"{x['lr']:g}: {x['val']:.3f}"
                                                                                    for x in at))
            lines.append(f"- {r['title']}, {t}: {tried}")
    lines += ["", time_text(summary), ""]
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
    axes[0][-1].legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside, not over, the points
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_accuracy(summary: dict[str, Any], path: Path) -> None:
    points = [(r["title"], r["trainable"], {t: v["test"] for t, v in r["tasks"].items()})
              for r in summary["adapters"].values()]
    accuracy_panels(points, summary["settings"]["tasks"], "trainable numbers, adapter + head (log)", path)


def same_layers_text(same: dict[str, Any] | None) -> str:
    """"; of <LoRA on the same layers>'s gain 0.80 (90%: ...)" for a share cell, when the run had that LoRA."""
    if not same:
        return ""
    title = same["title"]
    possessive = f"{title}'" if title.endswith("s") else f"{title}'s"  # "... both output projections' gain"
    return f"; of {possessive} gain {_ratio(same['ratio'])} {_interval(same.get('interval'))}"


def write_ablation(folder: Path, summary: dict[str, Any], stem: str = "ablation") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    (folder / f"{stem}.md").write_text(ablation_markdown(summary))
    plot_ablation(summary, folder / f"{stem}.png")


def ablation_markdown(summary: dict[str, Any]) -> str:
    s, rows = summary["settings"], summary["rows"]
    tasks = s["tasks"]
    lines = [
        "# The paper's ablation on the suite: orders, circuit depth, layout, orthogonality, blocks, targets",
        "",
        f"Each configuration is one change away from QuIC (1,2) (3 blocks, n = 15, the full planes circuit; the blocks "
        f"group changes the block count and with it n, at about the same angles), trained as "
        f"`bench compare` trains: all-MiniLM-L6-v2 frozen int8, query/value (the targets group names its own layers), "
        f"ONNX Runtime device loop, AdamW, batch "
        f"{s['batch_size']} x sequence {s['seq_len']}, {s['epochs']} epochs of {s['n_train']} examples "
        f"{schedule_text(s)}; its own rate (searched over {search_text(s)}) "
        f"chosen on {s['n_val']} validation examples ({selection_text(s)}), {head_text(s)}; "
        f"{s['n_test']} test examples over seeds {list(s['seeds'])} (mean ± sample std). Points: over head only; "
        "share: of LoRA r8's gain over head only, (acc - head) / (LoRA - head), on test means, with a paired bootstrap "
        "interval over seeds (quic_edge.bench.compare.share_interval), and where the run has LoRA r8 on a row's own "
        "layers (another placement), the share of that LoRA's gain after it. The paper's column is "
        "its STS-B score (another task and encoder): compare the ordering, not the values.",
        "",
        "| group | config | blocks | n | depth | angles | "
        + " | ".join(f"{t}: test acc (rate) | points | share" for t in tasks) + " | paper, STS-B |",
        "|---" * (7 + 3 * len(tasks)) + "|",
    ]
    for r in rows:
        cells = []
        for t in tasks:
            a = r["tasks"][t]
            points = a.get("points_over_head")
            cells += [f"{_acc(a['test'])} ({rate_cell(a, summary['head_lr'][t])})", "" if points is None else f"{points:+.1f}",
                      (f"{_ratio(a['share_of_lora_gain'])} {_interval(a.get('share_interval'))}".strip()
                       + same_layers_text(a.get("share_same_layers")))
                      if "share_of_lora_gain" in a else ""]
        lines.append(f"| {r['group']} | {r['title']} | {r['blocks']} | {r['n']} | {r['depth']} | "
                     f"{r['adapter_numbers']:,} | " + " | ".join(cells) + f" | {r['paper_stsb']} |")
    lines += ["", time_text(summary), ""]
    return "\n".join(lines)


def plot_ablation(summary: dict[str, Any], path: Path) -> None:
    markers = {"orders": "o", "depth": "s", "layout": "^", "orthogonality": "D", "blocks": "P", "targets": "v", "reference": "x"}
    rows = summary["rows"]
    accuracy_panels([(r["title"], r["adapter_numbers"], {t: a["test"] for t, a in r["tasks"].items()}) for r in rows],
                    summary["settings"]["tasks"], "trained adapter numbers (log; head only drawn at 1)", path,
                    [markers.get(r["group"], "o") for r in rows])


def time_text(summary: dict[str, Any]) -> str:
    """The command's own wall time, and what its runs cost to train: runs reused from the work folder take no wall time
    but count their own training time, so a report built from earlier runs still says what they cost."""
    text = f"Total time {summary['total_seconds'] / 60:.1f} min"
    trained = summary.get("trained")
    if not trained:
        return text + " (runs reused from earlier runs take none)."
    return (text + f" (runs reused from earlier runs take none); its {trained['runs']} runs trained for "
            f"{trained['seconds'] / 60:.1f} min of one process each, summed over the runs, reused ones included.")

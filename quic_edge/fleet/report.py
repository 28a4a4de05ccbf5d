"""The fleet simulation's report: summary.md (tables per round), accuracy.png, results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

NAMES = {"quic": "QuIC + head", "lora": "LoRA r8 + head"}


def write_report(out: Path, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    plot(out / "accuracy.png", summary)
    (out / "summary.md").write_text(markdown(summary))


def plot(path: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for adapter, history in summary["federations"].items():
        rounds = [0] + [e["round"] for e in history["rounds"]]
        ax.plot(rounds, [history["initial_global_accuracy"]] + [e["global_accuracy"] for e in history["rounds"]],
                marker="o", label=f"{NAMES.get(adapter, adapter)}: global, held-out")
        ax.plot(rounds[1:], [e["personal_accuracy"] for e in history["rounds"]], marker="s", linestyle="--",
                label=f"{NAMES.get(adapter, adapter)}: personal (after local fine-tune)")
    if "centralized" in summary:
        acc = summary["centralized"]["accuracy"]
        ax.plot(range(len(acc)), acc, marker="^", color="black", label="QuIC centralized (union, same steps)")
    s = summary["settings"]
    ax.set(xlabel="round", ylabel="accuracy", ylim=(0, 1.02),
           title=f"Fleet: {s['clients']} clients, BBC topics (Dirichlet alpha {s['alpha']}), {s['runtime']} device loop")
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    lines = [
        f"# Fleet personalization: {s['clients']} clients, {s['rounds']} rounds ({s['runtime']})",
        "",
        f"Base: {s['model']} (frozen, int8). Data: BBC News, 5 topics; each client {s['n_train']} training and "
        f"{s['n_test']} held-out articles with its own topic mix (Dirichlet alpha {s['alpha']}, seed {s['seed']}); "
        f"global held-out set of {s['heldout']} articles disjoint from all clients. Each round every client runs the "
        f"device loop (one bundle for all, batch {s['batch_size']} x seq {s['seq_len']}, 1 epoch, AdamW lr "
        f"QuIC {s['lr_quic']} / LoRA {s['lr_lora']}); the server validates and averages by example count. Personal "
        "accuracy: the global delta fine-tuned 1 epoch on the client's own examples, on its own held-out articles.",
        "",
    ]
    for adapter, history in summary["federations"].items():
        lines += _federation_table(adapter, history)
    if "centralized" in summary:
        c = summary["centralized"]
        lines += [f"Centralized (QuIC, one loop on the union of {c['examples']} training examples, {c['steps']} steps "
                  f"in all, as many as the federation): held-out accuracy per round "
                  + ", ".join(f"{a:.3f}" for a in c["accuracy"]) + f" ({c['seconds']:.0f} s).", ""]
    if summary.get("rotation_gap"):
        lines += _gap_table(summary["rotation_gap"])
    lines += [f"Total {summary['seconds']:.0f} s.", "", "![accuracy](accuracy.png)", ""]
    return "\n".join(lines)


def _federation_table(adapter: str, history: dict[str, Any]) -> list[str]:
    lines = [
        f"## {NAMES.get(adapter, adapter)} ({_count(history)} trainable numbers)",
        "",
        f"Global accuracy before round 1: {history['initial_global_accuracy']:.3f}.",
        "",
        "| round | global acc (held-out) | personal acc (mean) | global acc on clients' own sets | bytes up / client | "
        "bytes down / client | accepted | rejected | train loss | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in history["rounds"]:
        rejected = "; ".join(f"{c}: {r[:60]}" for c, r in e["rejected"]) or "0"
        lines.append(
            f"| {e['round']} | {_f(e['global_accuracy'])} | {_f(e['personal_accuracy'])} | {_f(e['global_accuracy_local'])} | "
            f"{e['bytes_up_per_client']:.0f} | {e['bytes_down_per_client']:.0f} | {len(e['accepted'])} | {rejected} | "
            f"{_f(e['train_loss'])} | {e['seconds']:.0f} |"
        )
    if history.get("global_delta_bytes"):
        lines += ["", f"Final global delta file: {history['global_delta_bytes']} bytes."]
    return lines + [""]


def _gap_table(gaps: dict[str, Any]) -> list[str]:
    lines = [
        "## Averaging angles vs averaging rotations (accepted QuIC updates of each round)",
        "",
        "Per adapted block: A(t_bar) from the averaged angles, M = sum w_i A(t_i), P = nearest rotation to M. "
        "Sizes are Frobenius norms; relative = gap / mean ||A(t_i) - I||.",
        "",
        "| round | blocks | max abs angle | mean rotation size | max gap M | max relative gap M | max gap P "
        "| max relative gap P |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, g in gaps.items():
        lines.append(
            f"| {r} | {g['blocks']} | {g['max_abs_angle']:.3g} | {g['mean_rotation_size']:.3g} | "
            f"{g['max_gap_mean_rotation']:.3g} | {g['max_relative_gap_mean_rotation']:.3g} | {g['max_gap_polar']:.3g} | "
            f"{g['max_relative_gap_polar']:.3g} |"
        )
    return lines + [""]


def _count(history: dict[str, Any]) -> int:
    return sum(math.prod(shape) for shape in history["manifest"]["trainable"].values())


def _f(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

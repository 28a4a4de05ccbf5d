"""How training cost grows with the batch: peak RSS and step time against tokens per step (issue 11, item 4).

    .venv/bin/python benchmarks/shapes.py [--rounds 3] [--shapes 1x32,8x64,8x128,16x128]

Head only, LoRA r8, QuIC (1,2) (query and value) and full fine-tuning on MiniLM, each exported at every batch x
sequence shape and measured exactly as `device_memory` measures them (ONNX Runtime device loop, AdamW, the
recompute rewrite, CPU arena on, 20 steps in a fresh process; rounds in rotated order, median and min-max; QuIC / LoRA
per round at the same shape). Writes shapes.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from quic_edge.bench.common import ADAPTERS, fresh_scratch
from quic_edge.bench.device_memory import STEPS, cost_cells, export, peak, plot_spread, range_text, ratios_within_rounds
from quic_edge.bench.memory import measure_fresh

SWEPT = ("head", "lora8", "quic12", "full")
SHAPES = ((1, 32), (8, 64), (8, 128), (16, 128))


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """'1x32,8x64' -> ((1, 32), (8, 64)); a clear error for anything else."""
    shapes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            batch, seq = (int(x) for x in part.lower().split("x"))
        except ValueError:
            raise ValueError(f"--shapes: give BATCHxSEQUENCE pairs such as 8x64, got {part!r}") from None
        if batch < 1 or not 2 <= seq <= 512:
            raise ValueError(f"--shapes: batch must be >= 1 and sequence 2..512 (MiniLM's positions), got {part!r}")
        shapes.append((batch, seq))
    if not shapes:
        raise ValueError("--shapes: give at least one BATCHxSEQUENCE pair, such as 8x64")
    return tuple(shapes)


def run(rounds: int, root: Path, shapes: tuple[tuple[int, int], ...] = SHAPES, adapters: tuple[str, ...] = SWEPT,
        progress: bool = True) -> dict[str, Any]:
    cases = [(a, b, s) for b, s in shapes for a in adapters]
    bundles = {(a, b, s): export(a, "ort", root / f"ort-{a}-{b}x{s}", batch=b, seq=s) for a, b, s in cases}
    runs: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for r in range(rounds):
        for case in cases[r % len(cases):] + cases[: r % len(cases)]:
            a, b, s = case
            measured = measure_fresh(bundles[case]["bundle"], root / "work" / f"{a}-{b}x{s}", STEPS, cpu_arena=True)
            runs.setdefault(case, []).append(measured)
            if progress:
                print(f"round {r}: {a} {b}x{s}: peak {peak(measured):.1f} MiB, {measured['median_step_ms']:.0f} ms",
                      flush=True)
    rows = []
    for b, s in shapes:
        row: dict[str, Any] = {"batch": b, "seq_len": s, "tokens": b * s}
        for a in adapters:
            row[a] = cost_cells(runs[a, b, s])
        if "quic12" in adapters and "lora8" in adapters:
            row["quic_over_lora"] = ratios_within_rounds(runs["quic12", b, s], runs["lora8", b, s])
        rows.append(row)
    return {"settings": {"model": "minilm", "steps": STEPS, "rounds": rounds, "optimizer": "adamw", "arena": "on",
                         "recompute": True, "adapters": list(adapters)}, "rows": rows}


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    adapters = s["adapters"]
    lines = [f"MiniLM, AdamW, ONNX Runtime device loop, {s['rounds']} rounds of fresh processes (median, min-max), "
             f"{s['steps']} steps each.", "",
             "| batch x seq (tokens) | " + " | ".join(f"{ADAPTERS[a].title} peak MiB" for a in adapters)
             + " | QuIC / LoRA peak | " + " | ".join(f"{ADAPTERS[a].title} step ms" for a in adapters)
             + " | QuIC / LoRA step |",
             "|---" * (3 + 2 * len(adapters)) + "|"]
    for row in results["rows"]:
        ratio = row.get("quic_over_lora")
        peaks = [range_text(row[a]["peak_rss_mib"], ".1f") for a in adapters]
        steps = [range_text(row[a]["median_step_ms"], ".0f") for a in adapters]
        lines.append(f"| {row['batch']} x {row['seq_len']} ({row['tokens']}) | " + " | ".join(peaks)
                     + f" | {range_text(ratio['peak'], '.3f') if ratio else '-'} | " + " | ".join(steps)
                     + f" | {range_text(ratio['step'], '.2f') if ratio else '-'} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Peak RSS and median step (log scale) against tokens per step (log scale), error bars min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    rows = results["rows"]
    tokens = [r["tokens"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "peak_rss_mib", "peak RSS (MiB)"), (axes[1], "median_step_ms", "median step (ms)")):
        for a in results["settings"]["adapters"]:
            plot_spread(ax, tokens, [r[a][key] for r in rows], ADAPTERS[a].title)
        ax.set(xscale="log", yscale="log" if key == "median_step_ms" else "linear",
               xlabel="tokens per step (batch x sequence)", title=title)
        ax.set_xticks(tokens, [f"{r['batch']}x{r['seq_len']}" for r in rows])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle("MiniLM, ONNX Runtime device loop: training cost against batch shape")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    parser.add_argument("--work", default="runs/bench-shapes", help="scratch folder for bundles")
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process rounds per case (default 3)")
    parser.add_argument("--shapes", default=",".join(f"{b}x{s}" for b, s in SHAPES),
                        help="comma-separated BATCHxSEQUENCE shapes (default 1x32,8x64,8x128,16x128)")
    parser.add_argument("--adapters", default=",".join(SWEPT), help=f"comma-separated, of {', '.join(SWEPT)}")
    args = parser.parse_args()
    try:
        shapes = parse_shapes(args.shapes)
        adapters = tuple(a.strip() for a in args.adapters.split(",") if a.strip())
        unknown = sorted(set(adapters) - set(SWEPT))
        if unknown or not adapters:
            raise ValueError(f"--adapters: unknown {unknown}; choose from {', '.join(SWEPT)}")
    except ValueError as e:
        parser.error(str(e))
    root = fresh_scratch(args.work)
    results = run(args.rounds, root, shapes, adapters)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shapes.json").write_text(json.dumps(results, indent=2))
    (out / "shapes.md").write_text(markdown(results))
    plot(results, out / "shapes.png")
    print(markdown(results))

"""`quic-edge info`: what QuIC would train on a model, layer by layer, and how that compares with LoRA."""

from __future__ import annotations

import argparse
import json

from quic_edge.config_cli import add_config_arguments, add_model_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="per-layer QuIC sizes and totals for a model (and LoRA's count)",
        description="Show, for each adapted layer, d_out, the number of blocks N, the block size b, the orthogonal "
        "size n, the compound orders, the identity padding inside each block and the trainable angles; then totals. "
        "--compare-lora R adds LoRA rank R on the same layers and on all linear layers, and the ratios.",
    )
    add_model_arguments(p)
    p.add_argument("--compare-lora", type=int, metavar="R", help="add the LoRA rank-R count and the ratios")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quic_edge.config_cli import load_model
    from quic_edge.counts import count

    model, config = load_model(args, num_labels=2)
    result = count(model, config, args.compare_lora)
    result["model"] = args.model
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def table(result: dict) -> str:
    lines = [f"QuIC on {result['model']}: {result['config']['target_modules']}, layout {result['config']['layout']}", "",
             f"{'layer':52} {'d_out':>5} {'N':>3} {'b':>4} {'n':>3} {'orders':>8} {'pad':>4} {'angles':>7}"]
    for r in result["layers"]:
        orders = ",".join(str(k) for k in r["orders"])
        lines.append(f"{r['name']:52} {r['d_out']:>5} {r['blocks']:>3} {r['block_size']:>4} {r['n']:>3} {orders:>8} "
                     f"{r['padding']:>4} {r['angles']:>7}")
    lines += ["", f"trainable angles: {result['trainable_angles']:,}", f"base parameters:  {result['base_params']:,}"]
    if "lora_params" in result:
        r = result["lora_rank"]
        lines += [f"LoRA rank {r}, same layers:      {result['lora_params']:,} ({result['ratio_lora']:.1f}x the angles)",
                  f"LoRA rank {r}, all linear layers: {result['lora_params_all_linear']:,} "
                  f"({result['ratio_lora_all_linear']:.1f}x the angles)"]
    return "\n".join(lines)

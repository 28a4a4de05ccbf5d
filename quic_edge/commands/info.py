"""`quic-edge info`: what QuIC would train on a model, layer by layer, and how that compares with LoRA."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="per-layer QuIC sizes and totals for a model (and LoRA's count)",
        description="Show, for each adapted layer, d_out, the number of blocks N, the block size b, the orthogonal "
        "size n, the compound orders, the identity padding inside each block and the trainable angles; then totals. "
        "--compare-lora R adds LoRA rank R on the same layers and on all linear layers, and the ratios.",
    )
    p.add_argument("--model", default="minilm", choices=("minilm", "llama-tiny", "mlp"), help="base model (default minilm)")
    p.add_argument("--blocks", type=int, default=3, help="blocks N per layer (default 3)")
    p.add_argument("--orders", default="1,2", help="Hamming-weight orders, comma separated (default 1,2)")
    p.add_argument("--targets", help="target layer names, comma separated (default: the model's usual targets)")
    p.add_argument("--layout", default="planes", choices=("planes", "brick"), help="Givens layout (default planes)")
    p.add_argument("--depth", type=int, help="circuit rounds (default: the full circuit)")
    p.add_argument("--share-blocks", action="store_true", help="one orthogonal matrix for all blocks of a layer")
    p.add_argument("--chain", type=int, default=1, help="rotations in sequence per layer (default 1)")
    p.add_argument("--compare-lora", type=int, metavar="R", help="add the LoRA rank-R count and the ratios")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=run)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{what}: give integers separated by commas, e.g. 1,2; got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from quic_edge import models
    from quic_edge.config import QuICConfig
    from quic_edge.counts import count

    targets = tuple(args.targets.split(",")) if args.targets else models.DEFAULT_TARGETS[args.model]
    config = QuICConfig(
        blocks=args.blocks, orders=_ints(args.orders, "orders"), target_modules=targets, layout=args.layout,
        depth=args.depth, share_blocks=args.share_blocks, chain=args.chain,
    )
    model, _ = models.load(args.model, num_labels=2)
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

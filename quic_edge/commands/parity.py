"""`quic-edge parity`: the same training in PyTorch eager and in a device runtime, compared."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quic_edge import cli_types

RUNTIMES = ("ort", "executorch")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "parity",
        help="train the same model, data and optimizer in PyTorch eager and a runtime; report the differences",
        description="Exports a bundle, trains --steps steps in the runtime's device loop and in PyTorch eager from "
        "the same init and data, and reports the largest loss difference, gradient difference at step 1 and "
        "parameter difference after the last step (targets: 1e-5; parameters 1e-4 with AdamW). Exit code 1 when "
        "a target is missed.",
    )
    p.add_argument("--runtime", choices=(*RUNTIMES, "all"), default="ort", help="runtime (default ort)")
    p.add_argument("--model", choices=("minilm", "llama-tiny", "mlp"), default="mlp", help="model family (default mlp)")
    p.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw", help="optimizer (default adamw)")
    p.add_argument("--seed", type=cli_types.seed, default=0, help="seed of init and data (default 0)")
    p.add_argument("--json", metavar="FILE", type=cli_types.output_file,
                   help="write the report (a list when --runtime all) to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quic_edge.runtimes.parity import run_parity, within_targets

    runtimes = RUNTIMES if args.runtime == "all" else (args.runtime,)
    reports = [run_parity(rt, args.model, args.steps, args.optimizer, args.seed) for rt in runtimes]
    for r in reports:
        ok = "ok" if within_targets(r) else "MISSED"
        print(f"{r['runtime']:>10} {r['model']} {r['optimizer']} {r['steps']} steps: loss {r['max_abs_loss_diff']:.2e}, "
              f"grad {r['max_abs_grad_diff']:.2e}, param {r['max_abs_param_diff']:.2e} [{ok}]")
    if args.json:
        Path(args.json).write_text(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    if not all(within_targets(r) for r in reports):
        print("parity targets missed", file=sys.stderr)
        return 1
    return 0

"""`quic-edge demo`: the on-device personalization demo, end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quic_edge import cli_types


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="personalize MiniLM for two people on a device runtime and report accuracy",
        description="Export a MiniLM training bundle (frozen int8 base, QuIC adapters), train it with a device "
        "runtime's loop on each of two people's own data, evaluate on their held-out data against a head-only "
        "baseline trained the same way, save each person's delta, evaluate each delta on both people, and write a "
        "report folder (summary.md, loss.png, accuracy.png, results.json). The task (--task): bbc-word-order (default; "
        "flag sentences with two words swapped, 800 of each person's own sentences, a task where the adapter pays "
        "over a head alone) or triage (read / later / skip each person's own way, 120 articles, a task a head alone "
        "solves).",
    )
    p.add_argument("--task", choices=("bbc-word-order", "triage"), default="bbc-word-order",
                   help="what the two people train (default bbc-word-order)")
    p.add_argument("--runtime", choices=("ort", "executorch"), default="ort", help="device runtime (default ort)")
    p.add_argument("--quick", action="store_true", help="a smaller run (64 examples per person, about 2 minutes) for "
                   "smoke tests: too small for word order to learn")
    p.add_argument("--seed", type=cli_types.seed, default=0, help="seed of the data split, head init and shuffling (default 0)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--json", metavar="FILE", type=cli_types.output_file, help="also write the summary as JSON to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quic_edge.demo import DemoSettings, run_demo

    summary = run_demo(DemoSettings.make(args.runtime, args.quick, args.seed, args.out, args.task))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print((Path(args.out) / "report" / "summary.md").read_text())
    print(f"report: {Path(args.out) / 'report'}")
    return 0

"""`quic-edge demo`: the on-device personalization demo, end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="personalize MiniLM for two people on a device runtime and report accuracy",
        description="Export a MiniLM training bundle (frozen int8 base, QuIC adapters), train it with a device "
        "runtime's loop on each of two people's own news-triage labels (read / later / skip), evaluate on their "
        "held-out articles against a head-only baseline, save each person's delta, and write a report folder "
        "(summary.md, loss.png, accuracy.png, results.json).",
    )
    p.add_argument("--runtime", choices=("ort", "executorch"), default="ort", help="device runtime (default ort)")
    p.add_argument("--quick", action="store_true", help="a smaller run (about 2 minutes) for smoke tests")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, head init and shuffling (default 0)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON to FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quic_edge.demo import DemoSettings, run_demo

    summary = run_demo(DemoSettings.make(args.runtime, args.quick, args.seed, args.out))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print((Path(args.out) / "report" / "summary.md").read_text())
    print(f"report: {Path(args.out) / 'report'}")
    return 0

"""`quic-edge fleet simulate`: federated QuIC personalization on Flower's simulation engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quic_edge import cli_types


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet", help="federated personalization of QuIC adapters with Flower",
                       description="Federated QuIC adapters: Flower ServerApp/ClientApp around the device loop.")
    fleet = p.add_subparsers(dest="fleet_command", metavar="FLEET_COMMAND")
    s = fleet.add_parser(
        "simulate",
        help="simulate a fleet of clients with non-identical data and report accuracy and bytes per round",
        description="Export one MiniLM bundle (frozen int8 base, QuIC adapters), run N clients on Flower's simulation "
        "engine (each trains with the device loop on its own BBC News topic mix), aggregate their deltas on the server "
        "(validated, weighted by example count), and compare with LoRA rank 8 federated the same way and with "
        "centralized training on the union of the data. Writes summary.md, accuracy.png and results.json.",
    )
    s.add_argument("--clients", type=int, default=20, help="number of clients (default 20)")
    s.add_argument("--rounds", type=int, default=5, help="federated rounds (default 5)")
    s.add_argument("--runtime", choices=("ort",), default="ort", help="device runtime of the clients (default ort)")
    s.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the topic mixes (default 0.5)")
    s.add_argument("--n-train", type=int, default=32, help="training examples per client (default 32)")
    s.add_argument("--n-test", type=int, default=32, help="held-out examples per client (default 32)")
    s.add_argument("--heldout", type=int, default=250, help="global held-out examples (default 250)")
    s.add_argument("--seq-len", type=int, default=64, help="sequence length of the bundle (default 64)")
    s.add_argument("--seed", type=cli_types.seed, default=0, help="seed of the data split and training (default 0)")
    s.add_argument("--cpus", type=int, default=2, help="clients trained in parallel (default 2)")
    s.add_argument("--no-lora", action="store_true", help="skip the LoRA rank-8 comparison")
    s.add_argument("--no-centralized", action="store_true", help="skip the centralized baseline")
    s.add_argument("--faults", default="", help="fault drill, e.g. '3:nan,5:drop,7:foreign-base' (QuIC federation)")
    s.add_argument("--round-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="seconds the server waits for a round's replies; a client silent by then is dropped (default 600)")
    s.add_argument("--out", default="runs/fleet", help="output folder (default runs/fleet)")
    s.add_argument("--json", metavar="FILE", type=cli_types.output_file, help="also write the summary as JSON to FILE")
    s.set_defaults(func=run)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def run(args: argparse.Namespace) -> int:
    from quic_edge.fleet.simulate import ADAPTERS, FleetSettings, run_fleet

    settings = FleetSettings(
        clients=args.clients, rounds=args.rounds, runtime=args.runtime, out=args.out, alpha=args.alpha, seed=args.seed,
        n_train=args.n_train, n_test=args.n_test, heldout=args.heldout, seq_len=args.seq_len, cpus=args.cpus,
        adapters=tuple(a for a in ADAPTERS if not (a == "lora" and args.no_lora)), centralized=not args.no_centralized,
        faults=args.faults, round_timeout=args.round_timeout,
    )
    summary = run_fleet(settings)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print((Path(args.out) / "summary.md").read_text())
    print(f"report: {args.out}")
    return 0

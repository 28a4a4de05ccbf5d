"""One module per `quic-edge` subcommand; each defines register(subparsers) (see quic_edge/cli.py)."""

"""Issue 6: `quic-edge bench compare` as a script (the logic lives in quic_edge/bench/compare.py).

    .venv/bin/python benchmarks/compare.py [--quick]     # writes benchmarks/results/compare.{json,md} and PNG plots
"""

from __future__ import annotations

import argparse
import sys

from quic_edge.bench import cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_compare_arguments(parser)
    sys.exit(cli.run_compare_command(parser.parse_args()))

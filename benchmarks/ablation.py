"""Issue 6: `quic-edge bench ablation` as a script (the logic lives in quic_edge/bench/ablation.py).

    .venv/bin/python benchmarks/ablation.py [--quick]     # writes benchmarks/results/ablation.{json,md} and PNG plots
"""

from __future__ import annotations

import argparse
import sys

from quic_edge.bench import cli

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_ablation_arguments(parser)
    sys.exit(cli.run_ablation_command(parser.parse_args()))

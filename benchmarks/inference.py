"""Inference latency and peak RSS of the deployed models (the logic: quic_edge/bench/inference.py).

    .venv/bin/python benchmarks/inference.py --help
"""

import sys

from quic_edge.bench.inference import main

if __name__ == "__main__":
    sys.exit(main())

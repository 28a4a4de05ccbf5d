"""Cost of adapters on the top k layers against k (the logic: quic_edge/bench/placement.py).

    .venv/bin/python benchmarks/placement.py --help
"""

import sys

from quic_edge.bench.placement import main

if __name__ == "__main__":
    sys.exit(main())

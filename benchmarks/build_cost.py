"""Cost of building the block rotation, Givens + minors against Cayley + det (the logic: quic_edge/bench/build_cost.py).

    .venv/bin/python benchmarks/build_cost.py --help
"""

import sys

from quic_edge.bench.build_cost import main

if __name__ == "__main__":
    sys.exit(main())

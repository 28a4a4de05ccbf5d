"""Peak RSS and step time against batch shape (the logic: quic_edge/bench/shapes.py).

    .venv/bin/python benchmarks/shapes.py --help
"""

import sys

from quic_edge.bench.shapes import main

if __name__ == "__main__":
    sys.exit(main())

"""What one training step holds at its peak, from the allocator (the logic: quic_edge/bench/malloc_trace.py).

    .venv/bin/python benchmarks/malloc_trace.py --help
"""

import sys

from quic_edge.bench.malloc_trace import main

if __name__ == "__main__":
    sys.exit(main())

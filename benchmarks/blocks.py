"""QuIC (1,2)'s block count: cost against LoRA r8 beside accuracy (the logic: quic_edge/bench/blocks.py).

    .venv/bin/python benchmarks/blocks.py --help
"""

import sys

from quic_edge.bench.blocks import main

if __name__ == "__main__":
    sys.exit(main())

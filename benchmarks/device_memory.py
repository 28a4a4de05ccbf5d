"""Peak RSS and step time of the device loops (the logic: quic_edge/bench/device_memory.py).

    .venv/bin/python benchmarks/device_memory.py --help
"""

import sys

from quic_edge.bench.device_memory import main

if __name__ == "__main__":
    sys.exit(main())

"""EXPERIMENT (issue 11): the rotation folded into the weight, x (W^T R), against applied to the activations,
(x W^T) R. Exports QuIC (1,2) with QuICLinear.fold set as asked and measures peak RSS (20 steps, fresh process,
arena on and off), as device_memory does. Reverted in the next commit (folding kept more and ran slower).

    PYTHONPATH=. .venv/bin/python benchmarks/fold_experiment.py fold|act quic12
"""

import sys
from pathlib import Path

from quic_edge.bench.device_memory import export
from quic_edge.bench.memory import measure_fresh
from quic_edge.layer import QuICLinear

mode, adapter = sys.argv[1], sys.argv[2]
QuICLinear.fold = mode == "fold"
root = Path(f"runs/fold/{adapter}-{mode}")
if not (root / "manifest.json").exists():
    print(export(adapter, "ort", root))
for arena in (True, False):
    m = measure_fresh(root, str(root) + "-work", steps=20, cpu_arena=arena)
    print(mode, adapter, "arena", arena, m["peak_rss_mib"], m["median_step_ms"])

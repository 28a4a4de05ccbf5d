"""EXPERIMENT (issue 11, reverted next): QuIC (1,2) with the rotation as one [N, b, b] block matrix per layer
(QuICLinear.block_matrix) against the committed per-compound slices. PYTHONPATH=. .venv/bin/python
benchmarks/block_matrix_experiment.py quic12 OLD_BUNDLE (a bundle exported by the parent commit)."""
import sys
from pathlib import Path
from quic_edge.bench.device_memory import export, peak
from quic_edge.bench.memory import measure_fresh
from quic_edge.bench.attribution import attribute
adapter = sys.argv[1]
new = Path(f"runs/blockmat/{adapter}")
if not (new / "manifest.json").exists():
    print(export(adapter, "ort", new), flush=True)
a = attribute(new); print("attr new", {k: round(v['mib'], 1) for k, v in a['stashed'].items()}, round(a['stashed_mib'], 1), round(a['peak_live_mib'], 1), flush=True)
old = Path(sys.argv[2])
for r in range(3):
    for name, b in ((("new", new), ("old", old)) if r % 2 == 0 else (("old", old), ("new", new))):
        for arena in (True, False):
            m = measure_fresh(b, f"runs/blockmat/w-{name}", steps=20, cpu_arena=arena)
            print(r, name, "arena", arena, round(peak(m), 1), round(m["median_step_ms"]), flush=True)

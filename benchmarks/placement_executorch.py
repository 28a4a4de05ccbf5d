"""ExecuTorch's memory-planned training buffers for adapters on the top k layers (issue 11; README "Placement").

    .venv/bin/python benchmarks/placement_executorch.py   # writes benchmarks/results/placement_executorch.json

QuIC (1,2) and LoRA r8 on MiniLM's top 1 and top 3 layers, exported to ExecuTorch training programs exactly as
`device_memory` exports them (batch 8 x 64, AdamW), each measured for 5 steps in a fresh process. The planned buffers
are fixed by the export; the process peak includes torch (ExecuTorch's Python runtime imports it).
"""

import json
import sys
from pathlib import Path

from quic_edge.bench.device_memory import export
from quic_edge.bench.memory import measure_fresh

ADAPTERS = ("quic12-top1", "lora8-top1", "quic12-top3", "lora8-top3")


def main() -> int:
    work, out = Path("runs/bench-placement-executorch"), Path("benchmarks/results/placement_executorch.json")
    found = {}
    for adapter in ADAPTERS:
        bundle = work / adapter
        export(adapter, "executorch", bundle)
        measured = measure_fresh(bundle, work / f"work-{adapter}", 5)
        found[adapter] = {"planned_mib": measured["runtime_memory"].get("planned_total_mib"),
                          "peak_rss_mib": max(measured["peak_rss_mib"].values()),
                          "median_step_ms": measured["median_step_ms"]}
        print(adapter, found[adapter], flush=True)
    out.write_text(json.dumps({"settings": {"model": "minilm", "batch": 8, "seq_len": 64, "steps": 5,
                                            "optimizer": "adamw"}, "adapters": found}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

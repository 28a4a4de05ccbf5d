"""Peak RSS and step time of the device loops: QuIC vs LoRA rank 8 vs full fine-tuning on ONNX Runtime, and QuIC on
ExecuTorch beside them, in one run.

    .venv/bin/python benchmarks/device_memory.py        # writes benchmarks/results/device_memory.{json,md}

MiniLM (real weights), batch 8 x sequence 64, AdamW, each adapter exported the same way (quic_edge.export; QuIC and
LoRA on query/value of an int8 base, full fine-tuning fp32), each measured in a fresh process by
quic_edge.bench.memory (the tool behind `quic-edge bench memory`): peak RSS (VmHWM) after load, first step and
steady state; ORT with enable_mem_pattern=False and the CPU arena on (its default) and off, intra-op threads ORT's
choice; ExecuTorch with one intra-op thread (its loop's default). ExecuTorch's Python runtime imports torch; its
own memory-planned buffer sizes are reported beside the process figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from quic_edge.bench.common import ADAPTERS
from quic_edge.bench.memory import measure_fresh

BATCH, SEQ, STEPS, LABELS = 8, 64, 20, ["a", "b", "c"]
RUNS = (("ort", "quic", "on"), ("ort", "quic", "off"), ("ort", "lora8", "on"), ("ort", "lora8", "off"),
        ("ort", "full", "on"), ("ort", "full", "off"), ("executorch", "quic", "-"))
SPECS = {"quic": "quic12", "lora8": "lora8", "full": "full"}  # the adapters of quic_edge.bench.common


def export_all(root: Path) -> dict[str, dict]:
    """One MiniLM bundle per (runtime, adapter), exported the same way."""
    from quic_edge.delta import save_delta
    from quic_edge.export import export_bundle
    from quic_edge.tasks import example_batch

    batch = example_batch("minilm", BATCH, SEQ, len(LABELS))
    out = {}
    for runtime, adapter in dict.fromkeys((r, a) for r, a, _ in RUNS):
        model = ADAPTERS[SPECS[adapter]].build(len(LABELS), seed=0)
        start = time.perf_counter()
        folder = root / f"{runtime}-{adapter}"
        manifest = export_bundle(runtime, model, batch, folder, labels=LABELS, optimizer="adamw", lr=1e-3)
        files = {role: (folder / rel).stat().st_size for role, rel in manifest["files"].items()}
        out[f"{runtime}/{adapter}"] = {"bundle": str(folder), "export_seconds": time.perf_counter() - start,
                                       "file_bytes": files, "bundle_bytes": sum(files.values())}
        if adapter == "quic" and runtime == "ort":
            out[f"{runtime}/{adapter}"]["delta_bytes"] = save_delta(model, root / "quic-delta.safetensors").stat().st_size
    return out


def table(results: dict) -> str:
    rows = ["| runtime | adapter | CPU arena | trainable | steps | peak RSS load / first step / steady (MiB) | median step (ms) "
            "| runtime's planned buffers (MiB) | bundle (MB) | checkpoint (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for runtime, adapter, arena in RUNS:
        info, m = results["exports"][f"{runtime}/{adapter}"], results["runs"][f"{runtime}/{adapter}/{arena}"]
        r, planned = m["peak_rss_mib"], m["runtime_memory"].get("planned_total_mib")
        rows.append(f"| {runtime} | {adapter} | {arena} | {m['trainable_numbers']:,} | {m['steps']} | {r['load']:.0f} / "
                    f"{r['first_step']:.0f} / {r['steady']:.0f} | {m['median_step_ms']:.0f} | "
                    f"{'-' if planned is None else f'{planned:.1f}'} | {info['bundle_bytes'] / 1e6:.1f} | "
                    f"{m['checkpoint_bytes'] / 1e6:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    parser.add_argument("--work", default="runs/bench-device", help="scratch folder for bundles and checkpoints")
    parser.add_argument("--et-steps", type=int, default=STEPS, help=f"ExecuTorch training steps (default {STEPS})")
    args = parser.parse_args()
    root = Path(args.work)
    shutil.rmtree(root, ignore_errors=True)
    steps = {"ort": STEPS, "executorch": args.et_steps}
    results = {"settings": {"model": "minilm", "batch": BATCH, "seq_len": SEQ, "steps": steps, "optimizer": "adamw",
                            "ort_session": "enable_mem_pattern=False, intra-op threads: ORT default"},
               "exports": export_all(root), "runs": {}}
    for runtime, adapter, arena in RUNS:
        bundle = results["exports"][f"{runtime}/{adapter}"]["bundle"]
        work = root / f"work-{runtime}-{adapter}-{arena}"
        measured = measure_fresh(bundle, work, steps[runtime], cpu_arena=arena != "off")
        results["runs"][f"{runtime}/{adapter}/{arena}"] = measured
        print(f"{runtime} {adapter} {arena}: {measured['peak_rss_mib']} {measured['median_step_ms']:.0f} ms", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_memory.json").write_text(json.dumps(results, indent=2))
    (out / "device_memory.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()

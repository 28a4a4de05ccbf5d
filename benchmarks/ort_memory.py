"""Peak RSS and step time of the ONNX Runtime device loop: QuIC vs LoRA rank 8 vs full fine-tuning, one run.

    .venv/bin/python benchmarks/ort_memory.py            # writes benchmarks/results/ort_memory.{json,md}

MiniLM (real weights), batch 8 x sequence 64, AdamW, 20 steps, each adapter exported the same way
(quic_edge.export.export_ort; QuIC and LoRA on query/value of an int8 base, full fine-tuning fp32), each measured
in a fresh torch-free process (quic_edge.bench.memory, the tool behind `quic-edge bench memory`). Peak RSS (VmHWM)
is read per phase: after load (sessions built), first step, steady state (steps 2..20). Session settings:
enable_mem_pattern=False always; the CPU arena on (ORT's default) and off, both reported.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from quic_edge.bench.memory import measure_fresh

BATCH, SEQ, STEPS, LABELS = 8, 64, 20, ["a", "b", "c"]
ADAPTERS = ("quic", "lora8", "full")


def export_all(root: Path) -> dict[str, dict]:
    """One MiniLM bundle per adapter, exported the same way."""
    from quic_edge import baselines, models
    from quic_edge.config import QuICConfig
    from quic_edge.export.ort import export_ort
    from quic_edge.model import apply_quic
    from quic_edge.tasks import example_batch

    batch = example_batch("minilm", BATCH, SEQ, len(LABELS))
    out = {}
    for adapter in ADAPTERS:
        model, _ = models.load("minilm", num_labels=len(LABELS), seed=0)
        if adapter == "quic":
            model = apply_quic(model, QuICConfig(target_modules=("query", "value")))
        elif adapter == "lora8":
            model = baselines.lora(model, rank=8, targets=("query", "value"))
        else:
            model = baselines.full(model)
        start = time.perf_counter()
        manifest = export_ort(model, batch, root / adapter, labels=LABELS, optimizer="adamw", lr=1e-3)
        files = {role: (root / adapter / rel).stat().st_size for role, rel in manifest["files"].items()}
        out[adapter] = {"export_seconds": time.perf_counter() - start, "file_bytes": files,
                        "bundle_bytes": sum(files.values()),
                        "trainable_numbers": sum(int(_prod(s)) for s in manifest["trainable"].values())}
        if adapter == "quic":
            from quic_edge.delta import save_delta

            out[adapter]["delta_bytes"] = save_delta(model, root / "quic-delta.safetensors").stat().st_size
    return out


def _prod(shape: list[int]) -> int:
    result = 1
    for s in shape:
        result *= s
    return result


def table(results: dict) -> str:
    rows = ["| adapter | CPU arena | trainable | peak RSS load / first step / steady (MiB) | median step (ms) | "
            "bundle (MB) | checkpoint (MB) |", "|---|---|---|---|---|---|---|"]
    for adapter in ADAPTERS:
        info = results["exports"][adapter]
        for arena in ("on", "off"):
            m = results["runs"][f"{adapter}/{arena}"]
            r = m["peak_rss_mib"]
            rows.append(f"| {adapter} | {arena} | {info['trainable_numbers']:,} | {r['load']:.0f} / {r['first_step']:.0f} / "
                        f"{r['steady']:.0f} | {m['median_step_ms']:.0f} | {info['bundle_bytes'] / 1e6:.1f} | "
                        f"{m['checkpoint_bytes'] / 1e6:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    parser.add_argument("--work", default="runs/bench-ort", help="scratch folder for bundles and checkpoints")
    args = parser.parse_args()
    root = Path(args.work)
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    results = {"settings": {"model": "minilm", "batch": BATCH, "seq_len": SEQ, "steps": STEPS, "optimizer": "adamw",
                            "enable_mem_pattern": False, "threads": "ORT default (all cores)"},
               "exports": export_all(root), "runs": {}}
    for adapter in ADAPTERS:
        for arena in ("on", "off"):
            work = root / f"work-{adapter}-{arena}"
            results["runs"][f"{adapter}/{arena}"] = measure_fresh(root / adapter, work, STEPS, cpu_arena=arena == "on")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ort_memory.json").write_text(json.dumps(results, indent=2))
    (out / "ort_memory.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()

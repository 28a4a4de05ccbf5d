"""Inference latency and peak RSS of the deployed models, one run: base, merged, merged (fp32 file), swappable.

    .venv/bin/python benchmarks/inference.py [--delta FILE]   # writes benchmarks/results/inference.{json,md}

(The script is a thin entry point; this module is the benchmark.)

MiniLM (real weights). Without --delta a delta is made with the library (angles ~ N(0, 0.1), seeded).
- base: the int8 base with its head, no adapters (the same optimum-onnx route as merged);
- merged: `quic-edge deploy`'s model.onnx (the delta folded in, requantized int8, int8 initializers);
- merged-dq-folded: the same file, with session.disable_quant_qdq=1 so ORT folds the int8 weights to fp32 at load;
- merged-fp32-file: the same export with the weights left as optimum writes them (dequantized fp32);
- swappable: swappable.onnx (int8 base, the delta's angles and head fed as inputs by SwappableSession).
Each (model, batch) is measured in a fresh torch-free process (onnxruntime's InferenceSession, CPU arena on, ORT's
default; 1 intra-op thread, as the machine is shared): load, 5 warm-up runs, then timed runs at sequence 64.
Peak RSS is VmHWM at the end (load and all runs). The whole set is repeated in rounds, in a shuffled order each
round, so drift of the shared machine hits every model alike; the median over all timed runs is reported.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEQ, BATCHES, RUNS, WARMUP, ROUNDS = 64, (1, 8), 20, 5, 3
MODELS = ("base", "merged", "merged-dq-folded", "merged-fp32-file", "swappable")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def measure(kind: str, path: str, delta: str, batch: int) -> dict:
    """Runs in a fresh process: numpy, safetensors and onnxruntime only."""
    import numpy as np

    from quic_edge.runtimes.ort import ort_bindings

    ort_bindings()  # onnxruntime imported as a device without torch would
    import onnxruntime

    rng = np.random.default_rng(batch)
    ids = rng.integers(1000, 30522, size=(batch, SEQ), dtype=np.int64)
    mask = np.ones((batch, SEQ), dtype=np.int64)
    start = time.perf_counter()
    if kind == "swappable":
        from quic_edge.runtimes.serving import SwappableSession

        server = SwappableSession(path, threads=1)
        server.add_person("me", delta)
        run = lambda: server.logits("me", ids, mask)  # noqa: E731
    else:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        if kind == "merged-dq-folded":  # ORT keeps DequantizeLinear unfolded (QDQ) unless told otherwise
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        run = lambda: session.run(None, {"input_ids": ids, "attention_mask": mask})  # noqa: E731
    load_s = time.perf_counter() - start
    load_rss = peak_rss_mib()
    for _ in range(WARMUP):
        run()
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    return {"times_ms": times, "load_s": load_s, "load_rss_mib": load_rss, "peak_rss_mib": peak_rss_mib(),
            "torch_imported": "torch" in sys.modules}


def build(work: Path, delta: str | None) -> tuple[dict[str, Path], str]:
    """Export the four models (and a delta when none is given) into `work`."""
    import torch

    from quic_edge import models
    from quic_edge.config import QuICConfig
    from quic_edge.delta import save_delta
    from quic_edge.export.deploy import deploy, merged_model
    from quic_edge.export.optimum_onnx import export_optimum_onnx
    from quic_edge.model import apply_quic, trainable_parameters
    from quic_edge.quantize import quantize_int8

    if delta is None:
        model = apply_quic(models.load("minilm", num_labels=3)[0], QuICConfig())
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in trainable_parameters(model).values():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
        delta = str(save_delta(model, work / "delta.safetensors"))
    deploy(delta, "onnx", work / "deployed", swappable=True)
    base = models.load("minilm", num_labels=3)[0]
    quantize_int8(base, skip=("classifier",))
    export_optimum_onnx(base, work / "base")
    export_optimum_onnx(merged_model(delta), work / "fp32-file", int8=False)
    paths = {"base": work / "base" / "model.onnx", "merged": work / "deployed" / "model.onnx",
             "merged-dq-folded": work / "deployed" / "model.onnx",
             "merged-fp32-file": work / "fp32-file" / "model.onnx", "swappable": work / "deployed" / "swappable.onnx"}
    return paths, delta


def run_all(paths: dict[str, Path], delta: str) -> list[dict]:
    from tqdm import tqdm

    jobs = [(kind, batch) for kind in MODELS for batch in BATCHES]
    raw: dict[tuple[str, int], list[dict]] = {job: [] for job in jobs}
    order = random.Random(0)
    with tqdm(total=len(jobs) * ROUNDS, desc="inference benchmark", unit="process", file=sys.stderr) as bar:
        for _ in range(ROUNDS):
            order.shuffle(jobs)
            for kind, batch in jobs:
                cmd = [sys.executable, "-m", "quic_edge.bench.inference", "--worker", kind, str(paths[kind]), delta, str(batch)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                raw[(kind, batch)].append(json.loads(out.stdout.strip().splitlines()[-1]))
                bar.update()
    rows = []
    for kind in MODELS:
        for batch in BATCHES:
            runs = raw[(kind, batch)]
            times = [t for r in runs for t in r["times_ms"]]
            rows.append({
                "model": kind, "batch": batch, "seq": SEQ, "median_ms": statistics.median(times),
                "p90_ms": statistics.quantiles(times, n=10)[-1],
                "round_medians_ms": [statistics.median(r["times_ms"]) for r in runs],
                "load_rss_mib": statistics.median(r["load_rss_mib"] for r in runs),
                "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                "file_mb": paths[kind].stat().st_size / 1e6, "torch_imported": any(r["torch_imported"] for r in runs),
            })
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Inference: base vs merged vs swappable (MiniLM, ONNX Runtime CPU, 1 thread, sequence 64)", "",
        f"Command: `{meta['command']}`. Delta: {meta['delta']}. {ROUNDS} rounds x {RUNS} timed runs per (model, batch), "
        "each in a fresh torch-free process; peak RSS = VmHWM after load and all runs (CPU arena on).", "",
        "| model | batch | median (ms) | p90 (ms) | round medians (ms) | peak RSS load / end (MiB) | file (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rounds = ", ".join(f"{t:.1f}" for t in r["round_medians_ms"])
        lines.append(f"| {r['model']} | {r['batch']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {rounds} | "
                     f"{r['load_rss_mib']:.0f} / {r['peak_rss_mib']:.0f} | {r['file_mb']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, kind, path, delta, batch = sys.argv
        print(json.dumps(measure(kind, path, delta, int(batch))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delta", help="a personal delta (default: one made with the library, seeded)")
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, delta = build(Path(tmp), args.delta)
        rows = run_all(paths, delta)
    meta = {"command": "python benchmarks/inference.py" + (f" --delta {args.delta}" if args.delta else ""),
            "delta": args.delta or "made with the library (angles and head ~ N(0, 0.1), seed 0)",
            "seq": SEQ, "runs": RUNS, "warmup": WARMUP, "rounds": ROUNDS, "threads": 1}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (out / "inference.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())

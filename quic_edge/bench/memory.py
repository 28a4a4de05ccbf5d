"""`quic-edge bench memory`: the memory of training on the device, measured the way a Raspberry Pi user would.

    quic-edge bench memory --bundle bundle/ --runtime ort --steps 10 --json pi.json

A fresh child process opens the bundle's device loop and trains `steps` steps on one fixed batch. It reads its
own peak RSS (VmHWM in /proc/self/status) after each phase: load (bundle verified, runtime files loaded), first
step, steady state (the remaining steps); writing 5 to /proc/self/clear_refs resets the peak between phases. Before
it opens the bundle it loads the runtime's libraries (and the tokenizer's, for text) and reads its resident size
then (VmRSS): the runtime's own share of every figure, which no adapter can go below.
Torch-free for ONNX Runtime bundles: on a Pi it needs only the runtime, numpy, safetensors and tokenizers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from quic_edge import cli_types

PHASES = ("load", "first_step", "steady")
# Texts for the measuring batch when the bundle has a tokenizer (memory does not depend on what they say).
SAMPLE_TEXTS = (
    "The match went to extra time before the home side scored the winner.",
    "Shares fell sharply after the company warned that profits would miss forecasts.",
    "The new phone has a larger screen, a faster chip and a camera that works well at night.",
    "Ministers will vote on the proposal next week after months of debate in parliament.",
)
MMAP_THRESHOLD_ENV = "MALLOC_MMAP_THRESHOLD_"  # glibc reads it when a process starts
RUNTIME_DISTRIBUTIONS = {"ort": ("onnxruntime-training-cpu", "onnxruntime-training", "onnxruntime"),
                         "executorch": ("executorch",)}


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status: peak RSS per phase needs Linux")


def rss_split() -> dict[str, int]:
    """Current RSS by kind, KiB: RssAnon (data), RssFile (mapped libraries and files), RssShmem."""
    return {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:"))}


def rss_mib() -> float:
    """This process's resident set size now (VmRSS) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status: resident size needs Linux")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def machine_info() -> dict[str, Any]:
    """CPU, cores, RAM, OS and versions: what a reader needs to compare figures from two machines."""
    cpuinfo = _read("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                if line.split(":", 1)[0].strip() in ("model name", "Model", "Hardware")), platform.processor())
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal:")), 0)
    os_name = next((line.split("=", 1)[1].strip('"') for line in _read("/etc/os-release").splitlines()
                    if line.startswith("PRETTY_NAME=")), platform.platform())
    arch = platform.machine()
    info = {"cpu": cpu or "unknown", "cores": os.cpu_count(), "ram_mib": round(mem_kib / 1024), "os": os_name,
            "kernel": platform.release(), "arch": arch, "python": platform.python_version()}
    # qemu-user passes the host's /proc/cpuinfo and /proc/self/status through: an x86 cpuinfo under another
    # architecture means an emulated userland, whose peak RSS is the emulator process's (translated code included).
    if "vendor_id" in cpuinfo and arch not in ("x86_64", "i386", "i686"):
        info["emulated"] = f"{arch} userland on an x86 host (qemu-user): cpu is the host's; RSS is the emulator's"
    return info


def runtime_version(runtime: str) -> str | None:
    for dist in RUNTIME_DISTRIBUTIONS.get(runtime, ()):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def measuring_batch(loop: Any) -> dict[str, Any]:
    """One batch of the bundle's shapes: sample texts through its tokenizer, else zeros (valid ids for any model)."""
    import numpy as np

    from quic_edge.data import Example

    manifest = loop.manifest
    if "tokenizer" in manifest["files"] and loop.labels:
        texts = [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] for i in range(loop.batch_size)]
        examples = [Example(t, loop.labels[i % len(loop.labels)]) for i, t in enumerate(texts)]
        inputs, targets = loop.encode(examples)
        return {**inputs, manifest["target"]["name"]: targets}
    specs = [*manifest["inputs"], manifest["target"]]
    return {s["name"]: np.zeros(s["shape"], dtype=s["dtype"]) for s in specs}


def measure(bundle: str | os.PathLike, work: str | os.PathLike, steps: int = 20, **loop_options: Any) -> dict[str, Any]:
    """Train `steps` steps in this process and report peak RSS per phase. Call it in a fresh process."""
    from quic_edge.formats.bundle import read_manifest
    from quic_edge.runtimes import loop_class, open_loop

    manifest = read_manifest(bundle)
    loop_class(str(manifest.get("runtime"))).load_runtime()
    if "tokenizer" in manifest.get("files", {}):
        import tokenizers  # noqa: F401  # a text bundle's loop encodes with it
    runtime_rss = rss_mib()
    start = time.perf_counter()
    loop = open_loop(bundle, work, **loop_options)
    getattr(loop, "session", None)  # ORT builds its sessions on first use: count that as load
    batch = measuring_batch(loop)
    load_seconds = time.perf_counter() - start
    rss = {"load": peak_rss_mib()}
    reset_peak()
    times, cpu_times, losses = [], [], []
    for step in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(loop.train_step(batch))
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if step == 0:
            rss["first_step"] = peak_rss_mib()
            reset_peak()
    rss["steady"] = peak_rss_mib() if steps > 1 else rss["first_step"]
    checkpoint = loop.save_checkpoint()
    manifest = loop.manifest
    return {
        "runtime": loop.runtime, "model": manifest.get("model"), "adapter": manifest.get("adapter"), "steps": steps,
        "batch": {name: list(a.shape) for name, a in batch.items()},
        "trainable_numbers": sum(math.prod(s) for s in manifest["trainable"].values()),
        "peak_rss_mib": rss, "training_peak_rss_mib": max(rss.values()), "runtime_rss_mib": runtime_rss,
        "load_seconds": load_seconds,
        "first_step_ms": times[0] * 1e3, "median_step_ms": statistics.median(times[1:] or times) * 1e3,
        "min_step_ms": min(times[1:] or times) * 1e3, "losses": losses,
        # CPU time of this process per step, every thread together: with one intra-op thread, the work a step does,
        # which time other processes take from it does not inflate (they still slow it through shared caches)
        "median_step_cpu_ms": statistics.median(cpu_times[1:] or cpu_times) * 1e3,
        "runtime_memory": runtime_memory(loop, loop_options),
        "bundle_bytes": sum(p.stat().st_size for p in Path(bundle).iterdir() if p.is_file()),
        "checkpoint_bytes": sum(p.stat().st_size for p in checkpoint.iterdir()),
        "torch_imported": "torch" in sys.modules, "runtime_version": runtime_version(loop.runtime),
        # the build matters: PyPI's aarch64 torch is a CUDA build whose libraries load on import (~150 MiB of RSS)
        "torch_version": getattr(sys.modules.get("torch"), "__version__", None),
        "rss_at_end_kib": rss_split(),
        "machine": machine_info(),
    }


def runtime_memory(loop: Any, loop_options: dict[str, Any]) -> dict[str, Any]:
    """The runtime's own memory figures and settings: ExecuTorch's memory-planned buffers; ORT's allocator settings."""
    if hasattr(loop, "planned_memory_bytes"):
        planned = loop.planned_memory_bytes()
        return {"planned_buffer_bytes": planned, "planned_total_mib": sum(planned) / 2**20,
                "intra_op_threads": loop.threads or "torch default"}
    return {**loop.memory_settings(),
            "intra_op_threads": loop_options.get("threads") or "runtime default",
            "malloc_mmap_threshold": os.environ.get(MMAP_THRESHOLD_ENV)}


def measure_fresh(bundle: str | os.PathLike, work: str | os.PathLike, steps: int = 20, cpu_arena: bool = True,
                  threads: int | None = None, mmap_threshold: int | None = None,
                  mem_reuse: bool = False) -> dict[str, Any]:
    """`measure` in a fresh child process (peak RSS is per process); raises with the child's error on failure.

    threads: the loop's intra-op threads (None: the loop's default). mem_reuse: ONNX Runtime's buffer reuse
    (runtimes/ort.py; the loop's default is off). mmap_threshold: glibc's MALLOC_MMAP_THRESHOLD_
    for the child (bytes): every block at least this large is mapped on allocation and unmapped on free, so freed
    tensors leave the resident set at once (glibc otherwise raises the threshold as blocks are freed and keeps them)."""
    command = [sys.executable, "-m", "quic_edge.bench.memory", str(bundle), str(work), "--steps", str(steps),
               "--cpu-arena", "on" if cpu_arena else "off", *(["--threads", str(threads)] if threads is not None else []),
               *(["--mem-reuse"] if mem_reuse else [])]
    env = {**os.environ, **({MMAP_THRESHOLD_ENV: str(mmap_threshold)} if mmap_threshold is not None else {})}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of {bundle} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(result: dict[str, Any]) -> str:
    """A short human-readable report of one measurement."""
    m, r = result["machine"], result["peak_rss_mib"]
    lines = [
        f"# Training memory: {result['model']} ({result['adapter']}) on {result['runtime_version'] or result['runtime']}",
        "",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_mib']} MiB RAM, {m['os']} ({m['arch']}, kernel {m['kernel']}), "
        f"Python {m['python']}" + (f"; {result['label']}" if result.get("label") else "")
        + (f"; EMULATED: {m['emulated']}" if m.get("emulated") else ""),
        f"batch: {', '.join(f'{k} {v}' for k, v in result['batch'].items())}; {result['steps']} steps; "
        f"{result['trainable_numbers']:,} trainable numbers; torch imported: {result['torch_imported']}"
        + (f" ({result['torch_version']})" if result.get("torch_version") else ""),
        "",
        "| phase | peak RSS (MiB) |",
        "|---|---|",
        *([f"| the runtime alone (its libraries, no bundle; resident) | {result['runtime_rss_mib']:.1f} |"]
          if "runtime_rss_mib" in result else []),
        *(f"| {phase.replace('_', ' ')} | {r[phase]:.1f} |" for phase in PHASES),
        "",
        f"load {result['load_seconds']:.2f} s; first step {result['first_step_ms']:.0f} ms; "
        f"median step {result['median_step_ms']:.0f} ms; bundle {result['bundle_bytes'] / 1e6:.1f} MB; "
        f"checkpoint {result['checkpoint_bytes'] / 1e6:.1f} MB",
        f"runtime memory: {json.dumps(result['runtime_memory'])}",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, help="bundle folder (from quic-edge export)")
    p.add_argument("--runtime", choices=sorted(RUNTIME_DISTRIBUTIONS),
                   help="the bundle's runtime (checked against its manifest; default: the manifest's)")
    p.add_argument("--steps", type=int, default=10, help="training steps (default 10; the first is its own phase)")
    p.add_argument("--work", help="scratch folder for the checkpoint (default: a temporary folder)")
    p.add_argument("--cpu-arena", choices=("on", "off"), default="on", help="ONNX Runtime's CPU arena (default on)")
    p.add_argument("--mem-reuse", choices=("on", "off"), default="off",
                   help="ONNX Runtime's buffer reuse (default off, as the device loop runs; with the arena off, on "
                        "keeps the heap smaller)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: ONNX Runtime's choice; 1 for ExecuTorch, "
                   "see runtimes/executorch.py); 0 = the runtime's default")
    p.add_argument("--label", help="free text stored with the result (e.g. 'Pi Zero 2 W' or 'qemu-user emulation')")
    p.add_argument("--json", metavar="FILE", type=cli_types.output_file, help="also write the result as JSON to FILE")


def run_command(args: argparse.Namespace) -> int:
    import tempfile

    from quic_edge.formats.bundle import read_manifest

    if args.steps < 1:
        raise ValueError(f"--steps: must be >= 1, got {args.steps}")
    runtime = read_manifest(args.bundle).get("runtime")
    if args.runtime and args.runtime != runtime:
        raise ValueError(f"--runtime {args.runtime}: {args.bundle} is a {runtime} bundle; pass --runtime {runtime}")
    if runtime != "ort" and (args.cpu_arena == "off" or args.mem_reuse == "on"):
        raise ValueError(f"--cpu-arena and --mem-reuse are ONNX Runtime settings; leave them out for a {runtime} bundle")
    print(f"measuring {args.bundle} ({runtime}, {args.steps} steps) in a fresh process...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="quic-edge-memory-") as scratch:
        result = measure_fresh(args.bundle, args.work or scratch, args.steps, args.cpu_arena == "on", args.threads,
                               mem_reuse=args.mem_reuse == "on")
    result["label"] = args.label
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


def _child_main() -> None:
    p = argparse.ArgumentParser(description="the measuring child of quic-edge bench memory")
    p.add_argument("bundle")
    p.add_argument("work")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cpu-arena", choices=("on", "off"), default="on")
    p.add_argument("--threads", type=int)
    p.add_argument("--mem-reuse", action="store_true")
    args = p.parse_args()
    from quic_edge.formats.bundle import read_manifest

    options: dict[str, Any] = {} if args.threads is None else {"threads": args.threads}
    if read_manifest(args.bundle).get("runtime") == "ort":
        options["cpu_arena"] = args.cpu_arena == "on"
        options["mem_reuse"] = args.mem_reuse
    print(json.dumps(measure(args.bundle, args.work, args.steps, **options)))


if __name__ == "__main__":
    _child_main()

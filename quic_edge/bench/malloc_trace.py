"""What a training step really holds at its peak, read from the allocator rather than from the graph.

The graph replay (quic_edge.bench.attribution) assumes each tensor lives from its producer to its last reader. ONNX
Runtime's memory planner can hold a buffer longer (a later tensor takes over a freed one, and the buffer then lives
until that tensor dies) and its kernels allocate their own scratch. This module sees both: a small LD_PRELOAD
interposer (malloc_interposer.c, compiled here with the system's C compiler) records every heap allocation and
release of one training step of the device loop (ORT's CPU arena off, so every tensor is its own allocation, after
`warmup` steps), and `replay` finds the step's peak of live bytes and what is alive there, by allocation size, with
where in the step each group was born and freed. It is how ORT's buffer reuse was found holding QuIC's forward
compound entries through the backward pass (runtimes/ort.py turns the reuse off).

    .venv/bin/python benchmarks/malloc_trace.py BUNDLE [BUNDLE ...] [--mem-reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from quic_edge import cli_types

MIB = 2**20
SOURCE = Path(__file__).with_name("malloc_interposer.c")


def compile_interposer(folder: str | os.PathLike) -> Path:
    """The interposer as a shared library in `folder`; a clear error without a C compiler."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("the malloc trace needs a C compiler (cc or gcc) to build its interposer; install one "
                           "(apt-get install gcc) or set CC")
    library = Path(folder) / "malloc_interposer.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE), "-ldl"], check=True,
                   capture_output=True)
    return library


def trace_step(bundle: str | os.PathLike, work: str | os.PathLike, trace: str | os.PathLike, library: Path,
               warmup: int = 3, mem_reuse: bool = False) -> None:
    """Trace one training step of `bundle` (after `warmup` steps) into `trace`, in a fresh process."""
    command = [sys.executable, "-m", "quic_edge.bench.malloc_trace", "--child", str(bundle), str(work), str(trace),
               str(library), str(warmup), *(["--mem-reuse"] if mem_reuse else [])]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "LD_PRELOAD": str(library)})
    if done.returncode != 0:
        raise RuntimeError(f"tracing {bundle} failed:\n{done.stderr[-2000:]}")


def replay(trace: str | os.PathLike, top: int = 12) -> dict[str, Any]:
    """Peak live bytes of a trace (allocations made before tracing began are not counted) and the allocations alive
    at that peak, grouped by size: count, MiB, and the earliest birth and latest release as fractions of the step."""
    events = [line.split() for line in Path(trace).read_text().splitlines()]
    events = [e for e in events if len(e) == 3 and e[0] in "+-"]
    live: dict[str, tuple[int, int]] = {}  # address -> (bytes, birth index)
    current = best = 0
    best_at, at_peak = 0, {}
    for index, (op, address, size) in enumerate(events):
        if op == "+":
            live[address] = (int(size), index)
            current += int(size)
        elif address in live:
            current -= live.pop(address)[0]
        if current > best:
            best, best_at, at_peak = current, index, dict(live)
    released = {}
    for index, (op, address, _) in enumerate(events[best_at + 1:], start=best_at + 1):
        if op == "-" and address in at_peak and address not in released:
            released[address] = index
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for address, (size, born) in at_peak.items():
        groups[size].append((born, released.get(address, len(events))))
    total = max(len(events), 1)
    rows = [{"bytes": size, "count": len(spans), "mib": size * len(spans) / MIB,
             "born": min(b for b, _ in spans) / total, "released": max(r for _, r in spans) / total}
            for size, spans in groups.items()]
    rows.sort(key=lambda r: -r["mib"])
    return {"peak_mib": best / MIB, "peak_at": best_at / total, "events": len(events),
            "small_mib": sum(r["mib"] for r in rows if r["bytes"] < 128 * 1024), "at_peak": rows[:top]}


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for bundle, r in results.items():
        lines += [f"{bundle}: peak {r['peak_mib']:.1f} MiB live during the step, at {r['peak_at']:.0%} of its "
                  f"{r['events']:,} allocator events ({r['small_mib']:.1f} MiB in blocks under 128 KiB)", "",
                  "| block bytes | count | MiB | first born (share of step) | last released |", "|---|---|---|---|---|"]
        lines += [f"| {row['bytes']:,} | {row['count']} | {row['mib']:.2f} | {row['born']:.2f} | {row['released']:.2f} |"
                  for row in r["at_peak"]]
        lines.append("")
    return "\n".join(lines)


def _child(bundle: str, work: str, trace: str, library: str, warmup: int, mem_reuse: bool) -> None:
    import ctypes

    from quic_edge.bench.memory import measuring_batch
    from quic_edge.runtimes import open_loop

    loop = open_loop(bundle, work, cpu_arena=False, mem_reuse=mem_reuse)
    batch = measuring_batch(loop)
    for _ in range(warmup):
        loop.train_step(batch)
    interposer = ctypes.CDLL(library)
    interposer.trace_on(trace.encode())
    loop.train_step(batch)
    interposer.trace_off()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        bundle, work, trace, library, warmup = args[1:6]
        _child(bundle, work, trace, library, int(warmup), "--mem-reuse" in args)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", help="ONNX Runtime bundle folders")
    parser.add_argument("--mem-reuse", action="store_true", help="keep ORT's buffer reuse on (the loop turns it off)")
    parser.add_argument("--json", metavar="FILE", type=cli_types.output_file, help="also write the results as JSON to FILE")
    parsed = parser.parse_args(args)
    results = {}
    with tempfile.TemporaryDirectory(prefix="quic-edge-malloc-") as tmp:
        library = compile_interposer(tmp)
        for i, bundle in enumerate(parsed.bundles):
            trace = Path(tmp) / f"trace{i}.txt"
            trace_step(bundle, Path(tmp) / f"work{i}", trace, library, mem_reuse=parsed.mem_reuse)
            results[bundle] = replay(trace)
    if parsed.json:
        Path(parsed.json).write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Step time of QuIC (1,2)'s two rotation layouts against LoRA r8 on one runtime (issue 11): the per-block layout
(quic_edge.layer.per_block_products; what ExecuTorch's export traces) and the batched one (blocks as a batch axis; what
eager PyTorch and ONNX Runtime run). MiniLM 8 x 64, AdamW, the export's rewrites, each case in a fresh process, rounds
in alternating order; ratios taken within each round. Beside the step: ExecuTorch's kernel calls / MiB written / GFLOP
per step (quic_edge.bench.executorch_ops), or ONNX Runtime's kernel time per step from its profiler, one profile per
case and round (quic_edge.bench.op_profile), split into the kernels on the batch's tokens and the fixed rest (the
rotation build, the weights' dequantization, the optimizer). Writes benchmarks/results/layout_{runtime}.{json,md}.

    .venv/bin/python benchmarks/layout.py --runtime executorch --rounds 6 --steps 10
    .venv/bin/python benchmarks/layout.py --runtime ort --rounds 6 --steps 10
    .venv/bin/python benchmarks/layout.py --runtime ort --rounds 6 --steps 10 --threads 1   # writes layout_ort_threads1.*

Beside the wall-clock step, each process's CPU time per step (time.process_time, all its threads): with one intra-op
thread (--threads 1) that is the work a step does, which time other tenants of a shared machine take from the process
does not inflate, so its ratio places QuIC against LoRA more closely than the wall clock can there.
The layout a runtime does not ship is made by swapping the context its export uses: a measurement, not an option.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any
from unittest import mock

from quic_edge.bench.common import fresh_scratch
from quic_edge.bench.device_memory import export, program_file
from quic_edge.bench.executorch_ops import op_volume
from quic_edge.bench.memory import measure_fresh
from quic_edge.bench.op_profile import op_profile

CASES = ("lora8", "quic12-per-block", "quic12-batched")
RATIOS = {"quic12-per-block / lora8": ("quic12-per-block", "lora8"), "quic12-batched / lora8": ("quic12-batched", "lora8"),
          "per-block / batched": ("quic12-per-block", "quic12-batched")}


def other_layout(runtime: str) -> contextlib.AbstractContextManager:
    """While active, `runtime`'s export traces the layout it does not ship."""
    if runtime == "executorch":
        return mock.patch("quic_edge.export.executorch.per_block_products", lambda model: contextlib.nullcontext())
    from quic_edge.export import ort
    from quic_edge.layer import per_block_products

    write_files = ort.write_files

    def per_block(model: Any, *args: Any, **options: Any) -> dict:
        with per_block_products(model):
            return write_files(model, *args, **options)

    return mock.patch.object(ort, "write_files", per_block)


def export_case(case: str, runtime: str, folder: Path) -> None:
    adapter = case.split("-")[0]
    shipped = "per-block" if runtime == "executorch" else "batched"
    with other_layout(runtime) if "-" in case and not case.endswith(shipped) else contextlib.nullcontext():
        export(adapter, runtime, folder, recompute=True)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def per_round(values: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each of RATIOS, case over case within each round."""
    return {name: [a / b for a, b in zip(values[x], values[y], strict=True)] for name, (x, y) in RATIOS.items()}


def ms(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", choices=("ort", "executorch"), required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--work", default="runs/bench-layout")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--threads", type=int, help="intra-op threads of every measured loop (default: the loop's own; "
                        "1 makes the CPU time per step the step's work)")
    args = parser.parse_args()
    work = fresh_scratch(Path(args.work) / args.runtime)
    for case in CASES:
        export_case(case, args.runtime, work / case)
    steps: dict[str, list[float]] = {case: [] for case in CASES}
    fastest: dict[str, list[float]] = {case: [] for case in CASES}  # the fastest step after the first, per process
    cpu: dict[str, list[float]] = {case: [] for case in CASES}  # median CPU time per step, per process
    profile_kernels = args.runtime == "ort"
    kernels: dict[str, list[float]] = {case: [] for case in CASES}
    sides: dict[str, dict[str, list[float]]] = {case: {"tokens": [], "fixed": []} for case in CASES}
    nodes: dict[str, int] = {}
    for r in range(args.rounds):
        for case in CASES if r % 2 == 0 else CASES[::-1]:
            measured = measure_fresh(work / case, work / "loops" / case, args.steps, threads=args.threads)
            steps[case].append(measured["median_step_ms"])
            fastest[case].append(measured["min_step_ms"])
            cpu[case].append(measured["median_step_cpu_ms"])
            line = (f"round {r}: {case}: {measured['median_step_ms']:.0f} ms (fastest {measured['min_step_ms']:.0f}, "
                    f"CPU {measured['median_step_cpu_ms']:.0f})")
            if profile_kernels:
                profile = op_profile(work / case, work / "profiles" / case, steps=args.steps, threads=args.threads or 0)
                kernels[case].append(profile["kernel_ms_per_step"])
                for side, cell in profile["by_side"].items():
                    sides[case][side].append(cell["ms"])
                nodes[case] = sum(op["nodes"] for op in profile["by_op"].values())
                line += f", kernels {profile['kernel_ms_per_step']:.0f} ms"
            print(line, flush=True)
    ratios, fastest_ratios, cpu_ratios = per_round(steps), per_round(fastest), per_round(cpu)
    results: dict[str, Any] = {"runtime": args.runtime, "rounds": args.rounds, "steps": args.steps,
                               "threads": args.threads, "step_ms": steps, "ratios": ratios, "fastest_step_ms": fastest,
                               "fastest_ratios": fastest_ratios, "step_cpu_ms": cpu, "cpu_ratios": cpu_ratios}
    if profile_kernels:
        results |= {"kernel_ms_per_step": kernels, "kernel_calls": nodes,
                    "kernel_ratios": per_round(kernels), "kernel_ms_by_side": sides}
        head = ["| case | kernel calls per step | kernel ms per step (profiler) | of it on the tokens side | fixed side "
                "(the same at any batch) | median step ms | fastest step ms | CPU ms per step |",
                "|---|---|---|---|---|---|---|---|"]
        rows = [f"| {c} | {nodes[c]} | {ms(kernels[c])} | {ms(sides[c]['tokens'])} | {ms(sides[c]['fixed'])} | "
                f"{ms(steps[c])} | {ms(fastest[c])} | {ms(cpu[c])} |" for c in CASES]
    else:
        volumes = {case: op_volume(program_file(str(work / case))) for case in CASES}
        results |= {"kernel_calls": {c: v["nodes"] for c, v in volumes.items()},
                    "mib_written": {c: v["mib_written"] for c, v in volumes.items()},
                    "gflop": {c: v["gflop"] for c, v in volumes.items()}}
        head = ["| case | kernel calls | MiB written | GFLOP | median step ms | fastest step ms | CPU ms per step |",
                "|---|---|---|---|---|---|---|"]
        rows = [f"| {c} | {v['nodes']} | {v['mib_written']:.1f} | {v['gflop']:.2f} | {ms(steps[c])} | {ms(fastest[c])} | "
                f"{ms(cpu[c])} |" for c, v in volumes.items()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"layout_{args.runtime}" + (f"_threads{args.threads}" if args.threads is not None else "")
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    name = {"ort": "ONNX Runtime", "executorch": "ExecuTorch"}[args.runtime]
    threads = f"{args.threads} intra-op thread(s)" if args.threads is not None else "the loop's own threads"
    lines = [f"{name}, MiniLM 8 x 64, AdamW, the export's rewrites, {threads}; {args.rounds} alternating rounds, "
             f"{args.steps} steps each (median step per process, its fastest step after the first, and its median CPU "
             "time per step, all threads, both less disturbed by other load on a shared machine; median and min-max over "
             "rounds).", "", *head, *rows,
             "", "| ratio within a round | median step: median (min-max) | fastest step | CPU time per step |"
             + (" kernel time |" if profile_kernels else ""), "|---|---|---|---|" + ("---|" if profile_kernels else "")]
    for ratio, values in ratios.items():
        extra = f" {spread(results['kernel_ratios'][ratio])} |" if profile_kernels else ""
        lines.append(f"| {ratio} | {spread(values)} | {spread(fastest_ratios[ratio])} | {spread(cpu_ratios[ratio])} |"
                     f"{extra}")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

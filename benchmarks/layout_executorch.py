"""ExecuTorch step time of QuIC (1,2)'s two rotation layouts against LoRA r8 (issue 11): the per-block layout its export
uses (quic_edge.layer.per_block_products) and the batched one ONNX Runtime runs, MiniLM 8 x 64, AdamW, both rewrites,
each case in a fresh process, rounds in alternating order; ratios taken within each round. Writes
benchmarks/results/layout_executorch.{json,md}.

    .venv/bin/python benchmarks/layout_executorch.py --rounds 6 --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
from pathlib import Path
from unittest import mock

from quic_edge.bench.device_memory import export, program_file
from quic_edge.bench.executorch_ops import op_volume
from quic_edge.bench.memory import measure_fresh

CASES = ("lora8", "quic12-per-block", "quic12-batched")


def export_case(case: str, folder: Path) -> None:
    adapter = case.split("-")[0]
    batched = mock.patch("quic_edge.export.executorch.per_block_products", lambda model: contextlib.nullcontext())
    with batched if case.endswith("batched") else contextlib.nullcontext():
        export(adapter, "executorch", folder, recompute=True)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--work", default="runs/bench-layout-executorch")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    for case in CASES:
        export_case(case, work / case)
    volumes = {case: op_volume(program_file(str(work / case))) for case in CASES}
    steps: dict[str, list[float]] = {case: [] for case in CASES}
    for r in range(args.rounds):
        for case in CASES if r % 2 == 0 else CASES[::-1]:
            measured = measure_fresh(work / case, work / "loops" / case, args.steps)
            steps[case].append(measured["median_step_ms"])
            print(f"round {r}: {case}: {measured['median_step_ms']:.0f} ms", flush=True)
    ratios = {"quic12-per-block / lora8": [a / b for a, b in zip(steps["quic12-per-block"], steps["lora8"], strict=True)],
              "quic12-batched / lora8": [a / b for a, b in zip(steps["quic12-batched"], steps["lora8"], strict=True)],
              "per-block / batched": [a / b for a, b in zip(steps["quic12-per-block"], steps["quic12-batched"],
                                                            strict=True)]}
    results = {"rounds": args.rounds, "steps": args.steps, "step_ms": steps, "ratios": ratios,
               "kernel_calls": {c: v["nodes"] for c, v in volumes.items()},
               "mib_written": {c: v["mib_written"] for c, v in volumes.items()},
               "gflop": {c: v["gflop"] for c, v in volumes.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layout_executorch.json").write_text(json.dumps(results, indent=1))
    lines = [f"ExecuTorch, MiniLM 8 x 64, AdamW, both rewrites; {args.rounds} alternating rounds, {args.steps} steps each "
             "(median step per process; median and min-max over rounds).", "",
             "| case | kernel calls | MiB written | GFLOP | median step ms |", "|---|---|---|---|---|"]
    for case in CASES:
        lines.append(f"| {case} | {volumes[case]['nodes']} | {volumes[case]['mib_written']:.1f} | "
                     f"{volumes[case]['gflop']:.2f} | {statistics.median(steps[case]):.0f} "
                     f"({min(steps[case]):.0f}-{max(steps[case]):.0f}) |")
    lines += ["", "| ratio within a round | median (min-max) |", "|---|---|"]
    lines += [f"| {name} | {spread(values)} |" for name, values in ratios.items()]
    (out / "layout_executorch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

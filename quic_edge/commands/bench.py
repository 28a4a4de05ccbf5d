"""`quic-edge bench compare|ablation|memory`: the project's claims, measured (issue 6)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from quic_edge.bench import cli, memory

    p = sub.add_parser("bench", help="benchmarks: QuIC against LoRA/OFT/head/full, the paper's ablation, device memory",
                       description="Benchmarks whose results are the project's claims; each writes its results as files.")
    bench = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    compare = bench.add_parser(
        "compare", help="QuIC (1,2), (1,2,3), block OFT, PEFT LoRA r8, head-only, full: size, memory, speed, accuracy",
        description="On the same frozen int8 MiniLM, targets and ONNX Runtime device loop: trainable numbers, bundle, "
        "checkpoint and delta bytes, peak RSS per phase and median step time (fresh torch-free processes), and "
        "held-out accuracy on two offline tasks over seeds. Writes compare.{json,md} and PNG plots to --out.",
    )
    cli.add_compare_arguments(compare)
    compare.set_defaults(func=cli.run_compare_command)
    ablation = bench.add_parser(
        "ablation", help="the paper's ablation on our data: orders, circuit depth, layout",
        description="Accuracy against angles for Hamming-weight orders {1}, {2}, {1,2}, {2,3}, {1,2,3}, shallower "
        "circuits and the brick layout, trained in eager PyTorch on the same splits. Writes ablation.{json,md,png}.",
    )
    cli.add_ablation_arguments(ablation)
    ablation.set_defaults(func=cli.run_ablation_command)
    mem = bench.add_parser(
        "memory", help="peak RSS per phase of training a bundle on this machine (the Raspberry Pi tool)",
        description="Train a few steps of a bundle in a fresh process and report peak RSS (VmHWM) after load, after "
        "the first step and over the steady state, the runtime's own memory figures, step times and the machine. "
        "Needs Linux; for ONNX Runtime bundles no torch is imported.",
    )
    memory.add_arguments(mem)
    mem.set_defaults(func=memory.run_command)
    p.set_defaults(func=lambda args: p.print_help() or 0)

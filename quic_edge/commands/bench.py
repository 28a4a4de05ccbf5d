"""`quic-edge bench compare|curve|ablation|memory`: the project's claims, measured (issues 6, 11, 12)."""

from __future__ import annotations

import argparse

SUBCOMMANDS = {  # name: (help, description)
    "compare": (
        "QuIC (1,2), (1,2,3), block OFT, PEFT LoRA r8, head-only, full on the task suite: accuracy and size",
        "On the same frozen int8 MiniLM, targets and ONNX Runtime device loop, on the suite's tasks (quic_edge.suite): "
        "each adapter's learning rate chosen on a validation split, test accuracy over seeds, the head/full gap per "
        "task and the share of LoRA's gain QuIC captures, with a paired bootstrap interval over seeds. Resumable "
        "(<work>/rows.jsonl). Writes compare.{json,md} and a PNG to --out.",
    ),
    "curve": (
        "the learning curve: test accuracy against training examples, head only against the adapters",
        "Train head only and the adapters on one suite task for each size in --sizes, over seeds, on the ONNX Runtime "
        "device loop: at the rates a compare run chose (--rates, the same at every size), or with --search at rates "
        "each size chooses on its own validation split. Resumable per size. Writes curve.{json,md,png}.",
    ),
    "ablation": (
        "the paper's ablation on the suite: orders, circuit depth, layout, orthogonality, blocks, targets",
        "Hamming-weight orders {1}, {1,2}, {1,2,3}, {2}, {2,3} and block OFT, circuits of depth 1, 3 and 7, the brick "
        "layout, the orthogonality control (compounds of an unconstrained matrix with as many numbers), 1, 2, 4 or 6 "
        "blocks at about the same angles, and other targets (query/key for QuIC and LoRA; value with attention's or "
        "the feed-forward block's output projection), each trained as `bench compare` trains (device loop, rate "
        "chosen on validation, seeds), beside head only, LoRA and full fine-tuning and the paper's STS-B numbers. "
        "Shares compare's runs (--work). Writes ablation.{json,md,png}.",
    ),
    "memory": (
        "peak RSS per phase of training a bundle on this machine (the Raspberry Pi tool)",
        "Train a few steps of a bundle in a fresh process and report peak RSS (VmHWM) after load, after the first step "
        "and over the steady state, the runtime's own memory figures, step times and the machine. Needs Linux; for "
        "ONNX Runtime bundles no torch is imported.",
    ),
}


def register(sub: argparse._SubParsersAction) -> None:
    from quic_edge.bench import cli, memory

    wiring = {"compare": (cli.add_compare_arguments, cli.run_compare_command),
              "curve": (cli.add_curve_arguments, cli.run_curve_command),
              "ablation": (cli.add_ablation_arguments, cli.run_ablation_command),
              "memory": (memory.add_arguments, memory.run_command)}
    p = sub.add_parser("bench", help="benchmarks: QuIC against LoRA/OFT/head/full, the paper's ablation, device memory",
                       description="Benchmarks whose results are the project's claims; each writes its results as files.")
    bench = p.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    for name, (short, long) in SUBCOMMANDS.items():
        add_arguments, run = wiring[name]
        parser = bench.add_parser(name, help=short, description=long)
        add_arguments(parser)
        parser.set_defaults(func=run)
    p.set_defaults(func=lambda args: p.print_help() or 0)

"""`quic-edge export`: write a training bundle for a device runtime."""

from __future__ import annotations

import argparse

from quic_edge import cli_types
from quic_edge.config_cli import add_config_arguments, add_model_arguments
from quic_edge.export import EXPORTERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a training bundle (QuIC adapters on a frozen int8 base) for a device runtime",
        description="Load a base model (by name, or a transformers folder as from_pretrained reads it), put QuIC "
        "adapters on its usual target layers or --targets (int8 base, head trainable) and write a bundle a device "
        "loop trains as it is: the runtime's training files, tokenizer (text) or preprocessing (images), labels and "
        "manifest.json with the sha256 of every file.",
    )
    p.add_argument("--runtime", choices=sorted(EXPORTERS), default="ort", help="device runtime (default ort)")
    add_model_arguments(p)
    p.add_argument("--labels", help="comma-separated label names of a classification model, e.g. a,b,c")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw", help="optimizer (default adamw)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3 for adamw, 1e-2 for sgd)")
    p.add_argument("--batch-size", type=int, default=8, help="fixed batch size of the training graph (default 8)")
    p.add_argument("--seq-len", type=int, default=64, help="fixed sequence length for text models (default 64)")
    p.add_argument("--head-lr", type=float, help="learning rate of the head (default: the same as --lr)")
    p.add_argument("--seed", type=cli_types.seed, default=0, help="seed of the head init (default 0)")
    p.add_argument("--sign", metavar="KEY", help="sign the bundle with this Ed25519 private key (PEM; quic-edge keygen)")
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from quic_edge import hf
    from quic_edge.config_cli import load_model
    from quic_edge.export import export_bundle
    from quic_edge.model import apply_quic
    from quic_edge.tasks import TASKS, example_batch

    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if args.batch_size < 1 or args.seq_len < 2:
        raise ValueError("--batch-size must be >= 1 and --seq-len >= 2")
    key = Path(args.sign).read_bytes() if args.sign else None
    num_labels = len(labels) if labels else 2
    model, config = load_model(args, num_labels, seed=args.seed)
    task = TASKS.get(args.model) or hf.task_of(model)
    if task == "classification" and not labels:
        raise ValueError(f"--labels: a classification bundle of {args.model} needs label names, e.g. --labels a,b,c")
    model = apply_quic(model, config)
    batch = example_batch(args.model if args.model in TASKS else model, args.batch_size, args.seq_len, num_labels)
    manifest = export_bundle(args.runtime, model, batch, args.out, labels=labels, optimizer=args.optimizer, lr=args.lr,
                             head_lr=args.head_lr, signing_key=key)
    numbers = sum(1 for _ in manifest["trainable"])
    print(f"wrote {args.runtime} bundle {args.out}: {len(manifest['files'])} files, {numbers} trainable tensors")
    return 0

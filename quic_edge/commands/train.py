"""`quic-edge train`: train a bundle on a data file with the device loop of its runtime."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quic_edge import cli_types


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a bundle on a csv/jsonl file (text,label) or images (folder or .npz) with its runtime's device loop",
        description="Verify the bundle, resume from the newest good checkpoint in --out, train over the examples "
        "in shuffled fixed-size batches, save a checkpoint after each epoch, and export the personal delta "
        "(--out/delta.safetensors). Torch is not needed (the device loop is torch-free).",
    )
    p.add_argument("--bundle", required=True, help="bundle folder (from quic-edge export)")
    p.add_argument("--data", required=True, help="text bundles: .csv/.tsv with columns text,label, or .jsonl; vision "
                   "bundles: a folder of <label>/<image> files, or an .npz with arrays images and labels")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data (default 1)")
    p.add_argument("--out", required=True, help="work folder: checkpoints/ and delta.safetensors")
    p.add_argument("--lr", type=float, help="learning rate (default: the bundle's)")
    p.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps, then linear decay to 0")
    p.add_argument("--eval", metavar="FILE", help="report accuracy on this data file after training")
    p.add_argument("--seed", type=cli_types.seed, default=0, help="shuffling seed (default 0)")
    p.add_argument("--start-over", action="store_true",
                   help="when no checkpoint in --out can be resumed, start from the bundle (they are kept aside)")
    p.add_argument("--trusted-key", action="append", metavar="PEM",
                   help="train only a bundle signed by this Ed25519 public key (repeatable; quic-edge keygen)")
    p.add_argument("--expected-digest", metavar="SHA256", help="train only the bundle with this digest (manifest.sha256)")
    p.add_argument("--encoding", help="text encoding of the data file (default: UTF-8, with or without a byte-order "
                   "mark; UTF-16 with one)")
    p.add_argument("--skip-bad-rows", action="store_true", help="train on the valid rows and list the others, instead "
                   "of refusing the file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quic_edge.data import read_examples
    from quic_edge.images import read_images
    from quic_edge.runtimes import open_loop
    from quic_edge.runtimes.loop import linear_schedule

    if args.epochs < 1:
        raise ValueError(f"--epochs: must be >= 1, got {args.epochs}")
    keys = [Path(k).read_bytes() for k in args.trusted_key] if args.trusted_key else None
    loop = open_loop(args.bundle, args.out, start_over=args.start_over, trusted_keys=keys,
                     expected_digest=args.expected_digest)
    images = "preprocessing" in loop.manifest
    if loop.manifest.get("task") != "classification" or not (images or "tokenizer" in loop.manifest["files"]):
        raise ValueError(f"{args.bundle}: `quic-edge train` trains text and image classification bundles; this one is "
                         f"{loop.manifest.get('task')} on {loop.manifest.get('model')}")

    def read(path: str, skip_bad_rows: bool = False) -> list:
        if images:
            return read_images(path, loop.labels)
        return read_examples(path, loop.labels, encoding=args.encoding, skip_bad_rows=skip_bad_rows)

    examples = read(args.data, args.skip_bad_rows)
    if args.lr is not None:
        loop.manifest["optimizer"]["lr"] = args.lr
    total = loop.steps_for(len(examples), args.epochs)
    schedule = linear_schedule(args.warmup, total) if args.warmup else None
    start = loop.step
    report = loop.fit(examples, epochs=args.epochs, seed=args.seed, schedule=schedule, progress=not args.no_progress,
                      checkpoint_every=max(1, total // args.epochs))
    checkpoint = loop.save_checkpoint()
    delta = loop.export_delta(Path(args.out) / "delta.safetensors")
    summary = {"steps": report.steps, "resumed_at_step": start, "first_loss": report.losses[0],
               "last_loss": report.losses[-1], "skipped_steps": report.skipped_steps, "seconds": round(report.seconds, 2),
               "checkpoint": str(checkpoint), "delta": str(delta)}
    if args.eval:
        summary["accuracy"] = loop.evaluate(read(args.eval))
    print(json.dumps(summary, indent=2))
    return 0

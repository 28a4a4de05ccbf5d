"""`quic-edge deploy`: merge a personal delta into the int8 base and export an inference model."""

from __future__ import annotations

import argparse

from quic_edge.config_cli import add_model_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="merge a personal delta into the int8 base and export an inference model (ONNX or ExecuTorch)",
        description="Fold the delta's rotations into the frozen weights (W' = R^T W), requantize them to int8 per output "
        "channel and export the merged network. onnx: optimum-onnx's exporter, weights kept int8 (MiniLM: load the "
        "folder with optimum.onnxruntime.ORTModelForCustomTasks, logits are the 'sentence_embedding' output; a "
        "transformers model folder: with ORTModelForSequenceClassification, ForImageClassification or ForCausalLM, "
        "output 'logits'); --swappable adds swappable.onnx, the unmerged base whose delta tensors are inputs (one file, "
        "many people; text models). executorch: model.pte for fixed [batch, seq-len] inputs (images: [batch, "
        "channels, size, size]). Each file is checked against the eager model.",
    )
    add_model_arguments(p)
    p.add_argument("--delta", required=True, help="the personal delta (.safetensors) to merge")
    p.add_argument("--runtime", choices=("onnx", "executorch"), default="onnx", help="inference runtime (default onnx)")
    p.add_argument("--out", required=True, help="folder to write (replaced if it exists)")
    p.add_argument("--labels", help="comma-separated label names, in head order (default label_0, label_1, ...)")
    p.add_argument("--swappable", action="store_true", help="onnx: also write swappable.onnx (delta tensors as inputs)")
    p.add_argument("--batch-size", type=int, default=1, help="executorch: fixed batch size (default 1)")
    p.add_argument("--seq-len", type=int, default=64, help="executorch: fixed sequence length (default 64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quic_edge.export.deploy import deploy

    if args.batch_size < 1 or args.seq_len < 2:
        raise ValueError("--batch-size must be >= 1 and --seq-len >= 2")
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    manifest = deploy(
        args.delta, args.runtime, args.out, labels=labels, swappable=args.swappable, batch=args.batch_size,
        seq_len=args.seq_len, base_model=args.model, task=args.task,
    )
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in manifest["parity_max_abs_logit_diff"].items())
    print(f"wrote {args.runtime} inference folder {args.out}: {', '.join(sorted(manifest['files'].values()))} "
          f"(max abs logit difference to the eager merged model: {diffs})")
    return 0

"""What every exporter shares: argument checks, the manifest (all but the runtime's files), side files, staging.

A runtime exporter (export/ort.py, export/executorch.py) calls `prepare_bundle` first, writes its own files
into the staging folder it gets back, adds them to manifest["files"] and calls `finish_bundle`. Nothing
appears at `out_dir` until the whole bundle is written, so a failed export leaves no half bundle behind.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quic_edge.export.bundle import MANIFEST, write_manifest
from quic_edge.tasks import TARGET_NAME, TASKS

OPTIMIZERS = ("adamw", "sgd")
DEFAULT_LR = {"adamw": 1e-3, "sgd": 1e-2}
LABELS_FILE = "labels.json"
TOKENIZER_FILE = "tokenizer.json"


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says what and how to fix it."""


def optimizer_spec(
    optimizer: str, lr: float | None = None, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> dict[str, Any]:
    """The manifest's optimizer entry. AdamW means torch.optim.AdamW (decoupled decay, eps after bias correction)."""
    if optimizer not in OPTIMIZERS:
        raise ExportError(f"optimizer: must be one of {OPTIMIZERS}, got {optimizer!r}")
    lr = DEFAULT_LR[optimizer] if lr is None else float(lr)
    if not lr > 0:
        raise ExportError(f"lr: must be > 0, got {lr}")
    return {"name": optimizer, "lr": lr, "betas": [float(b) for b in betas], "eps": float(eps),
            "weight_decay": float(weight_decay)}


def split_batch(example_batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(model inputs in order, target) from an example batch that holds the target under 'labels'."""
    if TARGET_NAME not in example_batch:
        raise ExportError(f"example_batch: give the target under {TARGET_NAME!r} (see quic_edge.tasks.example_batch)")
    inputs = {k: v for k, v in example_batch.items() if k != TARGET_NAME}
    for name, array in example_batch.items():
        if not isinstance(array, np.ndarray):
            raise ExportError(f"example_batch[{name!r}]: give a numpy array, got {type(array).__name__}")
    return inputs, example_batch[TARGET_NAME]


def infer_task(model: nn.Module, loss: str | None) -> str:
    if loss is not None:
        if loss not in set(TASKS.values()):
            raise ExportError(f"loss: must be one of {sorted(set(TASKS.values()))}, got {loss!r}")
        return loss
    name = getattr(model, "quic_base_name", None)
    if name not in TASKS:
        raise ExportError("loss: this model is not one of quic_edge.models; say loss='classification' or 'causal-lm'")
    return TASKS[name]


def trainable_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ExportError("the model has no trainable tensors: apply quic_edge.apply_quic (or a baseline) first")
    return params


def _spec(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(array.shape), "dtype": str(array.dtype)}


def _versions(extra: tuple[str, ...]) -> dict[str, str]:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("quic-edge", *extra):
        try:
            found[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def _check_labels(model: nn.Module, task: str, labels: list[str] | None, target: np.ndarray, logits: torch.Tensor) -> None:
    if task != "classification":
        if labels:
            raise ExportError(f"labels: a {task} model takes no labels, got {labels}")
        return
    classes = int(logits.shape[-1])
    if not labels:
        raise ExportError(f"labels: a classification bundle needs its {classes} label names (for example --labels a,b,c)")
    if len(labels) != classes or len(set(labels)) != len(labels) or not all(isinstance(x, str) and x for x in labels):
        raise ExportError(f"labels: give {classes} distinct non-empty names (the head has {classes} outputs), got {labels}")
    if target.min() < 0 or target.max() >= classes:
        raise ExportError(f"example_batch['labels']: ids must be in 0..{classes - 1}")


def prepare_bundle(
    model: nn.Module, example_batch: dict[str, np.ndarray], out_dir: str | Path, *, runtime: str, loss: str | None,
    labels: list[str] | None, optimizer: dict[str, Any], tokenizer: str | Path | None = None,
    versions: tuple[str, ...] = (),
) -> tuple[dict[str, Any], Path]:
    """Check the arguments, run the model once eagerly, write labels/tokenizer into a fresh staging folder.

    Returns (manifest without the runtime's files, staging folder). The eager run also fills the Givens and
    compound index caches with real tensors, so exporters capture them as constants instead of tracing
    their construction (which turns into thousands of scatter nodes).
    """
    task = infer_task(model, loss)
    inputs, target = split_batch(example_batch)
    trainable = trainable_tensors(model)
    model.eval()  # dropout off: the exported graphs are deterministic, so parity can be exact
    with torch.no_grad():
        logits = model(*[torch.from_numpy(a) for a in inputs.values()])
    labels = list(labels) if labels else None
    _check_labels(model, task, labels, target, logits)
    config = getattr(model, "quic_config", None)
    manifest: dict[str, Any] = {
        "runtime": runtime,
        "model": getattr(model, "quic_base_name", type(model).__name__),
        "task": task,
        "base_fingerprint": getattr(model, "quic_fingerprint", None),
        "config": dataclasses.asdict(config) if config is not None else None,
        "adapter": getattr(model, "quic_adapter", "quic" if config is not None else "full"),
        "quantize": getattr(model, "quic_quantize", None),
        "labels": labels,
        "inputs": [_spec(n, a) for n, a in inputs.items()],
        "target": _spec(TARGET_NAME, target),
        "trainable": {n: list(p.shape) for n, p in trainable.items()},
        "optimizer": optimizer,
        "files": {},
        "versions": _versions(versions),
    }
    if manifest["base_fingerprint"] is None:
        raise ExportError("the model has no base fingerprint: prepare it with quic_edge.apply_quic or quic_edge.baselines")
    staging = _staging_dir(Path(out_dir))
    if labels is not None:
        (staging / LABELS_FILE).write_text(json.dumps(labels))
        manifest["files"]["labels"] = LABELS_FILE
    tokenizer = tokenizer or _default_tokenizer(model)
    if tokenizer is not None:
        shutil.copyfile(tokenizer, staging / TOKENIZER_FILE)
        manifest["files"]["tokenizer"] = TOKENIZER_FILE
    return manifest, staging


def _default_tokenizer(model: nn.Module) -> Path | None:
    if getattr(model, "quic_base_name", None) == "minilm":
        from quic_edge.models import minilm_path

        return minilm_path() / TOKENIZER_FILE
    return None


def _staging_dir(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"out: {out_dir} is a file; give a folder for the bundle")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise ExportError(f"out: {out_dir} exists and is not a bundle; give an empty or new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))


def discard_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def finish_bundle(staging: Path, out_dir: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write manifest.json (with every file's sha256) and move the staging folder to `out_dir`."""
    out_dir = Path(out_dir)
    manifest = write_manifest(staging, manifest)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{staging.name[-8:]}")
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out_dir)
    return manifest

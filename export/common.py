"""What every exporter shares: argument checks, the manifest (all but the runtime's files), side files, staging.

A runtime exporter (export/ort.py, export/executorch.py) calls `write_bundle` with a function that writes the
runtime's own files into the staging folder. Nothing appears at `out_dir` until the whole bundle is written
(export/staging.py), so a failed export leaves no half bundle behind.
"""

from __future__ import annotations

import json
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from quic_edge import hf
from quic_edge.export import ExportError
from quic_edge.export.staging import staged
from quic_edge.formats.bundle import MANIFEST, write_manifest
from quic_edge.formats.optimizer import optimizer_spec
from quic_edge.state import AdapterError, delta_parameters, state_of
from quic_edge.tasks import IGNORE_INDEX, TARGET_NAME, TASKS

LABELS_FILE = "labels.json"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_LR = {"adamw": 1e-3, "sgd": 1e-2}


def orthogonal_angles(model: nn.Module) -> set[str]:
    """Names of the angle tensors whose rotations are orthogonal (every QuIC layer but the unconstrained control)."""
    from quic_edge.layer import QuICLinear

    return {f"{name}.angles" for name, module in model.named_modules()
            if isinstance(module, QuICLinear) and module.config.matrix != "unconstrained"}


def bundle_optimizer(model: nn.Module, optimizer: str, lr: float | None, betas: tuple[float, float], eps: float,
                     weight_decay: float, head_lr: float | None) -> dict[str, Any]:
    """The manifest's optimizer entry; head_lr gives the head (the state's trainable modules) its own rate."""
    lr = DEFAULT_LR.get(optimizer, 1e-3) if lr is None else lr
    groups = None
    if head_lr is not None:
        state = state_of(model)
        head = [n for n in delta_parameters(model) if set(n.split(".")[:-1]) & set(state.trainable_modules)]
        if not head:
            raise ExportError(f"head_lr: this model has no head among {state.trainable_modules} to give a rate to")
        if not (isinstance(head_lr, int | float) and head_lr > 0):
            raise ExportError(f"head_lr: must be > 0, got {head_lr!r}")
        groups = [{"name": "head", "params": head, "lr_scale": head_lr / lr}]
    try:
        return optimizer_spec(optimizer, lr, betas, eps, weight_decay, groups)
    except ValueError as err:
        raise ExportError(str(err)) from None


def split_batch(example_batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(model inputs in order, target) from an example batch that holds the target under 'labels'."""
    if not isinstance(example_batch, dict) or TARGET_NAME not in example_batch:
        raise ExportError(f"example_batch: give the target under {TARGET_NAME!r} (see quic_edge.tasks.example_batch)")
    for name, array in example_batch.items():
        if not isinstance(array, np.ndarray):
            raise ExportError(f"example_batch[{name!r}]: give a numpy array, got {type(array).__name__}")
    inputs = {k: v for k, v in example_batch.items() if k != TARGET_NAME}
    return inputs, example_batch[TARGET_NAME]


def infer_task(model: nn.Module, loss: str | None) -> str:
    if loss is not None:
        if loss not in set(TASKS.values()):
            raise ExportError(f"loss: must be one of {sorted(set(TASKS.values()))}, got {loss!r}")
        return loss
    from_class = hf.task_of(model)
    if from_class is not None:
        return from_class
    name = getattr(model, "quic_base_name", None)
    if name not in TASKS:
        raise ExportError(f"loss: the task of a {type(model).__name__} is unknown (not a transformers *For...Classification"
                          " or *ForCausalLM class, nor one of quic_edge.models); say loss='classification' or 'causal-lm'")
    return TASKS[name]


def vocab_size(model: nn.Module) -> int | None:
    """Rows of the model's input embedding table (token ids must be below it), when it has one."""
    for module in model.modules():
        get = getattr(module, "get_input_embeddings", None)
        if callable(get):
            try:
                table = get()
            except (NotImplementedError, AttributeError):
                continue
            if table is not None and hasattr(table, "num_embeddings"):
                return int(table.num_embeddings)
    return None


def tensor_spec(name: str, array: np.ndarray, bounds: tuple[int, int] | None = None) -> dict[str, Any]:
    """A manifest input or target entry; `bounds` = the inclusive range of valid integer values (checked on device)."""
    spec: dict[str, Any] = {"name": name, "shape": list(array.shape), "dtype": str(array.dtype)}
    if bounds is not None:
        spec["range"] = [int(bounds[0]), int(bounds[1])]
    return spec


def _bounds(name: str, task: str, vocab: int | None, classes: int) -> tuple[int, int] | None:
    if name == "attention_mask":
        return 0, 1
    if name == "input_ids" and vocab:
        return 0, vocab - 1
    if name == TARGET_NAME:
        return (0, classes - 1) if task == "classification" else ((0, vocab - 1) if vocab else None)
    return None


def _versions(extra: tuple[str, ...]) -> dict[str, str]:
    found = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("quic-edge", *extra):
        try:
            found[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def _check_labels(task: str, labels: list[str] | None, target: np.ndarray, logits: torch.Tensor) -> None:
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


def describe(
    model: nn.Module, example_batch: dict[str, np.ndarray], *, runtime: str, loss: str | None, labels: list[str] | None,
    optimizer: dict[str, Any], versions: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check the arguments, run the model once eagerly (label count, dropout off), and return the manifest without files."""
    try:
        state = state_of(model)
    except AdapterError as err:
        raise ExportError(str(err)) from None
    task = infer_task(model, loss)
    inputs, target = split_batch(example_batch)
    trainable = delta_parameters(model)
    if not trainable:
        raise ExportError("the model has no trainable tensors: its adapter trains nothing")
    model.eval()  # dropout off: the exported graphs are deterministic, so parity can be exact
    with torch.no_grad():
        try:
            logits = hf.call(model, tuple(inputs), [torch.from_numpy(a) for a in inputs.values()])
        except TypeError as err:  # a ModelOutput without logits, or inputs the model does not take
            raise ExportError(f"example_batch: calling {type(model).__name__} with inputs {list(inputs)} failed: {err}") from None
    labels = list(labels) if labels else None
    _check_labels(task, labels, target, logits)
    vocab, classes = vocab_size(model), int(logits.shape[-1])
    return {
        "runtime": runtime,
        "model": state.base_model or type(model).__name__,
        "task": task,
        **state.identity(),
        "config": None if state.config is None else state.config.to_dict(),
        "labels": labels,
        "inputs": [tensor_spec(n, a, _bounds(n, task, vocab, classes)) for n, a in inputs.items()],
        "target": tensor_spec(TARGET_NAME, target, _bounds(TARGET_NAME, task, vocab, classes))
        | ({"ignore_index": IGNORE_INDEX} if task == "causal-lm" else {}),
        **({"preprocessing": pre} if (pre := hf.image_preprocessing(model)) else {}),
        "trainable": {n: list(p.shape) for n, p in trainable.items()},
        "optimizer": optimizer,
        "files": {},
        "versions": _versions(versions),
    }


def export_bundle(
    runtime: str, model: nn.Module, example_batch: dict[str, np.ndarray], out_dir: str | Path, *,
    loss: str | None = None, optimizer: str = "adamw", lr: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
    head_lr: float | None = None, labels: list[str] | None = None, tokenizer: str | Path | None = None,
    signing_key: bytes | None = None, recompute: bool = True,
) -> dict[str, Any]:
    """Write a training bundle of `model` (its delta trains, all else frozen) for `runtime`; returns the manifest.

    `example_batch` fixes the input names, shapes and dtypes (the target under 'labels'); `loss` is the task
    ('classification' or 'causal-lm', inferred for quic_edge.models); `optimizer` 'adamw' (torch.optim.AdamW's
    semantics) or 'sgd'; `head_lr` trains the head at its own rate; `signing_key` (an Ed25519 private key, PEM) signs
    the bundle; `recompute` remakes cheap tensors in the backward pass instead of keeping them (both runtimes).
    Everything is written into a staging folder and moved to `out_dir` whole (export/staging.py).
    """
    from quic_edge.export import exporter

    runtime_module = exporter(runtime)
    spec = bundle_optimizer(model, optimizer, lr, betas, eps, weight_decay, head_lr)
    manifest = describe(model, example_batch, runtime=runtime, loss=loss, labels=labels, optimizer=spec,
                        versions=runtime_module.VERSIONS)
    with staged(out_dir, is_ours=lambda d: (d / MANIFEST).is_file()) as staging:
        if manifest["labels"] is not None:
            (staging / LABELS_FILE).write_text(json.dumps(manifest["labels"]))
            manifest["files"]["labels"] = LABELS_FILE
        tokenizer = tokenizer or _default_tokenizer(model)
        if tokenizer is not None:
            shutil.copyfile(tokenizer, staging / TOKENIZER_FILE)
            manifest["files"]["tokenizer"] = TOKENIZER_FILE
        manifest["files"].update(runtime_module.write_files(model, example_batch, staging, manifest, recompute=recompute))
        manifest = write_manifest(staging, manifest, signing_key)
    return manifest


def _default_tokenizer(model: nn.Module) -> Path | None:
    if hf.is_transformers_model(model):
        return hf.tokenizer_file(model)
    if getattr(model, "quic_base_name", None) == "minilm":
        from quic_edge.models import minilm_path

        return minilm_path() / TOKENIZER_FILE
    return None

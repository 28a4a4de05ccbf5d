"""Deploy a person's model: merge their delta into the int8 base and write an inference folder for a runtime.

    deploy("alex.safetensors", "onnx", "deploy/alex", swappable=True)

- onnx: the merged network through optimum-onnx (export/optimum_onnx.py), plus the swappable graph when asked
  (export/swappable.py);
- executorch: the merged network as a `.pte` for fixed input shapes (export/executorch_inference.py).
Every exported model is run against the eager merged (or unmerged) model before anything is written; the folder
appears whole or not at all (export/staging.py).
"""

from __future__ import annotations

import copy
import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quic_edge import hf, models
from quic_edge.delta import DeltaError, from_delta, read_delta_file
from quic_edge.export.staging import staged
from quic_edge.formats.bundle import sha256_file
from quic_edge.model import merge
from quic_edge.state import delta_parameters
from quic_edge.tasks import TARGET_NAME, example_batch

DEPLOY_MANIFEST = "deploy.json"
DEPLOY_FORMAT = "quic-edge-deploy"
RUNTIMES = ("onnx", "executorch")
PARITY_ATOL = 1e-4  # an exported graph against the eager merged model, fp32 on both sides


def example_inputs(batch: int = 1, seq_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and an attention mask with padding in every row but the first (to exercise the mask)."""
    ids = torch.randint(1000, 20000, (batch, seq_len))
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    for row in range(1, batch):
        mask[row, seq_len - row % seq_len :] = 0
    return ids, mask


def deploy(
    delta_path: str | Path, runtime: str, out_dir: str | Path, *, labels: list[str] | None = None,
    swappable: bool = False, batch: int = 1, seq_len: int = 64, base_model: str | None = None, task: str | None = None,
) -> dict:
    """Merge a delta into its int8 base and write an inference folder for `runtime`; returns the folder's manifest.

    `base_model`: the base the delta was trained on: minilm (the default), or the `from_pretrained` folder of a
    transformers model (its task from the config unless `task` says otherwise)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: must be one of {RUNTIMES}, got {runtime!r}")
    if swappable and runtime != "onnx":
        raise ValueError("swappable: the swappable graph is an ONNX model; use --runtime onnx")
    _, meta = read_delta_file(delta_path)
    model = _adapted_model(delta_path, meta, base_model, task)
    merged = merge(copy.deepcopy(model)).eval()
    names = hf.input_names(model)
    inputs = _example(model, max(batch, 2) if runtime == "onnx" else batch, seq_len)
    with torch.no_grad():
        reference = hf.call(merged, names, [torch.from_numpy(inputs[k]) for k in names]).numpy()
    labels = _labels(model, labels, reference)
    with staged(out_dir, is_ours=lambda d: (d / DEPLOY_MANIFEST).is_file()) as staging:
        files, parity = _write_runtime_files(runtime, model, merged, staging, swappable, inputs, reference)
        if labels is not None:
            (staging / "labels.json").write_text(json.dumps(labels))
            files["labels"] = "labels.json"
        first = list(inputs[names[0]].shape)
        shape = first if runtime == "executorch" else ["batch", "sequence"] if names == hf.TEXT_INPUTS else ["batch", *first[1:]]
        manifest = _manifest(runtime, delta_path, meta, model, labels, files, parity, staging, shape)
    return manifest


def _adapted_model(delta_path: str | Path, meta: dict, base_model: str | None, task: str | None) -> nn.Module:
    """The model the delta was trained on, adapted and loaded: MiniLM by name, a transformers model from its folder."""
    trained_on = meta.get("base_model")
    if base_model is not None and base_model not in models.MODELS:  # a folder: from_delta checks its fingerprint
        model = from_delta(delta_path, base=base_model, task=task)
        if not hf.is_transformers_model(model):
            raise DeltaError(f"--model {base_model}: deploy takes MiniLM or a transformers model folder")
        return model
    if base_model is not None and trained_on != base_model:
        raise DeltaError(f"{delta_path} was trained on base {trained_on!r}, not {base_model!r}")
    if trained_on in models.MODELS and trained_on != "minilm":
        raise DeltaError(f"{delta_path}: deploy serves MiniLM and transformers models; this delta's base is "
                         f"{trained_on!r}, a test model")
    if trained_on != "minilm":
        raise DeltaError(f"{delta_path} was trained on {trained_on!r}: give its model folder (--model FOLDER)")
    return from_delta(delta_path)


def _example(model: nn.Module, batch: int, seq_len: int) -> dict[str, np.ndarray]:
    """Inputs to check exports with (text rows padded, but the first): MiniLM's vocabulary, or the model's config."""
    found = example_batch(model if hf.is_transformers_model(model) else "minilm", batch, seq_len, num_labels=2, padded=True)
    return {k: v for k, v in found.items() if k != TARGET_NAME}


def _labels(model: nn.Module, labels: list[str] | None, logits: np.ndarray) -> list[str] | None:
    if hf.task_of(model) == "causal-lm":
        if labels:
            raise ValueError("labels: a language model has no labels")
        return None
    classes = int(logits.shape[-1])
    labels = list(labels) if labels else [f"label_{i}" for i in range(classes)]
    if len(labels) != classes:
        raise ValueError(f"labels: the delta's head has {classes} outputs, got {len(labels)} names")
    return labels


def _write_runtime_files(runtime, model, merged, staging, swappable, inputs, reference) -> tuple[dict, dict]:
    from quic_edge.export.executorch_inference import export_executorch_program, run_executorch
    from quic_edge.export.optimum_onnx import export_optimum_onnx, export_transformers_onnx, run_onnx, run_optimum
    from quic_edge.export.swappable import export_swappable_onnx

    names, source = hf.input_names(model), hf.source_folder(model)
    tensors = tuple(torch.from_numpy(inputs[k]) for k in names)
    side = {}
    if runtime == "executorch":
        export_executorch_program(hf.Logits(merged, names), staging / "model.pte", tensors)
        parity = {"model": _checked_diff(run_executorch(staging / "model.pte", *tensors), reference, "model.pte")}
        tokenizer = hf.tokenizer_file(model) if source else models.minilm_path() / "tokenizer.json"
        if tokenizer is not None:
            shutil.copy(tokenizer, staging / "tokenizer.json")
            side["tokenizer"] = "tokenizer.json"
        return {"program": "model.pte", **side}, parity
    if hf.is_transformers_model(model):
        export_transformers_onnx(merged, source, staging)
        logits = run_onnx(staging / "model.onnx", inputs)
    else:
        export_optimum_onnx(merged, staging)
        logits = run_optimum(staging, *tensors)
    parity = {"model": _checked_diff(logits, reference, "model.onnx")}
    files = {"model": "model.onnx", "config": "config.json"}
    files |= {Path(n).stem: n for n in ("tokenizer.json", "preprocessor_config.json") if (staging / n).is_file()}
    if swappable:
        export_swappable_onnx(model, staging / "swappable.onnx", tuple(torch.from_numpy(v) for v in
                                                                        _example(model, 2, 16).values()))
        with torch.no_grad():
            unmerged = hf.call(model, names, tensors).numpy()
        feeds = {name: p.detach().numpy() for name, p in delta_parameters(model).items()}
        parity["swappable"] = _checked_diff(run_onnx(staging / "swappable.onnx", inputs | feeds), unmerged,
                                            "swappable.onnx")
        files["swappable"] = "swappable.onnx"
    return files, parity


def _checked_diff(logits: np.ndarray, reference: np.ndarray, what: str) -> float:
    diff = float(np.abs(logits - reference).max())
    if not diff <= PARITY_ATOL:
        raise RuntimeError(f"{what}: logits differ from the eager model by {diff:.3g} (> {PARITY_ATOL}); not deployed")
    return diff


def _manifest(runtime, delta_path, meta, model, labels, files, parity, folder, shape) -> dict:
    from quic_edge.export.optimum_onnx import LOGITS_OUTPUT

    versions = {}
    for dist in ("quic-edge", "torch", "onnx", "onnxruntime-training-cpu", "optimum-onnx", "executorch", "transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    transformers_model = hf.is_transformers_model(model)
    manifest = {
        "format": DEPLOY_FORMAT, "format_version": 1, "runtime": runtime, "base_model": meta.get("base_model"),
        "base_fingerprint": meta["base_fingerprint"], "config": json.loads(meta["config"]), "weights": "int8",
        "delta_sha256": sha256_file(delta_path), "task": hf.task_of(model) or "classification", "labels": labels,
        "inputs": list(hf.input_names(model)), "input_shape": shape,
        "logits_output": 0 if runtime == "executorch" else ("logits" if transformers_model else LOGITS_OUTPUT),
        "files": files, "sha256": {rel: sha256_file(folder / rel) for rel in sorted(set(files.values()))},
        "parity_max_abs_logit_diff": parity, "versions": versions,
    }
    if hf.image_preprocessing(model):
        manifest["preprocessing"] = hf.image_preprocessing(model)
    (folder / DEPLOY_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def merged_model(delta_path: str | Path) -> nn.Module:
    """The served model: the delta folded into its base (int8 per channel again)."""
    return merge(from_delta(delta_path)).eval()

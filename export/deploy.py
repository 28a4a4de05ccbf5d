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

from quic_edge import models
from quic_edge.delta import DeltaError, from_delta, read_delta_file
from quic_edge.export.staging import staged
from quic_edge.formats.bundle import sha256_file
from quic_edge.model import merge
from quic_edge.state import delta_parameters

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
    swappable: bool = False, batch: int = 1, seq_len: int = 64, base_model: str | None = None,
) -> dict:
    """Merge a delta into its int8 base and write an inference folder for `runtime`; returns the folder's manifest."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: must be one of {RUNTIMES}, got {runtime!r}")
    if swappable and runtime != "onnx":
        raise ValueError("swappable: the swappable graph is an ONNX model; use --runtime onnx")
    _, meta = read_delta_file(delta_path)
    if base_model is not None and meta.get("base_model") != base_model:
        raise DeltaError(f"{delta_path} was trained on base {meta.get('base_model')!r}, not {base_model!r}")
    if meta.get("base_model") != "minilm":
        raise DeltaError(f"{delta_path}: deploy serves MiniLM text classifiers; this delta's base is {meta.get('base_model')!r}")
    model = from_delta(delta_path)
    classes = model.classifier.out_features
    labels = list(labels) if labels else [f"label_{i}" for i in range(classes)]
    if len(labels) != classes:
        raise ValueError(f"labels: the delta's head has {classes} outputs, got {len(labels)} names")
    merged = merge(copy.deepcopy(model)).eval()
    with staged(out_dir, is_ours=lambda d: (d / DEPLOY_MANIFEST).is_file()) as staging:
        files, parity = _write_runtime_files(runtime, model, merged, staging, swappable, batch, seq_len)
        (staging / "labels.json").write_text(json.dumps(labels))
        files["labels"] = "labels.json"
        manifest = _manifest(runtime, delta_path, meta, labels, files, parity, staging, batch, seq_len)
    return manifest


def _write_runtime_files(runtime, model, merged, staging, swappable, batch, seq_len) -> tuple[dict, dict]:
    from quic_edge.export.executorch_inference import export_executorch_program, run_executorch
    from quic_edge.export.optimum_onnx import export_optimum_onnx, run_optimum
    from quic_edge.export.swappable import export_swappable_onnx

    ids, mask = example_inputs(max(batch, 2) if runtime == "onnx" else batch, seq_len)
    with torch.no_grad():
        reference = merged(ids, mask).numpy()
    if runtime == "executorch":
        export_executorch_program(merged, staging / "model.pte", (ids, mask))
        shutil.copy(models.minilm_path() / "tokenizer.json", staging / "tokenizer.json")
        parity = {"model": _checked_diff(run_executorch(staging / "model.pte", ids, mask), reference, "model.pte")}
        return {"program": "model.pte", "tokenizer": "tokenizer.json"}, parity
    export_optimum_onnx(merged, staging)
    parity = {"model": _checked_diff(run_optimum(staging, ids, mask), reference, "model.onnx")}
    files = {"model": "model.onnx", "config": "config.json", "tokenizer": "tokenizer.json"}
    if swappable:
        export_swappable_onnx(model, staging / "swappable.onnx", example_inputs(2, 16))
        with torch.no_grad():
            unmerged = model(ids, mask).numpy()
        feeds = {name: p.detach().numpy() for name, p in delta_parameters(model).items()}
        logits = _ort_run(staging / "swappable.onnx", {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), **feeds})
        parity["swappable"] = _checked_diff(logits, unmerged, "swappable.onnx")
        files["swappable"] = "swappable.onnx"
    return files, parity


def _checked_diff(logits: np.ndarray, reference: np.ndarray, what: str) -> float:
    diff = float(np.abs(logits - reference).max())
    if not diff <= PARITY_ATOL:
        raise RuntimeError(f"{what}: logits differ from the eager model by {diff:.3g} (> {PARITY_ATOL}); not deployed")
    return diff


def _ort_run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _manifest(runtime, delta_path, meta, labels, files, parity, folder, batch, seq_len) -> dict:
    from quic_edge.export.optimum_onnx import LOGITS_OUTPUT

    versions = {}
    for dist in ("quic-edge", "torch", "onnx", "onnxruntime-training-cpu", "optimum-onnx", "executorch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    manifest = {
        "format": DEPLOY_FORMAT, "format_version": 1, "runtime": runtime, "base_model": meta.get("base_model"),
        "base_fingerprint": meta["base_fingerprint"], "config": json.loads(meta["config"]), "weights": "int8",
        "delta_sha256": sha256_file(delta_path), "labels": labels, "inputs": ["input_ids", "attention_mask"],
        "input_shape": [batch, seq_len] if runtime == "executorch" else ["batch", "sequence"],
        "logits_output": LOGITS_OUTPUT if runtime == "onnx" else 0, "files": files,
        "sha256": {rel: sha256_file(folder / rel) for rel in sorted(set(files.values()))},
        "parity_max_abs_logit_diff": parity, "versions": versions,
    }
    (folder / DEPLOY_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def merged_model(delta_path: str | Path) -> nn.Module:
    """The served model: the delta folded into its base (int8 per channel again)."""
    return merge(from_delta(delta_path)).eval()

"""Inference exporters for a person's model: merged (zero overhead) or swappable (deltas fed at run time).

- `personal_model(delta)`: the base the delta was trained on, QuIC applied, the delta loaded (checked).
- `export_optimum_onnx(merged, out)`: the merged network through optimum-onnx's exporter. Our head (mean pooling
  over real tokens, then a linear layer) is the stock sentence-transformers stack Transformer -> Pooling(mean) ->
  Dense(identity), so the export is a sentence-transformers feature-extraction model whose `sentence_embedding`
  output is the logits; `optimum.onnxruntime.ORTModelForCustomTasks` loads it. optimum exports from a checkpoint,
  so the merged int8 weights are written dequantized; `int8_initializers` then stores every such weight int8 again
  (DequantizeLinear per channel, bit-identical values). ONNX Runtime keeps DequantizeLinear unfolded by default:
  int8 in memory, dequantized every run (benchmarks/results/inference.md: 44 ms, 374 MiB at batch 1, 1 thread);
  session option session.disable_quant_qdq=1 folds it at load (19 ms, 462 MiB). The device picks.
- `export_executorch_program(merged, out)`: torch.export -> to_edge -> to_executorch; the int8 weights stay int8.
- `export_swappable_onnx(model, out)`: the int8 base with every delta tensor (angles and head) a graph input,
  so one file serves many people (quic_edge.deploy.SwappableSession feeds a delta file).
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quic_edge import models
from quic_edge.config import QuICConfig
from quic_edge.delta import DeltaError, load_delta, read_delta_file
from quic_edge.model import apply_quic, merge
from quic_edge.quantize import Int8Embedding, Int8Linear

LOGITS_OUTPUT = "sentence_embedding"  # the optimum (sentence-transformers) export's name for our logits
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def personal_model(delta_path: str | Path, seed: int = 0) -> nn.Module:
    """The unmerged model a delta was trained on: its base (by name), its config and quantization, the delta loaded."""
    tensors, meta = read_delta_file(delta_path)
    name = meta.get("base_model") or ""
    if name not in models.MODELS:
        raise DeltaError(f"{delta_path}: base model {name!r} is not one of {models.MODELS}")
    head = tensors.get("classifier.weight")
    if head is None:
        raise DeltaError(f"{delta_path}: no classifier.weight; deploy serves classification deltas")
    model, _ = models.load(name, num_labels=head.shape[0], seed=seed)
    quantize = None if meta["quantize"] == "None" else meta["quantize"]
    model = apply_quic(model, QuICConfig.from_json(meta["config"]), quantize=quantize)
    return load_delta(model, delta_path).eval()


def merged_model(delta_path: str | Path, quantize: str | None = "int8") -> nn.Module:
    """The served model: the delta folded into the base (int8 per channel again, or fp32)."""
    return merge(personal_model(delta_path), quantize=quantize).eval()


@torch.no_grad()
def dequantize(module: nn.Module) -> nn.Module:
    """Replace every Int8Linear / Int8Embedding below `module` by its fp32 twin holding the dequantized weight."""
    for name, child in list(module.named_children()):
        if isinstance(child, Int8Linear):
            linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            linear.weight.copy_(child.dequantized_weight())
            if child.bias is not None:
                linear.bias.copy_(child.bias)
            setattr(module, name, linear)
        elif isinstance(child, Int8Embedding):
            table = child.weight_int8.float() * child.weight_scale[:, None]
            setattr(module, name, nn.Embedding.from_pretrained(table, freeze=True, padding_idx=child.padding_idx))
        else:
            dequantize(child)
    return module


def int8_weights(module: nn.Module) -> dict[bytes, tuple[np.ndarray, np.ndarray]]:
    """sha256 of each dequantized int8 weight's fp32 bytes -> (int8 values, per-row scale)."""
    found = {}
    for child in module.modules():
        if isinstance(child, Int8Linear | Int8Embedding):
            q, scale = child.weight_int8.numpy(), child.weight_scale.numpy()
            fp32 = (child.weight_int8.float() * child.weight_scale[:, None]).numpy()
            found[hashlib.sha256(fp32.tobytes()).digest()] = (q, scale)
    return found


def sentence_transformer_dir(merged: nn.Module, out: Path) -> Path:
    """Write the merged classifier as a sentence-transformers checkpoint: Transformer, mean Pooling, identity Dense."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Pooling, Transformer

    encoder = dequantize(copy.deepcopy(merged.encoder))
    hf_dir = out / "hf"
    encoder.save_pretrained(hf_dir)
    for name in TOKENIZER_FILES:
        shutil.copy(models.minilm_path() / name, hf_dir / name)
    head = merged.classifier
    transformer = Transformer(str(hf_dir))
    pooling = Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
    dense = Dense(head.in_features, head.out_features, bias=True, activation_function=nn.Identity())
    with torch.no_grad():
        dense.linear.weight.copy_(head.weight)
        dense.linear.bias.copy_(head.bias)
    st_dir = out / "st"
    SentenceTransformer(modules=[transformer, pooling, dense], device="cpu").save(str(st_dir))
    return st_dir


def export_optimum_onnx(merged: nn.Module, out: str | Path, int8: bool = True) -> Path:
    """optimum-onnx export of a merged MiniLM classifier into `out` (model.onnx, config, tokenizer); returns `out`."""
    from optimum.exporters.onnx import main_export

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        st_dir = sentence_transformer_dir(merged, Path(tmp))
        main_export(
            str(st_dir), output=out, task="feature-extraction", library_name="sentence_transformers",
            do_validation=False, local_files_only=True,
        )
    if int8:
        int8_initializers(out / "model.onnx", int8_weights(merged))
    return out


def int8_initializers(path: Path, weights: dict[bytes, tuple[np.ndarray, np.ndarray]]) -> int:
    """Store each fp32 initializer that equals a known int8 weight (or its transpose) as int8 + DequantizeLinear.

    The dequantized values are bit-identical (DequantizeLinear computes q * scale in fp32, as Int8Linear does).
    Returns the number of initializers rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph, kept, rewritten = model.graph, [], 0
    for init in graph.initializer:
        array = numpy_helper.to_array(init) if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 2 else None
        match = None
        if array is not None:
            for arr, axis in ((array, 0), (np.ascontiguousarray(array.T), 1)):
                hit = weights.get(hashlib.sha256(arr.astype(np.float32).tobytes()).digest())
                if hit is not None:
                    match = (hit, axis)
                    break
        if match is None:
            kept.append(init)
            continue
        (q, scale), axis = match
        name = init.name
        kept += [numpy_helper.from_array(q if axis == 0 else np.ascontiguousarray(q.T), f"{name}_int8"),
                 numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale")]
        graph.node.insert(0, helper.make_node(
            "DequantizeLinear", [f"{name}_int8", f"{name}_scale"], [name], axis=axis, name=f"{name}_dequantize"))
        rewritten += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(path))
    return rewritten


def example_inputs(batch: int = 1, seq_len: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and an attention mask with padding in every row but the first (to exercise the mask)."""
    ids = torch.randint(1000, 20000, (batch, seq_len))
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    for row in range(1, batch):
        mask[row, seq_len - row % seq_len :] = 0
    return ids, mask


def export_executorch_program(merged: nn.Module, path: str | Path, batch: int = 1, seq_len: int = 64) -> Path:
    """A `.pte` inference program of the merged model for inputs [batch, seq_len] (pad shorter texts).

    Portable kernels only; int8 weights are dequantized as `w_int8.float() * scale` and stay int8 constants.
    """
    from executorch.exir import EdgeCompileConfig, to_edge

    program = torch.export.export(merged.eval(), example_inputs(batch, seq_len), strict=False)
    edge = to_edge(program, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    path = Path(path)
    path.write_bytes(edge.to_executorch().buffer)
    return path


class SwappableModel(nn.Module):
    """forward(input_ids, attention_mask, *delta tensors) -> logits: the delta is an input, not a weight."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.delta_names = [name for name, p in model.named_parameters() if p.requires_grad]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *delta: torch.Tensor) -> torch.Tensor:
        tensors = dict(zip(self.delta_names, delta, strict=True))
        return torch.func.functional_call(self.model, tensors, (input_ids, attention_mask))


def export_swappable_onnx(model: nn.Module, path: str | Path) -> Path:
    """The unmerged QuIC model (int8 base) as ONNX with inputs input_ids, attention_mask and every delta tensor by name.

    Batch and sequence length are dynamic. optimize=False keeps the int8 initializers (RUNTIMES.md).
    """
    wrapper = SwappableModel(model.eval())
    params = dict(model.named_parameters())
    delta = tuple(params[name].detach().clone() for name in wrapper.delta_names)
    ids, mask = example_inputs(2, 16)
    batch, seq = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("sequence", min=2, max=512)
    shapes = ({0: batch, 1: seq}, {0: batch, 1: seq}, tuple(None for _ in delta))  # *delta is one varargs entry
    program = torch.export.export(wrapper, (ids, mask, *delta), dynamic_shapes=shapes, strict=False)
    path = Path(path)
    torch.onnx.export(
        program, (), str(path), dynamo=True, optimize=False, external_data=False,
        input_names=["input_ids", "attention_mask", *wrapper.delta_names], output_names=["logits"],
    )
    _strip_and_tag(path, {"base_fingerprint": model.quic_fingerprint, "config": model.quic_config.to_json(),
                          "quantize": str(model.quic_quantize), "base_model": getattr(model, "quic_base_name", "")})
    return path


def _strip_and_tag(path: Path, metadata: dict[str, str]) -> None:
    """Drop the exporter's per-node stack traces (9.5 MB for MiniLM) and record which base the graph serves."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))


DEPLOY_MANIFEST = "deploy.json"
DEPLOY_FORMAT = "quic-edge-deploy"
RUNTIMES = ("onnx", "executorch")
PARITY_ATOL = 1e-4  # an exported graph against the eager merged model, fp32 on both sides


def deploy(
    delta_path: str | Path, runtime: str, out_dir: str | Path, *, labels: list[str] | None = None,
    swappable: bool = False, batch: int = 1, seq_len: int = 64, base_model: str | None = None,
) -> dict:
    """Merge a delta into its int8 base and write an inference folder for `runtime`; returns the manifest.

    onnx: the optimum-onnx export (model.onnx, config, tokenizer; load with ORTModelForCustomTasks, logits under
    "sentence_embedding"), plus swappable.onnx when asked. executorch: model.pte for [batch, seq_len] inputs and
    tokenizer.json. Each exported model is run once against the eager merged model before anything is written.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime: must be one of {RUNTIMES}, got {runtime!r}")
    if swappable and runtime != "onnx":
        raise ValueError("swappable: the swappable graph is an ONNX model; use --runtime onnx")
    tensors, meta = read_delta_file(delta_path)
    if base_model is not None and meta.get("base_model") != base_model:
        raise DeltaError(f"{delta_path} was trained on base {meta.get('base_model')!r}, not {base_model!r}")
    model = personal_model(delta_path)
    classes = model.classifier.out_features
    labels = list(labels) if labels else [f"label_{i}" for i in range(classes)]
    if len(labels) != classes:
        raise ValueError(f"labels: the delta's head has {classes} outputs, got {len(labels)} names")
    merged = merge(copy.deepcopy(model), quantize="int8").eval()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the folder is shipped as it is
    try:
        files, parity = _write_runtime_files(runtime, model, merged, staging, swappable, batch, seq_len)
        (staging / "labels.json").write_text(json.dumps(labels))
        files["labels"] = "labels.json"
        manifest = _manifest(runtime, delta_path, meta, labels, files, parity, staging, batch, seq_len)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _write_runtime_files(runtime, model, merged, staging, swappable, batch, seq_len) -> tuple[dict, dict]:
    ids, mask = example_inputs(max(batch, 2) if runtime == "onnx" else batch, seq_len)
    with torch.no_grad():
        reference = merged(ids, mask).numpy()
    if runtime == "executorch":
        export_executorch_program(merged, staging / "model.pte", batch, seq_len)
        shutil.copy(models.minilm_path() / "tokenizer.json", staging / "tokenizer.json")
        logits = run_executorch(staging / "model.pte", ids, mask)
        parity = {"model": _checked_diff(logits, reference, "model.pte")}
        return {"program": "model.pte", "tokenizer": "tokenizer.json"}, parity
    export_optimum_onnx(merged, staging)
    parity = {"model": _checked_diff(run_optimum(staging, ids, mask), reference, "model.onnx")}
    files = {"model": "model.onnx", "config": "config.json", "tokenizer": "tokenizer.json"}
    if swappable:
        export_swappable_onnx(model, staging / "swappable.onnx")
        with torch.no_grad():
            unmerged = model(ids, mask).numpy()
        feeds = {name: p.detach().numpy() for name, p in model.named_parameters() if p.requires_grad}
        logits = _ort_run(staging / "swappable.onnx", {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), **feeds})
        parity["swappable"] = _checked_diff(logits, unmerged, "swappable.onnx")
        files["swappable"] = "swappable.onnx"
    return files, parity


def _checked_diff(logits: np.ndarray, reference: np.ndarray, what: str) -> float:
    diff = float(np.abs(logits - reference).max())
    if not diff <= PARITY_ATOL:
        raise RuntimeError(f"{what}: logits differ from the eager model by {diff:.3g} (> {PARITY_ATOL}); not deployed")
    return diff


def run_optimum(folder: str | Path, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Logits of an optimum export, loaded by optimum.onnxruntime.ORTModelForCustomTasks."""
    from optimum.onnxruntime import ORTModelForCustomTasks

    model = ORTModelForCustomTasks.from_pretrained(str(folder))
    return model(input_ids=ids.numpy(), attention_mask=mask.numpy())[LOGITS_OUTPUT]


def run_executorch(path: str | Path, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return method.execute([ids, mask])[0].numpy()


def _ort_run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _manifest(runtime, delta_path, meta, labels, files, parity, folder, batch, seq_len) -> dict:
    from importlib import metadata

    from quic_edge.export.bundle import sha256_file

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

"""Merged inference model through optimum-onnx's exporter, with the int8 weights kept int8 in the ONNX file.

Our classifier (mean pooling over real tokens, then a linear layer) is the stock sentence-transformers stack
Transformer -> Pooling(mean) -> Dense(identity), so the export is a sentence-transformers feature-extraction model
whose `sentence_embedding` output is the logits; `optimum.onnxruntime.ORTModelForCustomTasks` loads it. optimum exports
from a checkpoint, so the merged int8 weights are written dequantized; `int8_initializers` then stores every such
weight int8 again (DequantizeLinear per channel, bit-identical values). ONNX Runtime keeps DequantizeLinear unfolded by
default: int8 in memory, dequantized every run (benchmarks/results/inference.md); session option
session.disable_quant_qdq=1 folds it at load. The device picks.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from quic_edge import models
from quic_edge.quantize import Int8Embedding, Int8Linear, dequantize

LOGITS_OUTPUT = "sentence_embedding"  # the optimum (sentence-transformers) export's name for our logits
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


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


def run_optimum(folder: str | Path, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Logits of an optimum export, loaded by optimum.onnxruntime.ORTModelForCustomTasks."""
    from optimum.onnxruntime import ORTModelForCustomTasks

    model = ORTModelForCustomTasks.from_pretrained(str(folder))
    return model(input_ids=ids.numpy(), attention_mask=mask.numpy())[LOGITS_OUTPUT]

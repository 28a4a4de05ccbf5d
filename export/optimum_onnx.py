"""Merged inference model through optimum-onnx's exporter, with the int8 weights kept int8 in the ONNX file.

A `transformers` model (export_transformers_onnx) is written as the checkpoint of its own class and exported for its
task, so optimum's ORTModelForSequenceClassification / ForImageClassification / ForCausalLM load the folder. MiniLM
(export_optimum_onnx) goes the sentence-transformers way:

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


OPTIMUM_TASKS = {"classification": "text-classification", "image-classification": "image-classification",
                 "causal-lm": "text-generation"}  # our task (quic_edge.hf) -> optimum's; causal LMs without a kv cache
SIDE_FILES = (*TOKENIZER_FILES, "merges.txt", "vocab.json", "preprocessor_config.json", "generation_config.json")


def export_transformers_onnx(merged: nn.Module, source: str | Path | None, out: str | Path, int8: bool = True) -> Path:
    """optimum-onnx export of a merged transformers model into `out` (model.onnx, config, and the tokenizer and
    preprocessor files of the `source` folder it was loaded from); returns `out`."""
    from optimum.exporters.onnx import main_export

    from quic_edge import hf

    task = hf.task_of(merged)
    if task == "classification" and hf.input_names(merged) == hf.IMAGE_INPUTS:
        task = "image-classification"
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "hf"
        dequantize(copy.deepcopy(merged)).save_pretrained(checkpoint)  # Conv1D layers come back as Conv1D
        for name in SIDE_FILES if source else ():
            if (Path(source) / name).is_file():
                shutil.copy(Path(source) / name, checkpoint / name)
        main_export(str(checkpoint), output=out, task=OPTIMUM_TASKS[task], do_validation=False, local_files_only=True)
    if int8:
        int8_initializers(out / "model.onnx", int8_weights(merged))
    return out


def run_onnx(path: str | Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The first output (the logits) of an exported graph for `inputs` by name; inputs optimum's graphs add are
    derived as transformers derives them when not given (token_type_ids zeros, position_ids 0, 1, 2, ...)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in session.get_inputs():
        if spec.name in inputs:
            feeds[spec.name] = inputs[spec.name]
        elif spec.name == "token_type_ids":
            feeds[spec.name] = np.zeros_like(inputs["input_ids"])
        elif spec.name == "position_ids":
            ids = inputs["input_ids"]
            feeds[spec.name] = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy()
        else:
            raise ValueError(f"{path}: the graph wants input {spec.name!r}, which this model has no rule for")
    return session.run(None, feeds)[0]


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

"""ONNX Runtime export: bundle contents, int8 storage, trainable set, and clear errors before anything is written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from quic_edge import models
from quic_edge.export import export_bundle
from quic_edge.export.common import ExportError
from quic_edge.formats.bundle import FILE_ROLES, sha256_file, verify_bundle
from quic_edge.runtimes.ort import ort_bindings
from quic_edge.runtimes.parity import NUM_LABELS, parity_model
from quic_edge.state import delta_parameters
from quic_edge.tasks import example_batch

LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    out = {}
    for name in ("mlp", "llama-tiny"):
        model = parity_model(name)
        folder = tmp_path_factory.mktemp(f"export-{name}") / "bundle"
        labels = LABELS if name == "mlp" else None
        export_bundle("ort", model, example_batch(name, 4, 16, NUM_LABELS), folder, labels=labels, optimizer="adamw")
        out[name] = (folder, model)
    return out


@pytest.mark.parametrize("name", ["mlp", "llama-tiny"])
def test_manifest_describes_the_bundle(bundles, name):
    folder, model = bundles[name]
    manifest = verify_bundle(folder)
    assert manifest["runtime"] == "ort" and manifest["model"] == name
    assert manifest["task"] == ("classification" if name == "mlp" else "causal-lm")
    assert manifest["base_fingerprint"] == model.quic_state.base_fingerprint
    assert manifest["config"]["target_modules"] == list(models.DEFAULT_TARGETS[name])
    assert manifest["adapter"] == "quic" and manifest["base_dtype"] == "int8"
    assert {"training_model", "eval_model", "optimizer_model", "checkpoint"} <= set(manifest["files"])
    assert set(manifest["files"]) <= set(FILE_ROLES)
    for rel in manifest["files"].values():  # every file is covered by its sha256
        assert manifest["sha256"][rel] == sha256_file(folder / rel)
    assert [s["name"] for s in manifest["inputs"]] == list(models.input_names(name))
    assert manifest["target"]["name"] == "labels"
    assert manifest["optimizer"]["name"] == "adamw" and manifest["versions"]["onnx"] == onnx.__version__
    assert (manifest["labels"] == LABELS) == (name == "mlp")
    if name == "mlp":
        assert json.loads((folder / manifest["files"]["labels"]).read_text()) == LABELS


@pytest.mark.parametrize("name", ["mlp", "llama-tiny"])
def test_only_angles_and_head_train_and_int8_stays_int8(bundles, name):
    folder, model = bundles[name]
    manifest = verify_bundle(folder)
    expected = {n: list(p.shape) for n, p in delta_parameters(model).items()}
    assert manifest["trainable"] == expected
    assert all(n.endswith(".angles") or n.split(".")[0] in ("classifier", "score") for n in expected)
    int8_names = [n for n, t in model.state_dict().items() if t.dtype == torch.int8]
    assert int8_names, "the base is quantized"
    # the training graph takes the frozen weights as int8 inputs...
    graph = onnx.load(folder / "training_model.onnx", load_external_data=False).graph
    types = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    types.update({i.name: i.data_type for i in graph.initializer})
    assert all(types[n] == onnx.TensorProto.INT8 for n in int8_names)
    # ...and the checkpoint stores them int8, frozen; only the trainable tensors require gradients
    state = ort_bindings().load_checkpoint(str(folder / "checkpoint"))
    for n in int8_names:
        assert state.get_parameter(n).data.numpy().dtype == np.int8
        assert not state.get_parameter(n).requires_grad
    trainable = {n for n in state.parameter_names() if state.get_parameter(n).requires_grad}
    assert trainable == set(expected)


def test_no_fp32_copy_of_a_large_weight_in_the_graphs(bundles):
    folder, model = bundles["llama-tiny"]
    for role in ("training_model", "eval_model"):
        graph = onnx.load(folder / f"{role}.onnx").graph
        big = [i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) >= 4096]
        assert big == [], f"{role} holds fp32 weights {big}"


class _CumulativeHead(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, dim=-1)  # ONNX Runtime has no gradient for CumSum


def test_an_op_without_gradient_is_named_with_its_module_and_nothing_is_written(tmp_path):
    model = parity_model("mlp")
    model.mixer = _CumulativeHead()
    model.forward = lambda features: model.classifier(torch.relu(model.fc2(model.mixer(torch.relu(model.fc1(features))))))
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match=r"CumSum.*module mixer \(.*_CumulativeHead\)"):
        export_bundle("ort", model, example_batch("mlp", 4, 1, NUM_LABELS), out, labels=LABELS)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("labels", "match"),
    [(None, "needs its 3 label names"), (["a", "b"], "give 3 distinct"), (["a", "a", "b"], "give 3 distinct")],
)
def test_bad_labels_are_refused(tmp_path, labels, match):
    with pytest.raises(ExportError, match=match):
        export_bundle("ort", parity_model("mlp"), example_batch("mlp", 4, 1, NUM_LABELS), tmp_path / "b", labels=labels)
    assert list(tmp_path.iterdir()) == []


def test_bad_export_arguments(tmp_path):
    model, batch = parity_model("mlp"), example_batch("mlp", 4, 1, NUM_LABELS)
    with pytest.raises(ExportError, match="optimizer: must be one of"):
        export_bundle("ort", model, batch, tmp_path / "b", labels=LABELS, optimizer="lion")
    with pytest.raises(ExportError, match="no adapter"):
        export_bundle("ort", models.load("mlp", 3)[0].requires_grad_(False), batch, tmp_path / "b", labels=LABELS)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="exists and holds other files"):
        export_bundle("ort", model, batch, tmp_path / "notes", labels=LABELS)
    with pytest.raises(ValueError, match="runtime: must be one of"):
        export_bundle("tflite", model, batch, tmp_path / "b", labels=LABELS)

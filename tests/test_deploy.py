"""Deploy (issue 7): merging a delta into the int8 base, the inference exports, the swappable graph.

Parity is checked on 500 tweets: merged fp32 against the unmerged model with the delta (1e-5), merged int8
against it (argmax agreement >= 99.5%, and the logit error within the error that int8 storage of the base
already causes), the swappable ONNX graph against the merged model per person, the optimum and ExecuTorch
exports against the eager merged model.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
import torch

import quic_edge
from quic_edge.data import encode_texts, load_dataset
from quic_edge.delta import DeltaError, read_delta_file, save_delta, write_delta_file
from quic_edge.export.deploy import deploy, example_inputs
from quic_edge.export.executorch_inference import run_executorch
from quic_edge.export.optimum_onnx import run_optimum
from quic_edge.export.swappable import export_swappable_onnx
from quic_edge.formats.bundle import sha256_file
from quic_edge.formats.identity import identity_of
from quic_edge.layer import QuICLinear
from quic_edge.model import quic_layers
from quic_edge.quantize import Int8Linear
from quic_edge.runtimes.serving import SwappableSession

TEXTS = 500
SEQ_LEN = 64


def personal(base: torch.nn.Module, seed: int, quantize: bool = True) -> torch.nn.Module:
    """A QuIC model with angles and head ~ N(0, 0.1) (training left std 0.105 and 0.115 in the demo's deltas)."""
    model = quic_edge.apply_quic(copy.deepcopy(base), quic_edge.QuICConfig(), quantize=quantize)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in quic_edge.trainable_parameters(model).values():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model.eval()


def pooled(model: torch.nn.Module, batches: list[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
    """(texts, hidden): what the head sees (its input, caught by a hook); logits are model.classifier(pooled)."""
    seen = []
    hook = model.classifier.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        for ids, mask in batches:
            model(torch.from_numpy(ids), torch.from_numpy(mask))
    hook.remove()
    return torch.cat(seen)


def fit_head(head: torch.nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> None:
    """A head trained on the labels: a random head has near-zero margins, unlike any person's trained one."""
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(features), labels).backward()
        optimizer.step()


@pytest.fixture(scope="module")
def tweets(minilm_base):
    """500 tweets in batches of 100, sorted by length and cut to each batch's longest text (padding costs time)."""
    _, tokenizer = minilm_base
    examples = load_dataset("tweets")[:TEXTS]
    data = encode_texts(tokenizer, [e.text for e in examples], SEQ_LEN)
    order = np.argsort(data["attention_mask"].sum(1), kind="stable")
    ids, mask = data["input_ids"][order], data["attention_mask"][order]
    cuts = [(i, int(mask[i : i + 100].sum(1).max())) for i in range(0, TEXTS, 100)]
    names = sorted({e.label for e in examples})
    labels = torch.tensor([names.index(examples[i].label) for i in order])
    return [(ids[i : i + 100, :width], mask[i : i + 100, :width]) for i, width in cuts], labels


@pytest.fixture(scope="module")
def alex(minilm_base, tweets, tmp_path_factory):
    """One person (random angles, a head fitted to the tweets' labels): the unmerged model, its delta file,
    both merges, and the head's input on the tweets for each (fp32 merge: the longest 100 only)."""
    batches, labels = tweets
    model = personal(minilm_base[0], seed=1)
    features = {"unmerged": pooled(model, batches)}
    fit_head(model.classifier, features["unmerged"], labels)
    path = save_delta(model, tmp_path_factory.mktemp("alex") / "alex.safetensors")
    merged = {"int8": quic_edge.merge(copy.deepcopy(model)),
              None: quic_edge.merge(quic_edge.dequantize(copy.deepcopy(model)))}  # W' = R^T W kept in fp32
    features.update(int8=pooled(merged["int8"], batches), fp32=pooled(merged[None], batches[-1:]))
    with torch.no_grad():
        out = {name: model.classifier(f) for name, f in features.items()}
    return {"model": model, "delta": path, "merged": merged, "features": features, "logits": out}


def test_merged_fp32_equals_the_unmerged_model(alex):
    assert torch.allclose(alex["logits"]["fp32"], alex["logits"]["unmerged"][-100:], rtol=0, atol=1e-5)


def test_merged_weights_are_r_transpose_w_within_half_an_int8_step(alex):
    model, merged = alex["model"], alex["merged"]["int8"]
    merged_layers = dict(merged.named_modules())
    for name, layer in quic_layers(model).items():
        eye = torch.eye(layer.base_layer.in_features)
        with torch.no_grad():
            expected = (layer(eye) - layer.base_layer.bias).T  # (out, in): W' from the adapter's forward, not from merge
        int8 = merged_layers[name]
        assert isinstance(int8, Int8Linear) and int8.weight_int8.dtype == torch.int8, name
        error = (int8.dequantized_weight() - expected).abs()
        assert (error <= int8.weight_scale[:, None] / 2 + 1e-6).all(), name
        assert torch.equal(int8.bias, layer.base_layer.bias)


def test_merged_int8_agrees_with_the_unmerged_model(alex, minilm_base, tweets):
    out = alex["logits"]
    agreement = (out["int8"].argmax(-1) == out["unmerged"].argmax(-1)).float().mean().item()
    assert agreement >= 0.995, agreement
    # The bound: what storing the base int8 already costs, i.e. the same delta on the fp32 base.
    fp32_base = quic_edge.apply_quic(copy.deepcopy(minilm_base[0]), quic_edge.QuICConfig(), quantize=False)
    trained = quic_edge.trainable_parameters(alex["model"])
    for name, p in quic_edge.trainable_parameters(fp32_base).items():
        p.data.copy_(trained[name])
    with torch.no_grad():
        bound = (alex["model"].classifier(pooled(fp32_base, tweets[0])) - out["unmerged"]).abs().max().item()
    error = (out["int8"] - out["unmerged"]).abs().max().item()
    assert 0 < error <= bound, (error, bound)


def test_merge_leaves_an_int8_base_and_an_fp32_head(alex):
    model, merged = alex["model"], alex["merged"]["int8"]
    assert not any(isinstance(m, QuICLinear) for m in merged.modules())
    linear = [n for n, m in merged.named_modules() if isinstance(m, torch.nn.Linear)]
    assert linear == ["classifier"]
    assert torch.equal(merged.classifier.weight, model.classifier.weight)
    assert not hasattr(merged, "quic_state") and not hasattr(merged, "quic_rotations")  # a plain model again
    assert not merged._forward_pre_hooks and not merged._forward_hooks
    with pytest.raises(DeltaError, match="no adapter"):
        save_delta(merged, "unused.safetensors")


@pytest.fixture(scope="module")
def swappable(minilm_base, tmp_path_factory):
    """One swappable graph, exported from a third person's model (its own values must not leak into serving)."""
    return export_swappable_onnx(personal(minilm_base[0], seed=3), tmp_path_factory.mktemp("swap") / "swappable.onnx",
                                 example_inputs(2, 16))


def test_swappable_graph_serves_each_person_like_their_merged_model(alex, minilm_base, tweets, swappable, tmp_path):
    sam = personal(minilm_base[0], seed=2)
    server = SwappableSession(swappable)
    server.add_person("alex", alex["delta"])
    server.add_person("sam", save_delta(sam, tmp_path / "sam.safetensors"))
    ids, mask = tweets[0][-1]  # the longest texts
    served = {p: torch.from_numpy(server.logits(p, ids, mask)) for p in ("alex", "sam", "alex")}
    sam_merged = quic_edge.merge(quic_edge.dequantize(copy.deepcopy(sam)))
    with torch.no_grad():
        expected = {"alex": alex["logits"]["fp32"], "sam": sam_merged.classifier(pooled(sam_merged, [tweets[0][-1]]))}
    for person in ("alex", "sam"):
        assert torch.allclose(served[person], expected[person], rtol=0, atol=1e-5), person
    assert (served["alex"] - served["sam"]).abs().max() > 1e-2  # the delta, not the exported values, decides
    assert (served["alex"].argmax(-1) == alex["logits"]["int8"][-100:].argmax(-1)).float().mean() >= 0.98


def test_swappable_graph_keeps_int8_and_refuses_a_delta_of_another_base(alex, swappable, tmp_path):
    initializers = onnx.load(str(swappable)).graph.initializer
    fp32 = {i.name: i for i in initializers if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) >= 4096}
    tables = {name for name in fp32 if name.endswith(("_cos_rows", "_sin_rows"))}  # the Givens rounds' placement
    assert set(fp32) - tables == {"model.encoder.embeddings.word_embeddings.weight_scale"}  # a scale per vocabulary row
    for name in tables:  # constants of 0 and +-1, one nonzero per column at most (quic_edge.givens.RoundTables)
        values = onnx.numpy_helper.to_array(fp32[name])
        assert set(np.unique(values)) <= {-1.0, 0.0, 1.0} and (np.count_nonzero(values, axis=0) <= 1).all()
    assert sum(np.prod(i.dims) for i in initializers if i.data_type == onnx.TensorProto.INT8) > 22_000_000
    tensors, meta = read_delta_file(alex["delta"])
    other = write_delta_file(tmp_path / "other.safetensors", tensors, identity_of(meta) | {"base_fingerprint": "0" * 64},
                             "minilm")
    with pytest.raises(DeltaError, match="base_fingerprint"):
        SwappableSession(swappable).add_person("eve", other)
    with pytest.raises(KeyError, match="add_person"):
        SwappableSession(swappable).logits("alex", np.ones((1, 4), np.int64), np.ones((1, 4), np.int64))


def test_deploy_onnx_is_loaded_by_optimum_and_keeps_int8(alex, tweets, tmp_path):
    out = tmp_path / "alex-onnx"
    manifest = deploy(alex["delta"], "onnx", out, labels=["a", "b", "c"])
    ids, mask = (torch.from_numpy(a) for a in tweets[0][-1])
    served = torch.from_numpy(run_optimum(out, ids, mask))  # optimum.onnxruntime.ORTModelForCustomTasks
    assert torch.allclose(served, alex["logits"]["int8"][-100:], rtol=0, atol=1e-4)
    model = onnx.load(str(out / "model.onnx"))
    sizes = {init.name: (init.data_type, np.prod(init.dims)) for init in model.graph.initializer}
    fp32 = [n for n, (t, size) in sizes.items() if t == onnx.TensorProto.FLOAT and size >= 4096]
    assert len(fp32) == 1 and fp32[0].endswith("_scale")  # the embedding table's scale per vocabulary row
    assert sum(size for t, size in sizes.values() if t == onnx.TensorProto.INT8) > 22_000_000
    assert manifest["files"]["model"] == "model.onnx" and json.loads((out / "labels.json").read_text()) == ["a", "b", "c"]
    assert all(sha256_file(out / rel) == digest for rel, digest in manifest["sha256"].items())


def test_deploy_executorch_program_matches_the_merged_model(alex, tweets, tmp_path):
    out = tmp_path / "alex-et"
    manifest = deploy(alex["delta"], "executorch", out, batch=1, seq_len=SEQ_LEN)
    ids, mask = (torch.from_numpy(np.pad(a[-1:], ((0, 0), (0, SEQ_LEN - a.shape[1])))) for a in tweets[0][-1])
    served = torch.from_numpy(run_executorch(out / manifest["files"]["program"], ids, mask))  # padded to 64
    assert torch.allclose(served, alex["logits"]["int8"][-1:], rtol=0, atol=1e-4)
    assert (out / "model.pte").stat().st_size < 30e6  # int8 constants: the fp32 program is 90 MB


def test_deploy_refuses_a_delta_for_another_model(alex, tmp_path):
    with pytest.raises(DeltaError, match="not 'llama-tiny'"):
        deploy(alex["delta"], "onnx", tmp_path / "x", base_model="llama-tiny")
    with pytest.raises(ValueError, match="swappable"):
        deploy(alex["delta"], "executorch", tmp_path / "x", swappable=True)
    assert not (tmp_path / "x").exists()


def test_deploy_command_reports_a_missing_delta_in_one_line(tmp_path, capsys):
    from quic_edge.cli import main

    assert main(["deploy", "--delta", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "o")]) == 2
    assert "delta file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_a_demo_delta_deploys_with_one_command_each(tmp_path):
    """The issue's done criterion: a delta trained on the device loop in the demo, deployed by the command."""
    import subprocess
    import sys

    from quic_edge.personas import LABELS

    run = [sys.executable, "-m", "quic_edge.cli"]
    demo = subprocess.run([*run, "demo", "--task", "triage", "--quick", "--out", str(tmp_path / "demo")],
                          capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr[-2000:]
    delta = next((tmp_path / "demo" / "deltas").glob("*.safetensors"))
    for runtime in ("onnx", "executorch"):
        extra = ["--swappable"] if runtime == "onnx" else []
        done = subprocess.run([*run, "deploy", "--model", "minilm", "--delta", str(delta), "--runtime", runtime,
                               "--out", str(tmp_path / runtime), "--labels", ",".join(LABELS), *extra],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        manifest = json.loads((tmp_path / runtime / "deploy.json").read_text())
        assert max(manifest["parity_max_abs_logit_diff"].values()) <= 1e-4

"""Deploy for models users bring: a delta trained on a `transformers` model folder merged into its int8 base and
exported for inference, loaded the way a user would (optimum's ORTModelFor<task>, ExecuTorch's runtime) and compared
with the eager merged model on inputs the export never saw.

The tiny architectures of tests/test_hf_models.py, saved with save_pretrained as a user's folder. Default run: ONNX for
an encoder, a decoder, GPT-2 (its Conv1D layers must come back as Conv1D, or the checkpoint optimum exports from does
not load) and ViT; ExecuTorch for the two the device-training matrix runs by default. `-m slow`: all eight, both.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import quic_edge
from quic_edge import QuICConfig, hf, models
from quic_edge.delta import DeltaError, from_delta
from quic_edge.export.deploy import deploy
from quic_edge.formats.bundle import sha256_file
from quic_edge.quantize import dequantize, quantize_int8
from quic_edge.tasks import example_batch
from tests.test_hf_models import ARCHITECTURES, EXECUTORCH_DEFAULT, TARGETS, build


def _personal_delta(name: str, folder, tmp_path, seed: int = 1):
    """A delta as training leaves it (angles and head moved), trained on the model loaded from its folder."""
    base, _ = models.load(str(folder), num_labels=3)
    model = quic_edge.apply_quic(base, QuICConfig(target_modules=TARGETS[name], blocks=1, orders=(1, 2)))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in quic_edge.trainable_parameters(model).values():
            p.add_(torch.randn(p.shape, generator=generator) * 0.3)
    return quic_edge.save_delta(model, tmp_path / "delta.safetensors")


def _folder(name: str, tmp_path):
    folder = tmp_path / f"my-{name}"
    build(name).save_pretrained(folder)
    return folder


def _optimum_logits(out, task: str, image: bool, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    import optimum.onnxruntime as ort_models

    if task == "causal-lm":
        loaded = ort_models.ORTModelForCausalLM.from_pretrained(str(out), use_cache=False)
    elif image:
        loaded = ort_models.ORTModelForImageClassification.from_pretrained(str(out))
    else:
        loaded = ort_models.ORTModelForSequenceClassification.from_pretrained(str(out))
    return loaded(**inputs).logits


ONNX_DEFAULT = ("bert", "qwen2-lm", "gpt2-lm", "vit")  # an encoder, a decoder, Conv1D, vision; the rest with -m slow
CASES = [pytest.param(runtime, name, marks=() if name in default else pytest.mark.slow)
         for runtime, default in (("onnx", ONNX_DEFAULT), ("executorch", EXECUTORCH_DEFAULT)) for name in ARCHITECTURES]


@pytest.mark.parametrize(("runtime", "name"), CASES)
def test_a_delta_on_a_model_folder_deploys_and_serves_like_the_merged_model(runtime, name, tmp_path):
    folder = _folder(name, tmp_path)
    delta = _personal_delta(name, folder, tmp_path)
    out = tmp_path / "deployed"
    manifest = deploy(delta, runtime, out, base_model=str(folder), batch=2, seq_len=8)
    merged = quic_edge.merge(from_delta(delta, base=str(folder)))
    names, task = hf.input_names(merged), hf.task_of(merged)
    assert manifest["inputs"] == list(names) and manifest["task"] == task
    assert manifest["base_model"] == folder.name
    for rel, digest in manifest["sha256"].items():
        assert sha256_file(out / rel) == digest
    if task == "classification":
        assert json.loads((out / "labels.json").read_text()) == ["label_0", "label_1", "label_2"]
    if names == hf.IMAGE_INPUTS:
        assert manifest["preprocessing"]["size"] == 16
    batch = example_batch(merged, 2, 8, padded=True, seed=7)  # not the inputs the export was checked on
    inputs = {k: torch.from_numpy(batch[k]) for k in names}
    with torch.no_grad():
        reference = hf.call(merged, names, list(inputs.values()))
        if runtime == "onnx":
            served = _optimum_logits(out, task, names == hf.IMAGE_INPUTS, inputs)
        else:
            from quic_edge.export.executorch_inference import run_executorch

            served = torch.from_numpy(run_executorch(out / "model.pte", *inputs.values()))
    if task == "causal-lm":  # optimum derives position ids from the mask: compare where there are tokens
        real = inputs["attention_mask"].bool()
        served, reference = served[real], reference[real]
    torch.testing.assert_close(served, reference, rtol=0, atol=1e-4)


def test_conv1d_layers_come_back_as_conv1d_so_the_checkpoint_loads_into_its_class(tmp_path):
    model = build("gpt2-lm")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    back = dequantize(quantize_int8(build("gpt2-lm")))
    assert type(back.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
    assert {k: tuple(v.shape) for k, v in back.state_dict().items()} == shapes
    back.save_pretrained(tmp_path / "again")
    type(model).from_pretrained(tmp_path / "again")  # loads: every weight in its stored orientation


def test_the_swappable_graph_serves_a_text_model_folder_and_refuses_images(tmp_path):
    from quic_edge.runtimes.serving import SwappableSession

    folder = _folder("bert", tmp_path)
    delta = _personal_delta("bert", folder, tmp_path)
    manifest = deploy(delta, "onnx", tmp_path / "out", base_model=str(folder), swappable=True, batch=2, seq_len=8)
    assert manifest["parity_max_abs_logit_diff"]["swappable"] <= 1e-4
    server = SwappableSession(tmp_path / "out" / "swappable.onnx")
    server.add_person("alex", delta)
    batch = example_batch(build("bert"), 2, 8, padded=True, seed=3)
    unmerged = from_delta(delta, base=str(folder))
    with torch.no_grad():
        expected = hf.call(unmerged, hf.TEXT_INPUTS, [torch.from_numpy(batch[k]) for k in hf.TEXT_INPUTS]).numpy()
    np.testing.assert_allclose(server.logits("alex", batch["input_ids"], batch["attention_mask"]), expected, atol=1e-4)

    vit = _folder("vit", tmp_path)
    with pytest.raises(ValueError, match="swappable graph serves text models"):
        deploy(_personal_delta("vit", vit, tmp_path), "onnx", tmp_path / "x", base_model=str(vit), swappable=True)


def test_a_folder_delta_needs_its_folder_and_refuses_another_one(tmp_path):
    folder = _folder("bert", tmp_path)
    delta = _personal_delta("bert", folder, tmp_path)
    with pytest.raises(DeltaError, match=r"trained on 'my-bert': give its model folder \(--model FOLDER\)"):
        deploy(delta, "onnx", tmp_path / "x")
    other = tmp_path / "other" / "my-bert"  # the same name and architecture, other weights
    torch.manual_seed(5)
    import transformers

    transformers.BertForSequenceClassification(build("bert").config).save_pretrained(other)
    with pytest.raises(DeltaError, match="fingerprint|another base|different base"):
        deploy(delta, "onnx", tmp_path / "x", base_model=str(other))
    assert not (tmp_path / "x").exists()

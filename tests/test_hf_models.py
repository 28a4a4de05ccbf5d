"""Models as users hold them: tiny `transformers` models of eight architectures, straight from their classes (no
wrapper of ours), through apply_quic, both device runtimes with parity against eager (losses and gradients every
step, every tensor moved), merge = the adapted forward, and a delta round trip.

Encoders (BERT, RoBERTa, DistilBERT), decoders (Llama and GPT-2 classifiers, Qwen2 and GPT-2 language models), a
vision model (ViT). SDPA is every one's default attention here (quic_edge.hf switches it); GPT-2's layers are Conv1D;
DistilBERT's mask exports to CastLike and GPT-2's split to sequence ops (export/ort_graph.py rewrites both).
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

import quic_edge
from quic_edge import QuICConfig, hf
from quic_edge.runtimes.parity import collect, judge
from quic_edge.state import delta_parameters
from quic_edge.tasks import example_batch

SIZE = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)  # one layer: fast exports


def build(name: str) -> torch.nn.Module:
    """A tiny randomly initialised model of the architecture, as its transformers class makes it."""
    import transformers as tf

    torch.manual_seed(0)
    text = dict(vocab_size=120, max_position_embeddings=64)
    made = {
        "bert": lambda: tf.BertForSequenceClassification(tf.BertConfig(num_labels=3, **text, **SIZE)),
        "roberta": lambda: tf.RobertaForSequenceClassification(tf.RobertaConfig(num_labels=3, pad_token_id=1, **text,
                                                                                **SIZE)),
        "distilbert": lambda: tf.DistilBertForSequenceClassification(tf.DistilBertConfig(
            num_labels=3, dim=32, n_layers=1, n_heads=2, hidden_dim=64, **text)),
        "llama-cls": lambda: tf.LlamaForSequenceClassification(tf.LlamaConfig(
            num_labels=3, num_key_value_heads=1, pad_token_id=0, **text, **SIZE)),
        "gpt2-cls": lambda: tf.GPT2ForSequenceClassification(tf.GPT2Config(
            num_labels=3, vocab_size=120, n_embd=32, n_layer=1, n_head=2, n_positions=64, pad_token_id=0)),
        "qwen2-lm": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(num_key_value_heads=1, **text, **SIZE)),
        "gpt2-lm": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=120, n_embd=32, n_layer=1, n_head=2,
                                                            n_positions=64)),
        "vit": lambda: tf.ViTForImageClassification(tf.ViTConfig(num_labels=3, image_size=16, patch_size=8, **SIZE)),
    }[name]()
    return made.eval()


TARGETS = {"bert": "all-linear", "roberta": ("query", "value"), "distilbert": ("q_lin", "v_lin"),
           "llama-cls": ("q_proj", "v_proj", "down_proj"), "gpt2-cls": ("c_attn",), "qwen2-lm": ("q_proj", "v_proj"),
           "gpt2-lm": ("c_attn", "c_proj"), "vit": ("query", "value")}
TASK = {"qwen2-lm": "causal-lm", "gpt2-lm": "causal-lm"}
ARCHITECTURES = tuple(TARGETS)


def adapted(name: str) -> torch.nn.Module:
    return quic_edge.apply_quic(build(name), QuICConfig(target_modules=TARGETS[name], blocks=1, orders=(1, 2)))


def test_the_class_says_the_task_inputs_and_head():
    for name in ARCHITECTURES:
        model = build(name)
        assert hf.is_transformers_model(model)
        assert hf.task_of(model) == TASK.get(name, "classification"), name
        assert hf.input_names(model) == (("pixel_values",) if name == "vit" else ("input_ids", "attention_mask"))
    assert not hf.is_transformers_model(torch.nn.Linear(2, 2)) and hf.task_of(torch.nn.Linear(2, 2)) is None


def test_sdpa_is_switched_to_eager_with_one_notice_and_the_same_numbers(caplog):
    for name in ("bert", "qwen2-lm"):  # one class built per implementation, one that reads the config per call
        model = build(name)
        assert model.config._attn_implementation == "sdpa"
        batch = example_batch(model, 2, 8, padded=True)
        inputs = [torch.from_numpy(batch[k]) for k in hf.input_names(model)]
        before = hf.call(model, hf.input_names(model), inputs)
        with caplog.at_level(logging.WARNING, logger="quic_edge"):
            caplog.clear()
            hf.make_exportable(model)
        assert model.config._attn_implementation == "eager"
        assert len(caplog.records) == 1 and "switched to eager attention" in caplog.records[0].getMessage()
        torch.testing.assert_close(hf.call(model, hf.input_names(model), inputs), before, rtol=1e-5, atol=1e-5)
        assert hf.make_exportable(model) is None  # once is enough


def test_a_missing_head_is_named():
    with pytest.raises(ValueError, match="trainable_modules.*name its task head"):
        quic_edge.apply_quic(build("bert"), QuICConfig(target_modules=("query",), trainable_modules=("head",)))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_merge_equals_the_adapted_forward_and_the_delta_round_trips(name, tmp_path):
    model = adapted(name)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in delta_parameters(model).values():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    batch = example_batch(model, 2, 8, padded=True)
    names = hf.input_names(model)
    inputs = [torch.from_numpy(batch[k]) for k in names]
    with torch.no_grad():
        adapted_out = hf.call(model, names, inputs)
    path = quic_edge.save_delta(model, tmp_path / "delta.safetensors")
    again = quic_edge.load_delta(adapted(name), path)
    with torch.no_grad():
        torch.testing.assert_close(hf.call(again, names, inputs), adapted_out, rtol=0, atol=0)
        merged = quic_edge.merge(copy.deepcopy(model))
        assert hf.is_transformers_model(merged) and not hasattr(merged, "quic_rotations")
        # merged weights are int8 again (per channel): within the requantization error of the adapted forward
        torch.testing.assert_close(hf.call(merged, names, inputs), adapted_out, rtol=0.05, atol=0.05)


# ExecuTorch exports take 10 to 40 s each: the default run covers Conv1D with a rebuilt attention (GPT-2) and vision
# (ViT); the slow set the other six (ONNX Runtime runs all eight in the default run).
EXECUTORCH_DEFAULT = ("gpt2-cls", "vit")
CASES = [("ort", name) for name in ARCHITECTURES] + [
    pytest.param("executorch", name, marks=() if name in EXECUTORCH_DEFAULT else pytest.mark.slow) for name in ARCHITECTURES]


@pytest.mark.parametrize(("runtime", "name"), CASES)
def test_device_training_matches_eager(runtime, name):
    """Export straight from the transformers class, 3 AdamW steps on padded batches, parity per tensor."""
    report = judge(collect(runtime, adapted(name), steps=3, optimizer="adamw", shape=(2, 8)))
    assert report["within"], report["failures"]
    assert report["gradient_steps_checked"] == 3
    assert np.isfinite(report["losses_runtime"]).all()


class _Odd(torch.nn.Module):
    def __init__(self, op) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class _WithAnOddLayer(torch.nn.Module):
    def __init__(self, op) -> None:
        super().__init__()
        self.fc1, self.odd, self.classifier = torch.nn.Linear(64, 32), _Odd(op), torch.nn.Linear(32, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.odd(self.fc1(features)))


@pytest.mark.parametrize(("op", "expected"), [
    (lambda x: x.cumprod(-1), r"ONNX has no form of the op prims\.prod \(from module odd \(.*_Odd\)\).*executorch"),
    (lambda x: torch.atan2(x, x + 1), r"ONNX Runtime cannot differentiate the op Atan \(from module odd \(.*_Odd\)\)"),
])
def test_an_architecture_that_cannot_export_names_the_op_the_module_and_what_to_do(op, expected, tmp_path):
    from quic_edge.export import ExportError, export_bundle

    model = _WithAnOddLayer(op).eval()
    model.quic_base_name = "mlp"
    quic_edge.apply_quic(model, QuICConfig(target_modules=("fc1",), blocks=1, orders=(1,)))
    with pytest.raises(ExportError, match=expected):
        export_bundle("ort", model, example_batch("mlp", 4, 1, 3), tmp_path / "b", labels=["a", "b", "c"])
    assert not (tmp_path / "b").exists()

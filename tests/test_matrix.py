"""The adapter lifecycle as one matrix of (model, config) cases through shared checks (PEFT's test_custom_models.py
style): merge equals the adapted forward, a delta round trip, one step changes only the delta, export does not depend
on call order, unload leaves the model as it was, a device move carries everything."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import quic_edge
from quic_edge import QuICConfig, models
from quic_edge.state import delta_parameters
from quic_edge.tasks import example_batch

MODELS = ("mlp", "llama-tiny", "bert-tiny")
CONFIGS = {
    "orders 1,2": dict(blocks=3, orders=(1, 2)),
    "orders 1,2,3 brick depth 2": dict(blocks=2, orders=(1, 2, 3), layout="brick", depth=2),
    "orders 2 shared": dict(blocks=4, orders=(2,), share_blocks=True),
    "block OFT chain 2": dict(blocks=6, orders=(1,), chain=2),
    "unconstrained 1,2 (the ablation's control)": dict(blocks=3, orders=(1, 2), matrix="unconstrained"),
}
TARGETS = {"mlp": ("fc1", "fc2"), "llama-tiny": ("q_proj", "v_proj", "down_proj"), "bert-tiny": ("query", "value")}


def tiny_bert(seed: int = 0) -> torch.nn.Module:
    """A 2-layer BERT encoder with random weights under the MiniLM sentence classifier."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=300, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=64, attn_implementation="eager")
    model = models.SentenceClassifier(BertModel(config, add_pooling_layer=False), 48, 3).eval()
    model.quic_base_name = "bert-tiny"
    return model


def base_model(name: str) -> torch.nn.Module:
    return tiny_bert() if name == "bert-tiny" else models.load(name, num_labels=3, seed=0)[0]


def inputs(name: str, seed: int = 0) -> tuple[torch.Tensor, ...]:
    batch = example_batch("minilm" if name == "bert-tiny" else name, 4, 12, 3, seed=seed, padded=True)
    if name == "bert-tiny":
        batch["input_ids"] %= 300
    return tuple(torch.from_numpy(v) for k, v in batch.items() if k != "labels")


def adapted(name: str, config: str, quantize: bool = True) -> torch.nn.Module:
    model = quic_edge.apply_quic(base_model(name), QuICConfig(target_modules=TARGETS[name], **CONFIGS[config]),
                                 quantize=quantize)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in delta_parameters(model).values():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return model.eval()


def output(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        return model(*args)


CASES = [(m, c) for m in MODELS for c in CONFIGS]


@pytest.mark.parametrize(("name", "config"), CASES)
def test_merge_equals_the_adapted_forward(name, config):
    model = adapted(name, config, quantize=False)  # an fp32 base: merging is exact up to rounding
    args = inputs(name)
    expected = output(model, args)
    merged = quic_edge.merge(model)
    torch.testing.assert_close(output(merged, args), expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "config"), CASES)
def test_delta_round_trip(name, config, tmp_path):
    model = adapted(name, config)
    path = quic_edge.save_delta(model, tmp_path / "d.safetensors")
    fresh = quic_edge.apply_quic(base_model(name), QuICConfig(target_modules=TARGETS[name], **CONFIGS[config]))
    assert not torch.equal(output(fresh, inputs(name)), output(model, inputs(name)))
    quic_edge.load_delta(fresh, path)
    torch.testing.assert_close(output(fresh, inputs(name)), output(model, inputs(name)), atol=0, rtol=0)


@pytest.mark.parametrize(("name", "config"), CASES)
def test_one_step_changes_only_the_delta(name, config):
    model = adapted(name, config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    delta = delta_parameters(model)
    task = "causal-lm" if name == "llama-tiny" else "classification"
    batch = example_batch("minilm" if name == "bert-tiny" else name, 4, 12, 3, padded=True)
    if name == "bert-tiny":
        batch["input_ids"] %= 300
        batch["labels"] %= 3
    quic_edge.training.fit(model, [batch], quic_edge.formats.optimizer.optimizer_spec("sgd", 0.5), task=task)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]) != (key in delta), key


def _graph(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> list[str]:
    program = torch.export.export(model, args, strict=False)
    return [f"{n.op}:{n.target}" for n in program.graph.nodes]


@pytest.mark.parametrize(("name", "config"), [(m, "orders 1,2") for m in MODELS])
def test_export_does_not_depend_on_call_order(name, config):
    """A freshly adapted model and one that ran a forward first export the same graph (index tables are buffers, not
    caches created on first use, which an exporter would trace as thousands of construction nodes)."""
    args = inputs(name)
    fresh = _graph(adapted(name, config), args)
    warm = adapted(name, config)
    output(warm, args)
    assert fresh == _graph(warm, args)


@pytest.mark.parametrize(("name", "config"), CASES)
def test_unload_leaves_the_model_as_it_was(name, config):
    model = quic_edge.quantize_int8(base_model(name), skip=("classifier", "score"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    args = inputs(name)
    expected = output(model, args)
    quic_edge.apply_quic(model, QuICConfig(target_modules=TARGETS[name], **CONFIGS[config]), quantize=False)
    with torch.no_grad():
        for p in delta_parameters(model).values():
            p.add_(0.1)  # trained a little: unload drops the angles (the head keeps what it learned)
    quic_edge.unload(model)
    assert not hasattr(model, "quic_state") and not hasattr(model, "quic_rotations")
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    after = model.state_dict()
    assert set(after) == set(state)
    for key, value in state.items():
        if key.split(".")[0] not in ("classifier", "score"):
            assert torch.equal(after[key], value), key
    if name == "llama-tiny":  # no head: the outputs are exactly the base's again
        torch.testing.assert_close(output(model, args), expected, atol=0, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_merged_model_can_be_adapted_again(name):
    model = adapted(name, "orders 1,2")
    merged = quic_edge.merge(model)
    with pytest.raises(quic_edge.state.AdapterError):
        quic_edge.merge(merged)
    again = quic_edge.apply_quic(merged, QuICConfig(target_modules=TARGETS[name]), quantize=False)
    assert len(again.quic_rotations.handles) == 2  # one pair of hooks, not a second stacked on stale ones
    torch.testing.assert_close(output(again, inputs(name)), output(quic_edge.merge(copy.deepcopy(again)), inputs(name)))


@pytest.mark.parametrize("name", ["mlp", "bert-tiny"])  # Llama's rotary embedding asks autocast about "meta": refused
def test_a_device_move_carries_the_index_tables(name):
    """Everything the forward needs moves with .to(): the meta device runs the forward without data, so any tensor
    left behind on the CPU (a global table) fails the mixed-device check."""
    model = adapted(name, "orders 1,2").to("meta")
    args = tuple(a.to("meta") for a in inputs(name))
    out = model(*args)
    assert out.device.type == "meta"
    assert all(b.device.type == "meta" for b in model.quic_rotations.buffers())


def test_a_deep_copy_has_its_own_hooks():
    model = adapted("mlp", "orders 1,2")
    twin = copy.deepcopy(model)
    quic_edge.merge(twin)
    assert not twin._forward_pre_hooks
    args = inputs("mlp")
    assert np.isfinite(output(model, args).numpy()).all()  # the original still builds its rotations
    assert model.quic_rotations.handles and len(model._forward_pre_hooks) == 1

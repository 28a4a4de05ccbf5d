"""apply_quic on the real MiniLM: what trains, what is int8, quantization error, deltas, one training step."""

from __future__ import annotations

import pytest
import torch

import quic_edge
from quic_edge.quantize import Int8Embedding, Int8Linear, quantize_per_channel
from quic_edge.tasks import example_batch


@pytest.fixture
def adapted(minilm):
    model, tokenizer = minilm
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    return quic_edge.apply_quic(model, quic_edge.QuICConfig()), reference


def test_only_angles_and_head_train(adapted):
    model, _ = adapted
    names = set(quic_edge.trainable_parameters(model))
    assert names == {n for n, _ in model.named_parameters() if n.endswith(".angles") or n.startswith("classifier.")}
    assert sum(n.endswith(".angles") for n in names) == 12  # query and value of 6 layers
    assert sum(p.numel() for p in quic_edge.trainable_parameters(model).values()) == 12 * 3 * 105 + 384 * 3 + 3


def test_large_frozen_weights_are_int8(adapted):
    model, _ = adapted
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "classifier":
            pytest.fail(f"{name} is still an fp32 Linear")
        if isinstance(module, torch.nn.Embedding):
            assert module.weight.numel() < 4096, name  # only token_type (2 x 384) stays fp32
    assert isinstance(model.encoder.embeddings.word_embeddings, Int8Embedding)
    int8 = [b for n, b in model.named_buffers() if n.endswith("weight_int8")]
    assert all(b.dtype == torch.int8 for b in int8) and sum(b.numel() for b in int8) > 21_000_000


def test_quantization_error_within_the_per_channel_bound(adapted):
    model, reference = adapted
    layer = model.encoder.encoder.layer[2].intermediate.dense
    assert isinstance(layer, Int8Linear)
    original = reference["encoder.encoder.layer.2.intermediate.dense.weight"]
    error = (layer.dequantized_weight() - original).abs()
    assert (error <= layer.weight_scale[:, None] / 2 + 1e-7).all()
    assert torch.allclose(layer.weight_scale, original.abs().amax(dim=1) / 127)
    table = model.encoder.embeddings.word_embeddings
    ids = torch.tensor([[101, 2023, 2003, 102]])
    rows = reference["encoder.embeddings.word_embeddings.weight"][ids]
    assert ((table(ids) - rows).abs() <= table.weight_scale[ids].unsqueeze(-1) / 2 + 1e-7).all()


def test_quantize_per_channel_on_edge_rows():
    w = torch.tensor([[0.0, 0.0], [1.0, -2.0], [1e-30, 3.0]])
    q, scale = quantize_per_channel(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert torch.equal(q[0], torch.zeros(2, dtype=torch.int8))  # an all-zero row stays zero, no NaN


def test_unchanged_outputs_at_initialisation(minilm):
    model, _ = minilm
    batch = example_batch("minilm", 2, 16, 3)
    ids, mask = torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])
    fp32 = quic_edge.apply_quic(model, quic_edge.QuICConfig(), quantize=False)
    plain, _ = quic_edge.models.load("minilm", num_labels=3, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(fp32(ids, mask), plain(ids, mask), atol=1e-5, rtol=1e-5)


def test_one_training_step_changes_only_trainable_tensors(adapted):
    model, _ = adapted
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = example_batch("minilm", 4, 16, 3)
    ids, mask, y = (torch.from_numpy(batch[k]) for k in ("input_ids", "attention_mask", "labels"))
    optimizer = torch.optim.SGD(quic_edge.trainable_parameters(model).values(), lr=0.5)
    torch.nn.functional.cross_entropy(model(ids, mask), y).backward()
    optimizer.step()
    trainable = set(quic_edge.trainable_parameters(model))
    for name, value in model.state_dict().items():
        changed = not torch.equal(value, before[name])
        assert changed == (name in trainable), name


def test_delta_round_trip_and_mismatch(adapted, minilm_base, tmp_path):
    model, _ = adapted
    with torch.no_grad():
        for p in quic_edge.trainable_parameters(model).values():
            p.normal_(0, 0.1)
    path = quic_edge.save_delta(model, tmp_path / "me.safetensors")
    import copy

    other = quic_edge.apply_quic(copy.deepcopy(minilm_base[0]), quic_edge.QuICConfig())
    quic_edge.load_delta(other, path)
    for name, p in quic_edge.trainable_parameters(model).items():
        assert torch.equal(p, quic_edge.trainable_parameters(other)[name])
    wrong_config = quic_edge.apply_quic(copy.deepcopy(minilm_base[0]), quic_edge.QuICConfig(orders=(1,)))
    with pytest.raises(quic_edge.DeltaError, match="config"):
        quic_edge.load_delta(wrong_config, path)
    wrong_base = copy.deepcopy(minilm_base[0])
    with torch.no_grad():
        wrong_base.encoder.encoder.layer[0].output.dense.weight[0, 0] += 0.5
    wrong_base = quic_edge.apply_quic(wrong_base, quic_edge.QuICConfig())
    with pytest.raises(quic_edge.DeltaError, match="base"):
        quic_edge.load_delta(wrong_base, path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a delta")
    with pytest.raises(quic_edge.DeltaError, match="safetensors"):
        quic_edge.load_delta(other, tmp_path / "bad.safetensors")


def test_apply_twice_and_missing_targets_are_clear_errors(adapted, minilm_base):
    model, _ = adapted
    with pytest.raises(ValueError, match="already"):
        quic_edge.apply_quic(model, quic_edge.QuICConfig())
    import copy

    with pytest.raises(ValueError, match="target_modules"):
        quic_edge.apply_quic(copy.deepcopy(minilm_base[0]), quic_edge.QuICConfig(target_modules=("q_proj",)))

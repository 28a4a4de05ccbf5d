"""Integrity of the whole bundle and values checked at the door, on the Python device loops (the Kotlin app's twins
are in tests/test_android_demo.py): an edited manifest, signatures and pinned digests, labels and token ids outside
the model, deltas with NaN or a newer format, a checkpoint from another bundle, no usable checkpoint."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import quic_edge
from quic_edge.cli import main
from quic_edge.delta import DeltaError
from quic_edge.export import export_bundle
from quic_edge.formats.bundle import BundleError
from quic_edge.formats.signing import generate_key_pair
from quic_edge.runtimes import open_loop
from quic_edge.runtimes.loop import CheckpointError
from quic_edge.runtimes.parity import NUM_LABELS, parity_model
from quic_edge.tasks import example_batch

KEYS = generate_key_pair()


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity") / "bundle"
    export_bundle("ort", parity_model("mlp"), example_batch("mlp", 4, 1, NUM_LABELS), folder, labels=["a", "b", "c"],
                  signing_key=KEYS[0])
    return folder


@pytest.fixture
def copy(signed, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(signed, target)
    return target


def _edit_manifest(bundle, change):
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change", [
    lambda m: m["labels"].reverse(),
    lambda m: m["optimizer"].update(lr=10.0),
    lambda m: m.update(base_fingerprint="0" * 64),
    lambda m: m["inputs"][0].update(shape=[4, 65]),
])
def test_an_edited_manifest_is_caught_by_its_root_digest(copy, tmp_path, change):
    _edit_manifest(copy, change)
    with pytest.raises(BundleError, match="manifest.json was altered after export"):
        open_loop(copy, tmp_path / "work")


def test_a_manifest_missing_a_key_is_refused_by_name_not_a_key_error(copy, tmp_path):
    _edit_manifest(copy, lambda m: m.pop("trainable"))
    (copy / "manifest.sha256").write_text(hashlib.sha256((copy / "manifest.json").read_bytes()).hexdigest())
    (copy / "manifest.sig").unlink()  # a re-digested edit (the signature is then what catches it)
    with pytest.raises(BundleError, match="trainable must map tensor names to shapes"):
        open_loop(copy, tmp_path / "work")


def test_a_signed_bundle_trains_only_with_its_publishers_key(copy, tmp_path):
    open_loop(copy, tmp_path / "ok", trusted_keys=[KEYS[1]])  # the publisher's key: fine
    with pytest.raises(BundleError, match="signed by none of the trusted keys"):
        open_loop(copy, tmp_path / "w1", trusted_keys=[generate_key_pair()[1]])
    (copy / "manifest.sig").unlink()
    with pytest.raises(BundleError, match="is not signed"):
        open_loop(copy, tmp_path / "w2", trusted_keys=[KEYS[1]])


def test_a_pinned_digest_refuses_any_other_bundle(copy, tmp_path):
    digest = (copy / "manifest.sha256").read_text().strip()
    open_loop(copy, tmp_path / "ok", expected_digest=digest)
    with pytest.raises(BundleError, match="not the bundle this app expects"):
        open_loop(copy, tmp_path / "w", expected_digest="f" * 64)


def test_signing_from_the_command_line(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path / "publisher")]) == 0
    assert (tmp_path / "publisher.key").stat().st_mode & 0o077 == 0  # the private key is the owner's alone
    assert main(["keygen", "--out", str(tmp_path / "publisher")]) == 2  # never overwritten without --force
    assert "exists" in capsys.readouterr().err
    bundle = tmp_path / "bundle"
    assert main(["export", "--model", "mlp", "--labels", "a,b,c", "--out", str(bundle), "--batch-size", "4",
                 "--sign", str(tmp_path / "publisher.key")]) == 0
    other_key = tmp_path / "other"
    assert main(["keygen", "--out", str(other_key)]) == 0
    data = tmp_path / "x.csv"
    data.write_text("text,label\nhello,a\n")
    capsys.readouterr()
    assert main(["train", "--bundle", str(bundle), "--data", str(data), "--out", str(tmp_path / "w"),
                 "--trusted-key", str(other_key) + ".pub"]) == 2
    assert "signed by none of the trusted keys" in capsys.readouterr().err


@pytest.mark.parametrize(("change", "match"), [
    (lambda b: b.update(labels=np.array([0, 1, 3, 0])), r"labels: label ids must be in 0\.\.2"),
    (lambda b: b.update(labels=np.array([0, -1, 1, 0])), r"labels: label ids must be in 0\.\.2"),
    (lambda b: b.update(features=np.full((4, 64), np.nan, dtype=np.float32)), "finite"),
    (lambda b: b.update(features=np.zeros((4, 64), dtype=np.float64)), "dtype"),
    (lambda b: b.update(features=np.zeros((4, 63), dtype=np.float32)), "shape"),
])
def test_values_outside_the_model_are_refused_before_the_runtime(copy, tmp_path, change, match):
    loop = open_loop(copy, tmp_path / "work")
    before = loop.parameters()
    batch = example_batch("mlp", 4, 1, NUM_LABELS)
    change(batch)
    with pytest.raises(ValueError, match=match):
        loop.train_step(batch)
    assert loop.step == 0
    for name, value in loop.parameters().items():
        np.testing.assert_array_equal(value, before[name])


def test_token_ids_outside_the_vocabulary_are_refused(tmp_path):
    model = quic_edge.apply_quic(quic_edge.models.load("llama-tiny", seed=0)[0],
                                 quic_edge.QuICConfig(target_modules=("q_proj",), blocks=1, orders=(1,)))
    export_bundle("ort", model, example_batch("llama-tiny", 2, 8, 1), tmp_path / "b")
    loop = open_loop(tmp_path / "b", tmp_path / "w")
    batch = example_batch("llama-tiny", 2, 8, 1)
    batch["input_ids"][0, 0] = 256  # the vocabulary has 256 ids: 0..255
    with pytest.raises(ValueError, match=r"input_ids.*0\.\.255|input_ids.*range"):
        loop.train_step(batch)


def test_a_delta_with_nan_a_wrong_shape_or_a_newer_format_is_refused(copy, tmp_path):
    loop = open_loop(copy, tmp_path / "work")
    loop.train_step(example_batch("mlp", 4, 1, NUM_LABELS))
    path = loop.export_delta(tmp_path / "me.safetensors")
    model = parity_model("mlp")
    quic_edge.load_delta(model, path)  # the good one loads

    from safetensors import safe_open

    with safe_open(str(path), "np") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    name = next(n for n in tensors if n.endswith("angles"))
    for label, changed, meta, match in [
        ("nan", {**tensors, name: np.full_like(tensors[name], np.nan)}, metadata, "NaN|finite"),
        ("shape", {**tensors, name: tensors[name][..., :-1].copy()}, metadata, "shape"),
        ("newer", tensors, {**metadata, "format_version": "99"}, "upgrade|newer|format"),
    ]:
        bad = tmp_path / f"{label}.safetensors"
        save_file(changed, str(bad), metadata=meta)
        with pytest.raises(DeltaError, match=match):
            quic_edge.load_delta(parity_model("mlp"), bad)


def test_merge_refuses_non_finite_angles():
    model = parity_model("mlp")
    layer = next(m for m in model.modules() if hasattr(m, "angles"))
    with torch.no_grad():
        layer.angles[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        quic_edge.merge(model)
    assert hasattr(model, "quic_rotations")  # nothing was merged


def test_a_checkpoint_of_another_bundle_is_refused_and_nothing_restarts_silently(copy, signed, tmp_path):
    work = tmp_path / "work"
    loop = open_loop(copy, work)
    for step in range(2):
        loop.train_step(example_batch("mlp", 4, 1, NUM_LABELS, seed=step))
    loop.save_checkpoint()
    other = tmp_path / "other"  # the same model with another config: another identity
    model = quic_edge.apply_quic(quic_edge.models.load("mlp", num_labels=3)[0],
                                 quic_edge.QuICConfig(target_modules=("fc1",), blocks=2, orders=(1,)))
    export_bundle("ort", model, example_batch("mlp", 4, 1, NUM_LABELS), other, labels=["a", "b", "c"])
    with pytest.raises(CheckpointError, match=r"(?s)checkpoints.*start.over"):
        open_loop(other, work)
    assert (work / "checkpoints" / "ckpt-00000002").is_dir()  # kept, not deleted
    fresh = open_loop(other, work, start_over=True)
    assert fresh.step == 0
    assert any(p.name.startswith("unusable-") for p in (work / "checkpoints").iterdir())  # moved aside, kept


def test_when_every_checkpoint_is_damaged_the_loop_stops_and_names_the_way_out(copy, tmp_path, capsys):
    work = tmp_path / "work"
    loop = open_loop(copy, work)
    loop.train_step(example_batch("mlp", 4, 1, NUM_LABELS))
    saved = loop.save_checkpoint()
    for file in saved.iterdir():
        file.write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match=str(work / "checkpoints")):
        open_loop(copy, work)
    data = tmp_path / "x.csv"
    data.write_text("text,label\n" + "".join(f"t{i},a\n" for i in range(4)))
    assert main(["train", "--bundle", str(copy), "--data", str(data), "--out", str(work)]) == 2
    assert "--start-over" in capsys.readouterr().err

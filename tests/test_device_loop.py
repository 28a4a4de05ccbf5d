"""Both device loops (ONNX Runtime, ExecuTorch) on a small bundle: training, checkpoints, resume, faults, delta."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from quic_edge import load_delta
from quic_edge.export import export_bundle
from quic_edge.formats.bundle import BundleError
from quic_edge.runtimes import open_loop
from quic_edge.runtimes.executorch import ExecuTorchLoop
from quic_edge.runtimes.loop import BatchError
from quic_edge.runtimes.ort import OrtLoop
from quic_edge.runtimes.parity import NUM_LABELS, parity_model
from quic_edge.tasks import example_batch

LABELS = ["a", "b", "c"]


def batch(step: int) -> dict[str, np.ndarray]:
    return example_batch("mlp", 8, 1, NUM_LABELS, seed=step)


LOOPS = {"ort": OrtLoop, "executorch": ExecuTorchLoop}


@pytest.fixture(scope="module", params=sorted(LOOPS))
def runtime(request):
    return request.param


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, runtime):
    folder = tmp_path_factory.mktemp(f"loop-{runtime}") / "bundle"
    export_bundle(runtime, parity_model("mlp"), batch(0), folder, labels=LABELS, optimizer="adamw", lr=1e-2)
    return folder


@pytest.fixture()
def copy(bundle, tmp_path):
    """A private copy of the bundle that a test may damage."""
    return shutil.copytree(bundle, tmp_path / "bundle")


def train(loop, start: int, stop: int) -> list[float]:
    return [loop.train_step(batch(s)) for s in range(start, stop)]


def test_open_loop_picks_the_runtime_loop_and_training_lowers_the_loss(bundle, runtime, tmp_path):
    loop = open_loop(bundle, tmp_path / "work")
    assert isinstance(loop, LOOPS[runtime]) and loop.step == 0
    fixed = batch(0)
    losses = [loop.train_step(fixed) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]
    assert loop.step == 15


def test_resume_continues_exactly_where_it_stopped(bundle, tmp_path):
    straight = open_loop(bundle, tmp_path / "straight")
    train(straight, 0, 6)
    first = open_loop(bundle, tmp_path / "resumed")
    train(first, 0, 3)
    first.save_checkpoint()
    del first
    second = open_loop(bundle, tmp_path / "resumed")  # a fresh process would do the same: resume from disk
    assert second.step == 3
    train(second, 3, 6)
    for name, value in straight.parameters().items():  # AdamW moments and step count came back too
        np.testing.assert_allclose(second.parameters()[name], value, rtol=0, atol=1e-7)


def test_checkpoints_rotate_and_a_corrupt_newest_falls_back_to_the_previous(bundle, tmp_path):
    loop = open_loop(bundle, tmp_path / "work", keep=2)
    saved = {}
    for step in range(3):
        train(loop, step, step + 1)
        loop.save_checkpoint()
        saved[loop.step] = loop.parameters()
    assert [p.name for p in loop.checkpoints()] == ["ckpt-00000003", "ckpt-00000002"]
    newest = next(p for p in loop.checkpoints()[0].iterdir() if p.name != "state.json")  # the runtime's state file
    newest.write_bytes(newest.read_bytes()[:-10] + b"0123456789")
    again = open_loop(bundle, tmp_path / "work")
    assert again.step == 2
    for name, value in saved[2].items():
        np.testing.assert_array_equal(again.parameters()[name], value)


def test_nan_loss_skips_the_step_and_never_reaches_a_checkpoint(bundle, tmp_path):
    loop = open_loop(bundle, tmp_path / "work")
    train(loop, 0, 2)
    before = loop.parameters()
    poisoned = batch(2)
    poisoned["features"][3, 5] = np.nan
    with pytest.raises(BatchError, match="NaN or infinite"):  # refused at the door: nothing runs
        loop.train_step(poisoned)
    overflowing = batch(3)
    overflowing["features"][0] = 3e38  # finite, but the forward overflows: the loss is NaN or infinite
    assert not np.isfinite(loop.train_step(overflowing))
    for name, value in loop.parameters().items():
        np.testing.assert_array_equal(value, before[name])
    assert np.isfinite(loop.train_step(batch(4)))  # the gradients of the bad steps were dropped
    loop.save_checkpoint()
    resumed = open_loop(bundle, tmp_path / "work")
    assert all(np.isfinite(v).all() for v in resumed.parameters().values())


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda b: b.pop("features"), r"batch inputs \['labels'\] do not match"),
        (lambda b: b.update(extra=np.zeros(1)), "do not match the bundle's inputs"),
        (lambda b: b.update(features=b["features"][:4]), r"input features: shape \[4, 64\], the bundle expects \[8, 64\]"),
        (lambda b: b.update(features=b["features"].astype(np.float64)), "dtype float64, the bundle expects float32"),
        (lambda b: b.update(labels=b["labels"].astype(np.int32)), "dtype int32, the bundle expects int64"),
        (lambda b: b.update(labels=b["labels"].tolist()), "give a numpy array"),
    ],
)
def test_wrong_inputs_are_refused_by_name(bundle, tmp_path, change, match):
    loop = open_loop(bundle, tmp_path / "work")
    bad = batch(0)
    change(bad)
    with pytest.raises(ValueError, match=match):
        loop.train_step(bad)
    assert loop.step == 0


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder, manifest):
    """An edit made consistently (manifest and its root digest), as a tool that knows the format would: what the
    checks behind the root digest must still catch."""
    data = json.dumps(manifest).encode()
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")


def runtime_file(folder) -> str:
    """The runtime's main file in a bundle (the training graph or the program)."""
    files = _manifest(folder)["files"]
    return files.get("training_model") or files["program"]


def test_missing_file(copy, tmp_path):
    name = runtime_file(copy)
    (copy / name).unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        open_loop(copy, tmp_path / "work")


def test_altered_file(copy, tmp_path):
    path = copy / runtime_file(copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{path.name} is altered or corrupt"):
        open_loop(copy, tmp_path / "work")


def test_newer_format_version(copy, tmp_path):
    manifest = _manifest(copy)
    manifest["format_version"] += 1
    _write_manifest(copy, manifest)
    with pytest.raises(BundleError, match="upgrade quic-edge"):
        open_loop(copy, tmp_path / "work")


@pytest.mark.parametrize("path", ["../outside.onnx", "/etc/passwd", "sub/../../x"])
def test_path_escaping_the_bundle(copy, tmp_path, path):
    manifest = _manifest(copy)
    manifest["files"]["eval_model"] = path
    manifest["sha256"][path] = "0" * 64
    _write_manifest(copy, manifest)
    with pytest.raises(BundleError, match="escapes the bundle"):
        open_loop(copy, tmp_path / "work")


def test_a_bundle_of_another_runtime(copy, runtime, tmp_path):
    other = next(r for r in LOOPS if r != runtime)
    manifest = _manifest(copy)
    manifest["runtime"] = other
    _write_manifest(copy, manifest)
    with pytest.raises(BundleError, match=f"is a {other} bundle; this loop runs {runtime} bundles"):
        LOOPS[runtime](copy, tmp_path / "work")


def test_delta_loads_into_pytorch_and_gives_the_runtime_logits(bundle, tmp_path):
    loop = open_loop(bundle, tmp_path / "work")
    train(loop, 0, 5)
    delta = loop.export_delta(tmp_path / "me.safetensors")
    model = load_delta(parity_model("mlp"), delta)  # an independent PyTorch model of the same base and config
    probe = batch(99)
    with torch.no_grad():
        expected = model(torch.from_numpy(probe["features"])).numpy()
    np.testing.assert_allclose(loop.logits({"features": probe["features"]}), expected, rtol=0, atol=1e-5)
    assert delta.stat().st_size < 24_000


def test_the_device_loop_never_imports_torch(bundle, runtime, tmp_path):
    if runtime != "ort":
        pytest.skip("ExecuTorch's Python runtime imports torch itself (RUNTIMES.md); only the ORT loop is torch-free")
    np.savez(tmp_path / "batch.npz", **batch(0))
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from quic_edge.runtimes import open_loop
        batch = dict(np.load({str(tmp_path / 'batch.npz')!r}))
        loop = open_loop({str(bundle)!r}, {str(tmp_path / 'work')!r})
        losses = [loop.train_step(batch) for _ in range(3)]
        loop.save_checkpoint()
        loop.export_delta({str(tmp_path / 'delta.safetensors')!r})
        assert losses[-1] < losses[0], losses
        assert "torch" not in sys.modules, "torch was imported"
        print("ok", loop.step)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok 3")


def test_evaluating_between_steps_changes_nothing(bundle, tmp_path):
    """ONNX Runtime loads its eval graph only when first asked (a training-only session holds less): the switch goes
    through a checkpoint of the live state, so parameters and optimizer moments carry on exactly."""
    plain, evaluated = open_loop(bundle, tmp_path / "plain"), open_loop(bundle, tmp_path / "evaluated")
    train(plain, 0, 3)
    train(evaluated, 0, 3)
    evaluated.logits({"features": batch(9)["features"]})
    train(plain, 3, 6)
    train(evaluated, 3, 6)
    for name, value in plain.parameters().items():
        np.testing.assert_array_equal(evaluated.parameters()[name], value)

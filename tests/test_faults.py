"""Kills and full disks: a process killed in the middle of a checkpoint write, a disk that fills up while a
checkpoint or a delta is written. The previous checkpoint and the previous delta always load afterwards."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from quic_edge.export import export_bundle
from quic_edge.formats.delta_file import read_delta_file
from quic_edge.runtimes import open_loop
from quic_edge.runtimes.parity import NUM_LABELS, parity_model
from quic_edge.tasks import example_batch

RUNTIMES = ("ort", "executorch")


@pytest.fixture(scope="module", params=RUNTIMES)
def bundle(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"faults-{request.param}") / "bundle"
    export_bundle(request.param, parity_model("mlp"), example_batch("mlp", 8, 1, NUM_LABELS), folder,
                  labels=["a", "b", "c"], optimizer="adamw", lr=1e-2)
    return folder


def batch(step: int) -> dict[str, np.ndarray]:
    return example_batch("mlp", 8, 1, NUM_LABELS, seed=step)


def trained(bundle: Path, work: Path, steps: int):
    loop = open_loop(bundle, work)
    for step in range(loop.step, steps):
        loop.train_step(batch(step))
    return loop


# A child that trains 3 steps, checkpoints, trains 2 more and checkpoints again, pausing inside that second write
# (after the runtime's files are written, before state.json and the rename) so the kill lands there every time.
CHILD = textwrap.dedent("""
    import sys, time
    from quic_edge.runtimes import open_loop
    from quic_edge.tasks import example_batch
    loop = open_loop(sys.argv[1], sys.argv[2])
    for step in range(3):
        loop.train_step(example_batch("mlp", 8, 1, 3, seed=step))
    loop.save_checkpoint()
    for step in range(3, 5):
        loop.train_step(example_batch("mlp", 8, 1, 3, seed=step))
    write = loop._save_state
    def paused(folder):
        write(folder)
        print("inside the write", flush=True)
        time.sleep(600)
    loop._save_state = paused
    loop.save_checkpoint()
""")


def test_a_kill_inside_a_checkpoint_write_leaves_the_previous_one(bundle, tmp_path):
    work = tmp_path / "work"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(bundle), str(work)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        assert child.stdout.readline().strip() == "inside the write"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    entries = sorted(p.name for p in (work / "checkpoints").iterdir())
    assert len(entries) == 2 and entries[0].startswith(".tmp-ckpt-00000005")  # the torn write, never named
    assert entries[1] == "ckpt-00000003"
    resumed = open_loop(bundle, work)
    assert resumed.step == 3
    reference = trained(bundle, tmp_path / "reference", 3)
    for name, value in reference.parameters().items():
        np.testing.assert_allclose(resumed.parameters()[name], value, rtol=0, atol=1e-7)
    resumed.save_checkpoint()  # the next save clears the torn folder
    assert not [p for p in (work / "checkpoints").iterdir() if p.name.startswith(".tmp-")]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(bundle, tmp_path, monkeypatch):
    loop = trained(bundle, tmp_path / "work", 3)
    loop.save_checkpoint()
    saved = loop.parameters()
    for step in range(3, 5):
        loop.train_step(batch(step))
    write = loop._save_state

    def half_then_full(folder):
        write(folder)
        for file in folder.iterdir():  # the runtime's file half written, then the disk is full
            file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        _disk_full()

    monkeypatch.setattr(loop, "_save_state", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        loop.save_checkpoint()
    assert [p.name for p in (tmp_path / "work" / "checkpoints").iterdir()] == ["ckpt-00000003"]
    resumed = open_loop(bundle, tmp_path / "work")
    assert resumed.step == 3
    for name, value in saved.items():
        np.testing.assert_array_equal(resumed.parameters()[name], value)


def test_a_full_disk_during_a_delta_export_keeps_the_previous_delta(bundle, tmp_path, monkeypatch):
    loop = trained(bundle, tmp_path / "work", 2)
    path = loop.export_delta(tmp_path / "me.safetensors")
    before = path.read_bytes()
    loop.train_step(batch(2))
    monkeypatch.setattr("quic_edge.formats.atomic.os.fsync", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        loop.export_delta(path)
    assert path.read_bytes() == before and read_delta_file(path)[1]["adapter"] == "quic"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["me.safetensors"]  # no temporary left


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (needs root and mount rights; skipped where a sandbox forbids it)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.decode().strip()[:100]}")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_really_full_disk_keeps_the_previous_delta(bundle, tmp_path, small_disk):
    loop = trained(bundle, tmp_path / "work", 2)
    path = loop.export_delta(small_disk / "me.safetensors")
    before = path.read_bytes()
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # fill the disk to the last block (unbuffered: close cannot fail)
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    loop.train_step(batch(2))
    with pytest.raises(OSError) as caught:
        loop.export_delta(path)
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "me.safetensors"]

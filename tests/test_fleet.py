"""The fleet end to end on the real MiniLM bundle and ONNX Runtime device loop: Flower's simulation engine with
faulty clients (through the `quic-edge fleet simulate` command), and the same apps as a real deployment
(SuperLink and SuperNodes as separate processes on loopback)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from quic_edge.delta import read_delta_file
from quic_edge.fleet.partition import fleet_split
from quic_edge.fleet.simulate import FleetSettings, export_fleet_bundle
from quic_edge.fleet.soundness import read_updates
from quic_edge.formats.identity import identity_of

SETTINGS = FleetSettings(n_train=16, n_test=8, heldout=24)
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return export_fleet_bundle(SETTINGS, "quic", tmp_path_factory.mktemp("fleet") / "bundles" / "quic")


def test_client_splits_are_disjoint_skewed_and_apart_from_the_heldout_set():
    split = fleet_split(clients=20, n_train=32, n_test=32, heldout=250, alpha=0.5, seed=0)
    seen = [e.text for e in split.heldout]
    for client in split.clients:
        assert len(client.train) == 32 and len(client.test) == 32
        seen += [e.text for e in client.train + client.test]
    assert len(seen) == len(set(seen))  # no article in two places
    assert {e.label for e in split.heldout} == set(split.labels)
    mixes = np.array([c.mix(split.labels) for c in split.clients])
    assert mixes.max(axis=1).mean() > 0.5  # skewed: most clients are dominated by one topic
    assert len({int(m.argmax()) for m in mixes}) >= 3  # and not all by the same one


def test_load_parameters_writes_the_global_into_the_device_loop(bundle, tmp_path):
    from quic_edge.runtimes import open_loop

    loop = open_loop(bundle, tmp_path / "work", threads=1)
    rng = np.random.default_rng(0)
    values = {n: rng.normal(0, 0.05, a.shape).astype(np.float32) for n, a in loop.parameters().items()}
    values["classifier.weight"][:] = 0
    values["classifier.bias"][:] = np.arange(5, dtype=np.float32)
    loop.load_parameters(values)
    for name, array in loop.parameters().items():
        np.testing.assert_array_equal(array, values[name])
    inputs, _ = loop.encode(fleet_split(2, 8, 0, 0, 1.0).clients[0].train)
    np.testing.assert_allclose(loop.logits(inputs), np.tile(np.arange(5, dtype=np.float32), (8, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="missing"):
        loop.load_parameters({k: v for k, v in values.items() if k != "classifier.bias"})


@pytest.mark.parametrize("seconds", ["0", "-5", "nan", "inf"])
def test_a_round_timeout_that_is_not_a_positive_number_of_seconds_is_refused_before_any_work(seconds, tmp_path):
    result = _run_cli("fleet", "simulate", "--round-timeout", seconds, "--out", str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "round timeout: the server needs a positive number of seconds" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def _run_cli(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quic_edge.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_simulation_rejects_faulty_clients_and_keeps_the_global_clean(bundle):
    out = bundle.parent.parent  # the command reuses the bundle exported under <out>/bundles/quic
    result = _run_cli(
        "fleet", "simulate", "--clients", "5", "--rounds", "2", "--n-train", "8", "--n-test", "8", "--heldout", "24",
        "--no-lora", "--no-centralized", "--cpus", "2", "--faults", "2:nan,3:drop,4:foreign-config",
        "--round-timeout", "240",  # a reply lost in the engine shows as a dropped client below, not as this run's timeout
        "--out", str(out), "--json", str(out / "s.json"), timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((out / "s.json").read_text())
    history = summary["federations"]["quic"]
    for entry in history["rounds"]:
        assert sorted(entry["accepted"]) == ["client-0", "client-1"]
        reasons = dict(entry["rejected"])
        assert len(reasons) == 3
        assert "non-finite" in reasons["client-2"]
        assert "its config is" in reasons["client-4"]
        # a node that never replied well is known by its node id only; its error names the client
        assert any("client-3 dropped mid-round" in reason for reason in reasons.values())
        for client, reason in reasons.items():
            assert f"rejected the update of client {client}: {reason[:40]}" in result.stderr
        assert entry["bytes_up_per_client"] > 0 and np.isfinite(entry["global_accuracy"])
        assert 0 <= entry["personal_accuracy"] <= 1
    # The global after the last round is the example-weighted mean of the accepted updates, computed here anew.
    tensors, weights = read_updates(out / "quic" / "updates-round-2.npz")
    assert sorted(tensors) == ["client-0", "client-1"]
    delta, meta = read_delta_file(out / "quic" / "global.safetensors")
    assert meta["base_fingerprint"] == identity_of(json.loads((bundle / "manifest.json").read_text()))["base_fingerprint"]
    for name, array in delta.items():
        assert np.isfinite(array).all()
        want = np.average(np.stack([tensors[c][name] for c in sorted(tensors)]), axis=0,
                          weights=[weights[c] for c in sorted(tensors)])
        np.testing.assert_allclose(array, want, rtol=1e-6, atol=1e-7)
    for name in ("summary.md", "accuracy.png", "results.json"):
        assert (out / name).stat().st_size > 0
    assert summary["rotation_gap"]["2"]["max_relative_gap_mean_rotation"] < 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group this test started (the node's SuperExec and app children with it)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def _wait_for(path: Path, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{path.name} never said {text!r}:\n{path.read_text(errors='replace')[-3000:]}")


def test_loopback_deployment_superlink_and_supernodes(bundle, tmp_path):
    from quic_edge.fleet.deploy import write_connection, write_flower_app
    from quic_edge.fleet.server import ServerSettings

    clients, port = 2, _free_port()
    settings = ServerSettings(bundle=str(bundle), work_root=str(tmp_path / "work"), clients=clients, n_train=8, n_test=8,
                              heldout=16, rounds=2, out=str(tmp_path / "out"), round_timeout=240.0)
    app = write_flower_app(tmp_path / "app", settings)
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr"), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    write_connection(env["FLWR_HOME"], "loopback", f"127.0.0.1:{port}")
    processes = []
    try:
        processes.append(_start([str(BIN / "flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
                                 "--port", str(port), "--database", str(tmp_path / "link.db")], tmp_path / "link.log", env))
        _wait_for(tmp_path / "link.log", "Uvicorn running", 60)
        for i in range(clients):
            processes.append(_start(
                [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}",
                 "--port", str(_free_port()), "--node-config", f"partition-id={i}"], tmp_path / f"node{i}.log", env))
        for i in range(clients):
            _wait_for(tmp_path / f"node{i}.log", "SuperNode ID", 60)
        run = subprocess.run([str(BIN / "flwr"), "run", str(app), "loopback", "--stream"], capture_output=True, text=True,
                             env=env, timeout=420)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        history_file = tmp_path / "out" / "history.json"
        deadline = time.monotonic() + 60
        while not history_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.5)
        history = json.loads(history_file.read_text())
    finally:
        for process in reversed(processes):
            _stop(process)
    assert [e["round"] for e in history["rounds"]] == [1, 2]
    for entry in history["rounds"]:
        assert sorted(entry["accepted"]) == ["client-0", "client-1"] and entry["rejected"] == []
        assert np.isfinite(entry["global_accuracy"]) and 0 <= entry["personal_accuracy"] <= 1
    assert (tmp_path / "out" / "global.safetensors").is_file()
    assert all(process.poll() is not None for process in processes)

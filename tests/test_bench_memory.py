"""`quic-edge bench memory` (issue 6): the Raspberry Pi tool, run here on real bundles of both runtimes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quic_edge.cli import main

STEPS = 4


@pytest.fixture(scope="module", params=["ort", "executorch"])
def bundle(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / "bundle"
    assert main(["export", "--runtime", request.param, "--model", "mlp", "--labels", "a,b,c", "--out", str(folder)]) == 0
    return request.param, folder


def test_reports_peaks_per_phase_runtime_figures_and_the_machine(bundle, tmp_path, capsys):
    runtime, folder = bundle
    out = tmp_path / "memory.json"
    assert main(["bench", "memory", "--bundle", str(folder), "--runtime", runtime, "--steps", str(STEPS),
                 "--json", str(out), "--label", "test run"]) == 0
    result = json.loads(out.read_text())
    rss = result["peak_rss_mib"]
    assert set(rss) == {"load", "first_step", "steady"}
    assert all(20 < v < 4096 for v in rss.values()), rss
    assert result["training_peak_rss_mib"] == max(rss.values())
    assert result["steps"] == STEPS and len(result["losses"]) == STEPS and result["losses"][-1] < result["losses"][0]
    assert 0 < result["min_step_ms"] <= result["median_step_ms"]
    # CPU time per step: every thread of the process, so at most the wall time on each core (and some slack)
    assert 0 < result["median_step_cpu_ms"] <= 1.2 * os.cpu_count() * result["median_step_ms"] + 1
    assert result["checkpoint_bytes"] > 0 and result["label"] == "test run"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert result["batch"] == {s["name"]: s["shape"] for s in [*manifest["inputs"], manifest["target"]]}
    machine = result["machine"]
    assert machine["cores"] == os.cpu_count() and machine["arch"] == os.uname().machine
    mem_total_kib = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
    assert machine["ram_mib"] == round(mem_total_kib / 1024)
    if runtime == "ort":
        assert result["torch_imported"] is False  # the device process a Pi runs has no torch
        assert result["runtime_memory"]["cpu_arena"] is True
        assert result["runtime_version"] == "onnxruntime-training-cpu 1.19.2"
    else:
        planned = result["runtime_memory"]["planned_buffer_bytes"]
        assert planned and all(b >= 0 for b in planned) and sum(planned) > 0
    assert "| steady |" in capsys.readouterr().out
    # the runtime alone, measured before the bundle is opened: part of every phase's figure, below each, and what a
    # fresh process holds with only the runtime's loader imported (measured apart here)
    assert 20 < result["runtime_rss_mib"] < rss["load"], (result["runtime_rss_mib"], rss)
    alone = ("from quic_edge.runtimes import loop_class\nfrom quic_edge.bench.memory import rss_mib\n"
             f"loop_class({runtime!r}).load_runtime()\nprint(rss_mib())\n")
    reference = float(subprocess.run([sys.executable, "-c", alone], capture_output=True, text=True,
                                     check=True).stdout.split()[-1])
    assert abs(result["runtime_rss_mib"] - reference) < 10, (result["runtime_rss_mib"], reference)


def test_the_peak_resets_between_phases():
    """The mechanism the phases rely on: after a 200 MB allocation is freed, a reset drops the peak again."""
    code = (
        "import numpy as np\n"
        "from quic_edge.bench.memory import peak_rss_mib, reset_peak\n"
        "base = peak_rss_mib()\n"
        "a = np.ones(200 * 2**20 // 8); big = peak_rss_mib(); del a\n"
        "reset_peak(); after = peak_rss_mib()\n"
        "print(base, big, after)\n"
    )
    base, big, after = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                 check=True).stdout.split())
    assert big > base + 150 and after < big - 150


def test_a_fixed_mmap_threshold_returns_freed_blocks_at_once(bundle, tmp_path):
    """Why the device benchmark has an "off-mmap" mode: once a 4 MiB block was freed, glibc serves 512 KiB blocks from
    its heap and keeps them resident after they are freed (it raises its mmap threshold); with the threshold fixed at
    128 KiB (the child's environment, as measure_fresh sets it) they are unmapped on free."""
    from quic_edge.bench.memory import MMAP_THRESHOLD_ENV, measure_fresh

    code = ("import numpy as np\nfrom quic_edge.bench.memory import rss_split\n"
            "a = np.ones(4 * 2**20 // 8); del a\n"
            "blocks = [np.ones(2**19 // 8) for _ in range(100)]; keep = blocks[-1]; del blocks\n"
            "print(rss_split()['RssAnon'] / 1024)\n")

    def resident_mib(env: dict[str, str]) -> float:
        return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env={**os.environ, **env}).stdout)

    assert resident_mib({}) > resident_mib({MMAP_THRESHOLD_ENV: "131072"}) + 30
    runtime, folder = bundle
    if runtime == "ort":
        measured = measure_fresh(folder, tmp_path / "work", 2, cpu_arena=False, mmap_threshold=131072)
        assert measured["runtime_memory"]["malloc_mmap_threshold"] == "131072"
        assert measure_fresh(folder, tmp_path / "work2", 2)["runtime_memory"]["malloc_mmap_threshold"] is None


def test_buffer_reuse_is_off_in_the_loop_unless_asked(bundle, tmp_path, capsys):
    """ORT's buffer reuse ties a freed buffer up until the tensor that takes it over dies (runtimes/ort.py): the device
    loop turns it off; the setting is read back from the session options and reported with every measurement."""
    from quic_edge.bench.memory import measure_fresh

    runtime, folder = bundle
    if runtime != "ort":
        assert main(["bench", "memory", "--bundle", str(folder), "--mem-reuse", "on"]) == 2
        assert "ONNX Runtime settings" in capsys.readouterr().err
        return
    assert measure_fresh(folder, tmp_path / "work", 2)["runtime_memory"]["enable_mem_reuse"] is False
    report = tmp_path / "reuse.json"
    assert main(["bench", "memory", "--bundle", str(folder), "--steps", "2", "--mem-reuse", "on", "--json",
                 str(report)]) == 0
    assert json.loads(report.read_text())["runtime_memory"]["enable_mem_reuse"] is True


def test_a_bundle_of_another_runtime_is_a_clear_error(bundle, capsys):
    runtime, folder = bundle
    other = "executorch" if runtime == "ort" else "ort"
    assert main(["bench", "memory", "--bundle", str(folder), "--runtime", other]) == 2
    assert f"pass --runtime {runtime}" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [(["--steps", "0"], "--steps"), (["--bundle", "/nonexistent"], "not a bundle")])
def test_bad_arguments_are_clear_errors(bundle, args, message, capsys):
    _, folder = bundle
    full = ["bench", "memory", "--bundle", str(folder), *args]
    assert main(full) == 2
    assert message in capsys.readouterr().err

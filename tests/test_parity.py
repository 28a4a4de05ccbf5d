"""Parity of each runtime with PyTorch eager (DESIGN.md section 5): same init, data and optimizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quic_edge.cli import main
from quic_edge.runtimes.parity import collect, judge, run_parity, within_targets

SMALL = [(runtime, name, optimizer) for runtime in ("ort", "executorch") for name in ("mlp", "llama-tiny")
         for optimizer in ("adamw", "sgd")]


@pytest.mark.parametrize(("runtime", "name", "optimizer"), [
    pytest.param(*case, marks=pytest.mark.slow) if case[:2] == ("executorch", "llama-tiny") else case for case in SMALL])
def test_parity_small_models(runtime, name, optimizer):
    report = run_parity(runtime, name, steps=20, optimizer=optimizer)
    assert report["within"], report["failures"]
    assert report["gradient_steps_checked"] == 20 and len(report["losses_runtime"]) == 20
    # every trainable tensor moved by far more than the parameter tolerance, on both sides
    assert report["min_moved_over_needed"] > 1.0
    assert {m["side"] for m in report["moved"]} == {"eager", "runtime"}


@pytest.mark.parametrize("runtime", ["ort", pytest.param("executorch", marks=pytest.mark.slow)])  # ExecuTorch: 40 s
def test_parity_minilm_short(runtime):
    """The real MiniLM, padded masks, 3 AdamW steps at batch 2 x 16: short enough for every run."""
    report = judge(collect(runtime, "minilm", steps=3, optimizer="adamw", shape=(2, 16)))
    assert report["within"], report["failures"]
    assert report["trainable_numbers"] == 12 * 3 * 105 + 384 * 3 + 3


@pytest.fixture(scope="module")
def small_run():
    """One real parity run (mlp, ONNX Runtime, AdamW) whose traces the fault tests below damage."""
    return collect("ort", "mlp", steps=6, optimizer="adamw")


def _faulty(run, side: str, fault):
    import copy

    damaged = copy.deepcopy(run)
    fault(getattr(damaged, side))
    return judge(damaged)


def _zero_gradient(trace):
    name = next(n for n in trace.gradients[2] if n.endswith("angles"))
    trace.gradients[2][name] = np.zeros_like(trace.gradients[2][name])


def _frozen_angles(trace):
    name = next(n for n in trace.final if n.endswith("angles"))
    trace.final[name] = trace.initial[name].copy()


def _five_percent_on_a_small_tensor(trace):
    name = min(trace.final, key=lambda n: trace.final[n].size)  # the head's bias: 3 numbers
    trace.final[name] = trace.final[name] * 1.05


def _nan(trace):
    name = next(iter(trace.gradients[4]))
    trace.gradients[4][name] = trace.gradients[4][name].copy()
    trace.gradients[4][name].flat[0] = np.nan


def _reshaped(trace):
    name = next(iter(trace.final))
    trace.final[name] = trace.final[name].reshape(1, -1)  # same numbers, one more axis


def test_the_harness_passes_the_real_run(small_run):
    report = judge(small_run)
    assert report["within"], report["failures"]


@pytest.mark.parametrize(("fault", "side", "expected"), [
    (_zero_gradient, "device", "angles"),
    (_frozen_angles, "device", "moved only"),
    (_frozen_angles, "eager", "moved only"),
    (_five_percent_on_a_small_tensor, "device", "classifier.bias"),
    (_nan, "device", "NaN"),
    (_nan, "eager", "NaN"),
    (_reshaped, "device", "shape"),
])
def test_each_check_fails_on_its_fault(small_run, fault, side, expected):
    report = _faulty(small_run, side, fault)
    assert not report["within"]
    assert any(expected in f["name"] or expected in f["why"] for f in report["failures"]), report["failures"]


def test_parity_command_writes_the_json_report(tmp_path):
    out = tmp_path / "parity.json"
    assert main(["parity", "--runtime", "ort", "--model", "mlp", "--steps", "5", "--optimizer", "sgd", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for key in ("runtime", "model", "optimizer", "steps", "max_abs_loss_diff", "max_abs_grad_diff",
                "max_abs_param_diff", "losses_eager", "losses_runtime"):
        assert key in report
    assert report["runtime"] == "ort" and report["steps"] == 5 and within_targets(report)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("runtime", ["ort", "executorch"])
def test_parity_minilm_20_steps(runtime, optimizer):
    report = run_parity(runtime, "minilm", steps=20, optimizer=optimizer)
    assert within_targets(report), {k: report[k] for k in ("max_abs_loss_diff", "max_abs_grad_diff", "max_abs_param_diff")}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("runtime", ["ort", "executorch"])
def test_parity_with_a_head_learning_rate_of_its_own(runtime, optimizer):
    """The head in its own group: ONNX Runtime stores it scaled (export/ort_graph.py), ExecuTorch's host optimizer
    scales its step; both must still be torch's AdamW / SGD with per-group rates."""
    report = judge(collect(runtime, "mlp", steps=10, optimizer=optimizer, head_lr=0.1 if optimizer == "adamw" else 2.0))
    assert report["within"], report["failures"]

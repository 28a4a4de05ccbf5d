"""Parity of each runtime with PyTorch eager (DESIGN.md section 5): same init, data and optimizer."""

from __future__ import annotations

import json

import pytest

from quic_edge.cli import main
from quic_edge.runtimes.parity import collect, judge, run_parity, within_targets


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("name", ["mlp", "llama-tiny"])
@pytest.mark.parametrize("runtime", ["ort", "executorch"])
def test_parity_small_models(runtime, name, optimizer):
    report = run_parity(runtime, name, steps=20, optimizer=optimizer)
    assert report["max_abs_loss_diff"] <= 1e-5
    assert report["max_abs_grad_diff"] <= 1e-5
    assert report["max_abs_param_diff"] <= (1e-4 if optimizer == "adamw" else 1e-5)
    assert len(report["losses_eager"]) == len(report["losses_runtime"]) == 20
    # the parameters really moved, so the parameter check means something
    assert report["losses_eager"][0] != report["losses_eager"][-1]


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
def test_parity_minilm(runtime, optimizer):
    report = run_parity(runtime, "minilm", steps=20, optimizer=optimizer)
    assert within_targets(report), {k: report[k] for k in ("max_abs_loss_diff", "max_abs_grad_diff", "max_abs_param_diff")}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("runtime", ["ort", "executorch"])
def test_parity_with_a_head_learning_rate_of_its_own(runtime, optimizer):
    """The head in its own group: ONNX Runtime stores it scaled (export/ort_graph.py), ExecuTorch's host optimizer
    scales its step; both must still be torch's AdamW / SGD with per-group rates."""
    report = judge(collect(runtime, "mlp", steps=10, optimizer=optimizer, head_lr=0.1 if optimizer == "adamw" else 2.0))
    assert report["within"], report["failures"]

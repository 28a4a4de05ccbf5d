"""The personalization demo end to end (quick mode) through the real ONNX Runtime device loop."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import quic_edge
from quic_edge.demo import RESULTS
from quic_edge.personas import LABELS


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "quic_edge.cli", "demo", "--quick", "--out", str(out), "--json", str(out / "s.json")],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads((out / "s.json").read_text())


def test_demo_reports_the_issue_keys(demo):
    _, summary = demo
    for key in ("runtime", "accuracy_before", "accuracy_after", "head_only_accuracy_after", "trainable_params",
                "delta_bytes", "train_seconds", "steps"):
        assert key in summary
    assert summary["runtime"] == "ort"
    assert summary["steps"] > 0


def test_training_on_the_device_loop_lifts_accuracy_above_chance(demo):
    _, summary = demo
    chance = 1 / len(LABELS)
    for person in summary["people"]:
        assert person["accuracy_after"] > max(chance + 0.2, person["accuracy_before"] + 0.2), person["person"]
        assert person["head_only_accuracy_after"] > chance
        assert np.isfinite(person["losses"]).all()
        assert person["losses"][-1] < person["losses"][0]


def test_report_folder_and_deltas_on_disk(demo):
    out, summary = demo
    report = out / "report"
    for name in ("summary.md", "results.json", "loss.png", "accuracy.png"):
        assert (report / name).stat().st_size > 0
    assert (report / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for person in summary["people"]:
        assert (out / "deltas" / f"{person['person']}.safetensors").stat().st_size == person["delta_bytes"]
        assert person["delta_bytes"] <= 24 * 1024  # DESIGN.md section 6 target


def test_each_delta_serves_its_own_person(demo):
    """Swapping deltas on one base gives each person their own accuracy back, and only theirs."""
    _, summary = demo
    swap = summary["delta_swap_accuracy"]
    n_test = summary["settings"]["n_test"]
    for person in summary["people"]:
        name = person["person"]
        # PyTorch with the delta agrees with the runtime's own evaluation (up to argmax ties from fp32 rounding).
        assert abs(swap[name][name] - person["accuracy_after"]) <= 2 / n_test
        for other in swap:
            if other != name:
                assert swap[name][name] > swap[other][name] + 0.3


def test_a_delta_refuses_another_base(demo):
    out, summary = demo
    model, _ = quic_edge.models.load("minilm", num_labels=len(LABELS))
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight[0, 0] += 1.0  # a different base model
    model = quic_edge.apply_quic(model, quic_edge.QuICConfig())
    with pytest.raises(quic_edge.DeltaError, match="base"):
        quic_edge.load_delta(model, out / "deltas" / "alex.safetensors")


def test_the_report_says_whether_the_adapter_matters_with_the_run_s_numbers(demo):
    out, summary = demo
    gain = summary["gain_over_head_only"]
    for person in summary["people"]:  # the gain is this run's QuIC + head minus this run's head only
        expected = 100 * (person["accuracy_after"] - person["head_only_accuracy_after"])
        assert gain["points_per_person"][person["person"]] == pytest.approx(expected)
    assert gain["mean_points"] == pytest.approx(np.mean(list(gain["points_per_person"].values())))
    assert gain["shown"] == (gain["mean_points"] >= 3.0)
    text = (out / "report" / "summary.md").read_text()
    assert "## Does the adapter matter here?" in text
    for run in summary["suite_evidence"]:  # the suite's own figures, quoted as measured
        head = run["accuracy"]["head"]
        assert f"suite task {run['task']}" in text and f"head only {head['mean']:.3f} ± {head['std']:.3f}" in text
    curve = summary["curve_evidence"]
    if curve and not gain["shown"]:  # the learning curve in this checkout, quoted as measured
        found = json.loads((RESULTS / "curve.json").read_text())
        for n in curve["sizes"]:
            gain_n = 100 * (found["points"]["quic12"][n]["mean"] - found["points"]["head"][n]["mean"])
            assert f"{n}: head only {found['points']['head'][n]['mean']:.3f}" in text and f"({gain_n:+.1f} points)" in text
    assert f"{gain['mean_points']:+.1f} points" in text
    assert ("Yes:" in text) == gain["shown"] and ("Not at this scale" in text) == (not gain["shown"])


def test_the_gain_statement_quotes_the_suite_when_the_demo_shows_none():
    from quic_edge.demo import _gain_lines

    cells = {"head": {"mean": 0.5, "std": 0.01, "n": 3}, "quic12": {"mean": 0.56, "std": 0.02, "n": 3}}
    summary = {"settings": {"n_train": 120},
               "gain_over_head_only": {"points_per_person": {"a": 1.0, "b": -0.5}, "mean_points": 0.25,
                                       "threshold_points": 3.0, "shown": False},
               "suite_evidence": [{"task": "t", "source": "x.json", "n_train": 1000, "epochs": 3, "accuracy": cells}]}
    lines = _gain_lines(summary)
    assert lines[0].startswith("Not at this scale") and "+0.2 points" in lines[0] and "a +1.0, b -0.5" in lines[0]
    assert "suite task t (1000 examples, 3 epochs, 3 seeds" in lines[1] and "QuIC (1,2) 0.560 ± 0.020" in lines[1]
    assert len(lines) == 2  # no curve in this summary
    summary["curve_evidence"] = {"task": "t", "seeds": 3, "epochs": 3, "source": "c.json", "sizes": {
        "50": {"head": 0.5, "quic12": 0.49, "head_std": 0.01, "quic12_std": 0.02, "gain_points": -1.0},
        "800": {"head": 0.5, "quic12": 0.6, "head_std": 0.01, "quic12_std": 0.02, "gain_points": 10.0}}}
    lines = _gain_lines(summary)
    assert "50: head only 0.500 ± 0.010, QuIC (1,2) 0.490 ± 0.020 (-1.0 points); 800:" in lines[2] and "(+10.0" in lines[2]
    summary["gain_over_head_only"] |= {"mean_points": 4.0, "shown": True}
    shown = _gain_lines(summary)
    assert len(shown) == 1 and shown[0].startswith("Yes:") and "+4.0 points" in shown[0]  # no suite quote when shown

"""Benchmarks (issue 6): a quick compare and ablation write their reports, with sane numbers.

Expected counts are computed here from MiniLM's shapes (6 layers, hidden 384, FFN 1536), not read from the code.
"""

from __future__ import annotations

import json
from math import comb

import pytest

from quic_edge.cli import main

LAYERS, HIDDEN, FFN = 6, 384, 1536


def _lora(rank: int, shapes: list[tuple[int, int]]) -> int:
    return LAYERS * sum(rank * (d_in + d_out) for d_in, d_out in shapes)


def test_quick_compare_writes_reports_with_sane_numbers(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["bench", "compare", "--quick", "--out", str(out), "--work", str(tmp_path / "work"), "--no-progress"]) == 0
    for name in ("compare.json", "compare.md", "compare_accuracy.png", "compare_memory.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "compare.json").read_text())
    rows, counts = summary["adapters"], summary["counts"]
    assert set(rows) == {"quic12", "head"}

    # angles: 2 targets x 6 layers x 3 blocks x n(n-1)/2, n = 15 for orders (1,2) (15 + 105 <= 128)
    assert comb(15, 1) + comb(15, 2) <= HIDDEN // 3 < comb(16, 1) + comb(16, 2)
    assert rows["quic12"]["adapter_numbers"] == counts["quic12"]["angles"] == 2 * LAYERS * 3 * comb(15, 2)
    assert counts["quic123"]["angles"] == 2 * LAYERS * 3 * comb(8, 2)  # n = 8: 8 + 28 + 56 = 92 <= 128
    head = HIDDEN * 5 + 5  # bbc: 5 topics
    assert rows["head"]["trainable"] == head and rows["head"]["adapter_numbers"] == 0
    assert rows["quic12"]["trainable"] == counts["quic12"]["angles"] + head
    assert counts["lora_built"] == _lora(8, [(HIDDEN, HIDDEN)] * 2)
    assert counts["lora_all_linear_built"] == _lora(8, [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, FFN), (FFN, HIDDEN)])
    assert counts["quic12"]["ratio_lora"] == pytest.approx(counts["lora_built"] / counts["quic12"]["angles"])

    for row in rows.values():
        rss = row["peak_rss_mib"]
        assert 0 < rss["load"] <= row["training_peak_rss_mib"] < 4096
        assert row["median_step_ms"] > 0 and row["bundle_bytes"] > row["checkpoint_bytes"] / 2 > 0
        assert row["torch_imported"] is False
        assert 0.0 <= row["accuracy"]["bbc"]["mean"] <= 1.0
    assert rows["quic12"]["delta_bytes"] > rows["head"]["delta_bytes"]  # the angles travel in the delta too
    assert "QuIC (1,2)" in (out / "compare.md").read_text() and "QuIC (1,2)" in capsys.readouterr().out


def test_quick_ablation_reports_angles_per_config(tmp_path):
    from quic_edge.bench.ablation import AblationSettings, run_ablation

    out = tmp_path / "results"
    summary = run_ablation(AblationSettings.make(quick=True, out=str(out)), progress=False)
    for name in ("ablation.json", "ablation.md", "ablation.png"):
        assert (out / name).stat().st_size > 0, name
    rows = {r["title"]: r for r in summary["configs"]}
    assert rows["{1,2}"]["angles"] == 2 * LAYERS * 3 * comb(15, 2)
    assert rows["{2}"]["n"] == 16 and rows["{2}"]["angles"] == 2 * LAYERS * 3 * comb(16, 2)  # C(16,2) = 120 <= 128
    assert all(0.0 <= r["accuracy"]["bbc"]["mean"] <= 1.0 for r in rows.values())


def test_unknown_adapter_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "compare", "--adapters", "quic12,nope", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err

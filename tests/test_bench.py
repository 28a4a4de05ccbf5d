"""Benchmarks (issue 6): a quick compare and ablation write their reports, with sane numbers.

Expected counts are computed here from MiniLM's shapes (6 layers, hidden 384, FFN 1536), not read from the code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quic_edge.cli import main

ROOT = Path(__file__).resolve().parents[1]

LAYERS, HIDDEN, FFN = 6, 384, 1536


def _lora(rank: int, shapes: list[tuple[int, int]]) -> int:
    return LAYERS * sum(rank * (d_in + d_out) for d_in, d_out in shapes)


def test_quick_compare_writes_reports_with_sane_numbers(tmp_path, capsys):
    from quic_edge import models
    from quic_edge.bench.common import ADAPTERS
    from quic_edge.counts import count

    out = tmp_path / "results"
    assert main(["bench", "compare", "--quick", "--out", str(out), "--work", str(tmp_path / "work"), "--no-progress"]) == 0
    for name in ("compare.json", "compare.md", "compare_accuracy.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "compare.json").read_text())
    rows, counts = summary["adapters"], summary["counts"]
    assert set(rows) == {"quic12", "lora8", "head"}

    # angles: 2 targets x 6 layers x 3 blocks x n(n-1)/2, n = 15 for orders (1,2) (15 + 105 <= 128)
    assert comb(15, 1) + comb(15, 2) <= HIDDEN // 3 < comb(16, 1) + comb(16, 2)
    assert rows["quic12"]["adapter_numbers"] == counts["quic12"]["angles"] == 2 * LAYERS * 3 * comb(15, 2)
    base, _ = models.load("minilm", num_labels=2)  # (1,2,3), not in this run, by the same formula: n = 8 (92 <= 128)
    assert count(base, ADAPTERS["quic123"].config)["trainable_angles"] == 2 * LAYERS * 3 * comb(8, 2)
    # the angles table holds the run's QuIC adapters, no others
    assert {k for k, c in counts.items() if isinstance(c, dict)} == {"quic12"}
    head = HIDDEN * 2 + 2  # every suite task is binary
    assert rows["head"]["trainable"] == head and rows["head"]["adapter_numbers"] == 0
    assert rows["quic12"]["trainable"] == counts["quic12"]["angles"] + head
    assert counts["lora_built"] == _lora(8, [(HIDDEN, HIDDEN)] * 2)
    assert counts["lora_all_linear_built"] == _lora(8, [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, FFN), (FFN, HIDDEN)])
    assert counts["quic12"]["ratio_lora"] == pytest.approx(counts["lora_built"] / counts["quic12"]["angles"])

    task = summary["settings"]["tasks"][0]
    head_lr = summary["head_lr"][task]
    for name, row in rows.items():
        t = row["tasks"][task]
        assert 0.0 <= t["test"]["mean"] <= 1.0 and 0.0 <= t["val_selection"] <= 1.0
        assert t["head_lr"] == (None if name == "head" else head_lr)  # every adapter's head at head-only's rate
    assert rows["quic12"]["tasks"][task]["delta_bytes"] > rows["head"]["tasks"][task]["delta_bytes"]
    runs = summary["runs"]  # each run saw the validation split; the choice came from it, never from test
    assert all("val" in r and "test" in r for r in runs)
    report = (out / "compare.md").read_text()
    assert "QuIC (1,2)" in report and "QuIC (1,2)" in capsys.readouterr().out
    assert "| quic12 | 3,780 |" in report and "| quic123 |" not in report

    # an interrupted run picks up where it stopped: the same settings again train nothing new
    (tmp_path / "work" / "bundles").rename(tmp_path / "moved")  # a run that trains would have to export again
    assert main(["bench", "compare", "--quick", "--out", str(out), "--work", str(tmp_path / "work"), "--no-progress"]) == 0
    assert json.loads((out / "compare.json").read_text())["runs"] == runs
    # ... and its report still says what those runs cost to train: each run's own time, summed, reused ones included
    seconds = [r["train_seconds"] for r in runs]
    assert len({(r["adapter"], r["lr"], r["head_lr"], r["task"], r["seed"]) for r in runs}) == len(runs)  # each job once
    trained = json.loads((out / "compare.json").read_text())["trained"]
    assert trained == {"runs": len(runs), "seconds": pytest.approx(sum(seconds))} == summary["trained"]
    assert f"its {len(runs)} runs trained for {sum(seconds) / 60:.1f} min" in (out / "compare.md").read_text()
    assert not (tmp_path / "work" / "bundles").exists()

    # the learning curve at the rates this run chose: one point per size and adapter
    curve = tmp_path / "curve"
    assert main(["bench", "curve", "--quick", "--rates", str(out / "compare.json"), "--out", str(curve),
                 "--work", str(tmp_path / "curve-work"), "--no-progress"]) == 0
    drawn = json.loads((curve / "curve.json").read_text())
    assert drawn["rates"]["quic12"] == {"lr": rows["quic12"]["tasks"][task]["lr"], "head_lr": head_lr,
                                        "from": "chosen on validation by `bench compare` at 16 training examples "
                                                "(compare.json)"}
    assert set(drawn["points"]) == {"head", "quic12"} and all(set(p) == {"8", "16"} for p in drawn["points"].values())
    assert (curve / "curve.png").read_bytes()[:4] == b"\x89PNG" and "n = 16" in (curve / "curve.md").read_text()
    table = (curve / "curve.md").read_text()  # the rates it trained at, angles' and head's, where from, the schedule
    assert f"| QuIC (1,2) ({rows['quic12']['tasks'][task]['lr']:g}; {head_lr:g}) |" in table
    assert "constant learning-rate schedule" in table
    assert "the same at every size, chosen on validation by `bench compare` at 16 training examples (compare.json)" in table
    assert drawn["trained"] == {"runs": 4, "seconds": pytest.approx(sum(r["train_seconds"] for r in drawn["runs"]))}
    assert f"its 4 runs trained for {drawn['trained']['seconds'] / 60:.1f} min" in table  # 2 sizes x 2 adapters x 1 seed
    assert main(["bench", "curve", "--quick", "--rates", str(out / "compare.json"), "--adapters", "head,full",
                 "--out", str(curve), "--no-progress"]) == 2
    assert "no chosen rate for full" in capsys.readouterr().err

    # ... or with --search, each size's own rates, chosen by compare's search on that size's validation split; the
    # runs the fixed-rate curve already made at the same rates are reused, not trained again
    searched = tmp_path / "curve-search"
    assert main(["bench", "curve", "--quick", "--search", "--out", str(searched), "--work", str(tmp_path / "curve-work"),
                 "--no-progress"]) == 0
    found = json.loads((searched / "curve.json").read_text())
    assert found["rates"] is None and found["runs"] == drawn["runs"]
    for name in ("head", "quic12"):
        for size in ("8", "16"):
            point = found["points"][name][size]
            assert point["values"] == drawn["points"][name][size]["values"]
            assert point["lr"] == rows[name]["tasks"][task]["lr"] and point["head_lr"] == (None if name == "head" else head_lr)
    table = (searched / "curve.md").read_text()
    assert "each size's own, chosen on its validation split" in table and "Rates chosen at each size" in table
    # every run names the size it was made at, so the curve's own results file seeds a fresh folder: nothing trains
    assert sorted((r["n_train"], r["adapter"]) for r in found["runs"]) == [(8, "head"), (8, "quic12"), (16, "head"),
                                                                           (16, "quic12")]
    again = tmp_path / "curve-again"
    assert main(["bench", "curve", "--quick", "--search", "--out", str(again), "--work", str(tmp_path / "fresh-work"),
                 "--runs-from", str(searched / "curve.json"), "--no-progress"]) == 0
    assert json.loads((again / "curve.json").read_text())["points"] == found["points"]
    assert not (tmp_path / "fresh-work" / "n8" / "bundles").exists()
    assert f"| QuIC (1,2) | {rows['quic12']['tasks'][task]['lr']:g}; {head_lr:g} |" in table
    for bad, says in ((["--search", "--rates", str(out / "compare.json")], "give one"),
                      (["--refine"], "only --search runs"), (["--search", "--adapters", "quic12"], "needs head")):
        assert main(["bench", "curve", "--quick", *bad, "--out", str(searched), "--no-progress"]) == 2
        assert says in capsys.readouterr().err


def test_quick_ablation_reports_each_configuration_beside_head_and_the_paper(tmp_path):
    from quic_edge.bench.ablation import AblationSettings, run_ablation

    out, work = tmp_path / "results", tmp_path / "work"
    summary = run_ablation(AblationSettings.make(quick=True, out=str(out), work=str(work)), progress=False)
    for name in ("ablation.json", "ablation.md", "ablation.png"):
        assert (out / name).stat().st_size > 0, name
    rows = {r["adapter"]: r for r in summary["rows"]}
    assert list(rows) == ["quic12", "quic2", "quic12-free", "head"]  # the table's order, not the command line's
    assert rows["quic12"]["adapter_numbers"] == 2 * LAYERS * 3 * comb(15, 2)
    assert rows["quic2"]["n"] == 16 and rows["quic2"]["adapter_numbers"] == 2 * LAYERS * 3 * comb(16, 2)  # 120 <= 128
    assert rows["quic12-free"]["adapter_numbers"] == rows["quic12"]["adapter_numbers"]  # same count, no orthogonality
    assert rows["quic12-free"]["matrix"] == "unconstrained" and rows["quic12-free"]["group"] == "orthogonality"
    assert all(0.0 <= r["tasks"]["bbc-same-topic"]["test"]["mean"] <= 1.0 for r in rows.values())
    assert "88.85" in (out / "ablation.md").read_text() and "about 40" in rows["quic2"]["paper_stsb"]
    # the runs are compare's: a compare run on the same work folder trains nothing again
    before = (work / "rows.jsonl").read_text()
    assert main(["bench", "compare", "--quick", "--adapters", "head,quic2", "--out", str(tmp_path / "c"), "--work",
                 str(work), "--no-progress"]) == 0
    assert (work / "rows.jsonl").read_text() == before
    # the ablation's own summary seeds a fresh folder (--runs-from): the same table without training
    assert main(["bench", "ablation", "--quick", "--out", str(tmp_path / "again"), "--work", str(tmp_path / "w2"),
                 "--runs-from", str(out / "ablation.json"), "--no-progress"]) == 0
    assert not (tmp_path / "w2" / "bundles").exists()
    assert json.loads((tmp_path / "again" / "ablation.json").read_text())["rows"] == summary["rows"]


def test_ablation_row_measures_each_configuration_against_head_and_lora():
    from quic_edge.bench.ablation import ablation_row
    from quic_edge.bench.compare import gain_captured

    def adapter(title, numbers, values, lr):
        mean = sum(values) / len(values)
        return {"title": title, "adapter_numbers": numbers, "trainable": numbers + 770, "tasks": {"t": {
            "lr": lr, "head_lr": None if numbers == 0 else 1e-2, "val_selection": 0.6,
            "test": {"mean": mean, "std": 0.0, "values": values}}}}

    result = {"adapters": {"head": adapter("head only", 0, [0.50, 0.52, 0.54], 1e-2),
                           "lora8": adapter("LoRA", 73728, [0.70, 0.72, 0.74], 3e-4),
                           "quic2": adapter("QuIC (2)", 4320, [0.55, 0.57, 0.59], 3e-3)}}
    result["gain_captured"] = gain_captured(result)
    row = ablation_row("quic2", result)
    task = row["tasks"]["t"]
    assert task["points_over_head"] == pytest.approx(5.0)  # 0.57 - 0.52
    assert task["share_of_lora_gain"] == pytest.approx(0.25)  # 5 of LoRA's 20 points
    assert task["share_per_seed"] == pytest.approx([0.25, 0.25, 0.25])
    assert (row["group"], row["n"], row["orders"], task["lr"], task["head_lr"]) == ("orders", 16, [2], 3e-3, 1e-2)
    assert "about 40" in row["paper_stsb"] and ablation_row("head", result)["paper_stsb"] == ""


def test_a_quic_placement_is_also_measured_against_lora_on_its_own_layers():
    """quic12-vf's share against LoRA r8 on value / FF output (lora8-vf) beside the default LoRA's; query/value QuIC,
    whose layers are the default LoRA's, gets no second share; the ablation table prints both."""
    from quic_edge.bench.ablation import ablation_row
    from quic_edge.bench.compare import gain_captured
    from quic_edge.bench.report import ablation_markdown

    def adapter(title, numbers, values):
        return {"title": title, "adapter_numbers": numbers, "trainable": numbers + 770, "tasks": {"t": {
            "lr": 1e-2, "head_lr": 1e-2, "val_selection": 0.6,
            "test": {"mean": sum(values) / len(values), "std": 0.0, "values": values}}}}

    result = {"adapters": {"head": adapter("head only", 0, [0.50, 0.52]), "lora8": adapter("LoRA", 73728, [0.70, 0.72]),
                           "quic12": adapter("QuIC (1,2)", 3780, [0.60, 0.62]),
                           "quic12-vf": adapter("QuIC vf", 3780, [0.65, 0.67]),
                           "lora8-vf": adapter("LoRA vf", 129024, [0.80, 0.82])}}
    captured = gain_captured(result)
    assert "same_layers" not in captured["quic12"]["t"]
    same = captured["quic12-vf"]["t"]["same_layers"]
    assert same["lora"] == "lora8-vf" and same["ratio"] == pytest.approx(0.5)  # 15 of LoRA vf's 30 points
    assert captured["quic12-vf"]["t"]["ratio"] == pytest.approx(0.75)  # 15 of the default LoRA's 20
    result["gain_captured"] = captured
    summary = {"settings": {"tasks": ["t"], "batch_size": 8, "seq_len": 64, "epochs": 3, "n_train": 10, "n_val": 4,
                            "n_test": 4, "seeds": [0, 1], "schedule": "constant", "refine": False, "select_seeds": 1,
                            "head_search": False},
               "head_lr": {"t": 1e-2}, "total_seconds": 0.0,
               "rows": [ablation_row(n, result) for n in ("quic12", "quic12-vf", "lora8-vf", "head", "lora8")]}
    vf = next(line for line in ablation_markdown(summary).splitlines() if "| QuIC vf |" in line)
    assert "0.75" in vf and "of LoRA vf's gain 0.50" in vf


def test_a_same_layer_share_names_its_lora_in_good_english():
    from quic_edge.bench.report import same_layers_text

    assert same_layers_text({"title": "LoRA vf", "ratio": 0.5}).startswith("; of LoRA vf's gain 0.50")
    assert same_layers_text({"title": "LoRA on both projections", "ratio": 0.8}).startswith(
        "; of LoRA on both projections' gain 0.80")
    assert same_layers_text(None) == ""


def test_ablation_refuses_an_adapter_outside_it(tmp_path, capsys):
    assert main(["bench", "ablation", "--quick", "--adapters", "head,quic12-top2", "--out", str(tmp_path),
                 "--no-progress"]) == 2
    assert "quic12-top2" in capsys.readouterr().err


def test_unknown_adapter_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "compare", "--adapters", "quic12,nope", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize("k", [1, 3])
def test_placement_adapts_only_the_top_k_layers(k):
    from quic_edge.bench.common import ADAPTERS, adapter_numbers

    quic, lora = ADAPTERS[f"quic12-top{k}"].build(2, seed=0), ADAPTERS[f"lora8-top{k}"].build(2, seed=0)
    top = {str(i) for i in range(LAYERS - k, LAYERS)}
    adapted = {n.split("layer.")[1].split(".")[0] for n, p in quic.named_parameters() if n.endswith("angles")}
    lora_layers = {n.split("layer.")[1].split(".")[0] for n, p in lora.named_parameters() if "lora_" in n}
    assert adapted == top and lora_layers == top
    assert adapter_numbers(quic)[1] == 2 * k * 3 * comb(15, 2)  # query and value, 3 blocks of n = 15
    assert adapter_numbers(lora)[1] == _lora(8, [(HIDDEN, HIDDEN)] * 2) * k // LAYERS


def test_the_targets_ablation_adapts_query_and_key_only_with_as_many_numbers():
    from quic_edge.bench.common import ADAPTERS, adapter_numbers

    quic, lora = ADAPTERS["quic12-qk"].build(2, seed=0), ADAPTERS["lora8-qk"].build(2, seed=0)
    adapted = {n.split(".")[-2] for n, p in quic.named_parameters() if n.endswith("angles")}
    lora_modules = {n.split(".")[-4] for n, p in lora.named_parameters() if "lora_" in n}
    assert adapted == {"query", "key"} and lora_modules == {"query", "key"}
    assert adapter_numbers(quic)[1] == adapter_numbers(ADAPTERS["quic12"].build(2, seed=0))[1]
    assert adapter_numbers(lora)[1] == adapter_numbers(ADAPTERS["lora8"].build(2, seed=0))[1]


@pytest.mark.parametrize(("name", "second"), [("quic12-vo", "attention.output.dense"), ("quic12-vf", "output.dense")])
def test_the_targets_ablation_moves_the_query_s_angles_to_one_output_projection(name, second):
    """value plus exactly one output projection per layer (the feed-forward one is not the attention one), with the
    angles of QuIC (1,2) on query/value."""
    from quic_edge.bench.common import ADAPTERS, adapter_numbers
    from quic_edge.layer import QuICLinear

    model = ADAPTERS[name].build(2, seed=0)
    adapted = [n.split("layer.")[1] for n, m in model.named_modules() if isinstance(m, QuICLinear)]
    expected = {f"{i}.{part}" for i in range(LAYERS) for part in ("attention.self.value", second)}
    assert set(adapted) == expected and len(adapted) == 2 * LAYERS
    assert adapter_numbers(model)[1] == adapter_numbers(ADAPTERS["quic12"].build(2, seed=0))[1]


@pytest.mark.parametrize(("name", "parts"), [
    ("quic12-of", ("attention.output.dense", "output.dense")),
    ("quic12-vfo", ("attention.self.value", "attention.output.dense", "output.dense")),
])
def test_the_targets_ablation_spreads_the_same_angles_over_the_residual_writers(name, parts):
    """Both output projections (what writes into the residual stream), alone or with the value: each layer's exactly,
    with QuIC (1,2) on query/value's 3,780 angles (three targets take two blocks of n = 15 each)."""
    from quic_edge.bench.common import ADAPTERS, adapter_numbers
    from quic_edge.layer import QuICLinear

    model = ADAPTERS[name].build(2, seed=0)
    adapted = [n.split("layer.")[1] for n, m in model.named_modules() if isinstance(m, QuICLinear)]
    assert sorted(adapted) == sorted(f"{i}.{part}" for i in range(LAYERS) for part in parts)
    assert adapter_numbers(model)[1] == adapter_numbers(ADAPTERS["quic12"].build(2, seed=0))[1] == 3780


@pytest.mark.parametrize(("name", "parts", "blocks", "copies"), [
    ("quic12-ffn-in", ("intermediate.dense",), 6, 6),
    ("quic12-all-shared", ("attention.self.query", "attention.self.key", "attention.self.value",
                           "attention.output.dense", "intermediate.dense", "output.dense"), 3, 1),
])
def test_the_targets_ablation_puts_the_same_angles_before_the_activation_or_shares_them_over_every_layer(
        name, parts, blocks, copies):
    """The feed-forward input projection (1,536 features, before its GELU) in six blocks, or every linear layer with
    one rotation shared by its three blocks: each layer's exactly, QuIC (1,2) on query/value's 3,780 angles, and a
    rotation that is orthogonal, acts block by block, and (shared) repeats one block's matrix in every block."""
    import torch

    from quic_edge.bench.common import ADAPTERS, adapter_numbers
    from quic_edge.layer import QuICLinear

    model = ADAPTERS[name].build(2, seed=0)
    layers = {n.split("layer.")[1]: m for n, m in model.named_modules() if isinstance(m, QuICLinear)}
    assert sorted(layers) == sorted(f"{i}.{part}" for i in range(LAYERS) for part in parts)
    assert adapter_numbers(model)[1] == len(layers) * copies * comb(15, 2) == 3780
    torch.manual_seed(0)
    for layer in (layers["0.intermediate.dense"], layers["5.intermediate.dense"]):
        assert layer.out_features == FFN and layer.n == 15 and tuple(layer.angles.shape[1:]) == (copies, comb(15, 2))
        with torch.no_grad():
            layer.angles.uniform_(-3.0, 3.0)
            R = layer.rotation()
        assert torch.allclose(R @ R.T, torch.eye(FFN), atol=1e-5)
        size = FFN // blocks
        diagonal = [R[i * size:(i + 1) * size, i * size:(i + 1) * size] for i in range(blocks)]
        assert torch.equal(torch.block_diag(*diagonal), R)  # nothing crosses a block
        for block in diagonal:  # 15 + 105 features rotated, the rest of the block untouched
            assert torch.equal(block[120:, 120:], torch.eye(size - 120))
            assert not block[:120, 120:].any() and not block[120:, :120].any()
            assert not torch.allclose(block[:120, :120], torch.eye(120))
        assert all(torch.equal(block, diagonal[0]) for block in diagonal) == (copies == 1)


@pytest.mark.parametrize(("placement", "shapes"), [
    ("vf", [(HIDDEN, HIDDEN), (FFN, HIDDEN)]),
    ("of", [(HIDDEN, HIDDEN), (FFN, HIDDEN)]),
    ("vfo", [(HIDDEN, HIDDEN), (HIDDEN, HIDDEN), (FFN, HIDDEN)]),
])
def test_lora_on_a_quic_placement_reads_quic_s_targets_the_same_way(placement, shapes):
    """The control for quic12-vf and the other placements: PEFT's LoRA r8 on exactly the layers QuIC adapts there (the
    "re:" entry resolved by quic_edge.targets, not handed to PEFT as a name), with rank 8's count for those shapes, and
    the comparison pairs the two for the same-layer share."""
    from quic_edge.bench.common import ADAPTERS, adapter_numbers
    from quic_edge.bench.compare import same_layers_lora
    from quic_edge.layer import QuICLinear

    lora = ADAPTERS[f"lora8-{placement}"].build(2, seed=0)
    quic = ADAPTERS[f"quic12-{placement}"].build(2, seed=0)
    lora_layers = {n.split("layer.")[1].rsplit(".lora_", 1)[0] for n, _ in lora.named_parameters() if "lora_A" in n}
    quic_layers = {n.split("layer.")[1] for n, m in quic.named_modules() if isinstance(m, QuICLinear)}
    assert lora_layers == quic_layers and len(lora_layers) == len(shapes) * LAYERS
    assert adapter_numbers(lora)[1] == _lora(8, shapes)
    assert same_layers_lora(f"quic12-{placement}", dict.fromkeys(ADAPTERS)) == f"lora8-{placement}"


def test_lora_targets_that_match_nothing_say_so():
    from quic_edge import baselines, models

    model, _ = models.load("minilm", num_labels=2, seed=0)
    with pytest.raises(ValueError, match="no linear layer of the model matches"):
        baselines.lora(model, 8, ("re:.*nowhere",))


def test_the_blocks_ablation_keeps_the_angle_budget_and_the_widest_circuit_under_it():
    from quic_edge.bench.common import ADAPTERS, adapter_numbers
    from quic_edge.config import compound_width
    from quic_edge.layer import QuICLinear

    lora = adapter_numbers(ADAPTERS["lora8"].build(2, seed=0))[1]
    for blocks in (1, 2, 4, 6):
        model = ADAPTERS[f"quic12-b{blocks}"].build(2, seed=0)
        layers = [m for m in model.modules() if isinstance(m, QuICLinear)]
        angles = adapter_numbers(model)[1]
        n = layers[0].n
        assert len(layers) == 12 and {(m.config.blocks, m.n) for m in layers} == {(blocks, n)}
        assert angles == 12 * blocks * n * (n - 1) // 2 and lora / angles >= 18
        wider = n + 1  # one more dimension would break the budget or not fit the block
        assert compound_width(wider, (1, 2)) > 384 // blocks or 12 * blocks * wider * n // 2 > lora / 18


def test_the_blocks_cost_counts_the_products_the_layers_run_and_takes_accuracy_from_the_ablation():
    from quic_edge.bench.blocks import CONFIGS, add_accuracy, markdown, rotation_macs
    from quic_edge.bench.common import ADAPTERS
    from quic_edge.layer import QuICLinear

    for name in CONFIGS:
        layer = next(m for m in ADAPTERS[name].build(2, seed=0).modules() if isinstance(m, QuICLinear))
        per_block = sum(C.shape[-1] ** 2 for C in layer.compounds())  # (1, ck, ck) each, the copies share nothing
        assert rotation_macs(name) == layer.config.blocks * per_block
    lora = ADAPTERS["lora8"].build(2, seed=0)
    a, b = (p for n, p in lora.named_parameters() if "layer.0.attention.self.query.lora_" in n)
    assert rotation_macs("lora8") == a.numel() + b.numel()  # x A then (x A) B: one multiply-add per number
    cell = {"median": 1.0, "min": 0.9, "max": 1.1, "n": 3}
    results = {"settings": {"batch": 8, "seq_len": 64, "rounds": 3},
               "rows": [{"runtime": "ort", "adapter": name, "title": name, "blocks": 1, "n": 2, "trainable": 5,
                         "macs_per_token": 7, "peak_rss_mib": cell, "median_step_ms": cell,
                         "over_lora": {"peak": cell, "step": cell}}
                        for name in ("lora8", "quic12-b6")]}
    test = {"mean": 0.61, "std": 0.02, "n": 3}
    def ablation(task: str, mean: float, share: float) -> dict:
        return {"rows": [{"adapter": "quic12-b6", "tasks": {task: {"test": test | {"mean": mean}, "lr": 1e-2,
                                                                   "share_of_lora_gain": share}}}]}

    # one ablation per task, as the suite's are run: their tasks add up; a later file wins on the same task
    add_accuracy(results, [ablation("t", 0.60, 0.4), ablation("u", 0.58, 0.7), ablation("t", 0.61, 0.5)])
    assert "accuracy" not in results["rows"][0] and results["rows"][1]["accuracy"]["t"]["share"] == 0.5
    assert results["rows"][1]["accuracy"]["u"]["share"] == 0.7
    assert "| ONNX Runtime | quic12-b6 |" in markdown(results)
    assert "t 0.610 ± 0.020 (0.50); u 0.580 ± 0.020 (0.70)" in markdown(results)


def test_cost_ratios_are_taken_round_by_round_not_of_the_medians():
    from quic_edge.bench.device_memory import cost_cells, ratios_within_rounds

    def run(peaks: dict[str, float], step: float) -> dict:
        return {"peak_rss_mib": peaks, "median_step_ms": step, "trainable_numbers": 7}

    mine = [run({"load": 90, "steady": 100}, 30), run({"load": 120, "steady": 110}, 10)]
    theirs = [run({"load": 200, "steady": 150}, 20), run({"load": 80, "steady": 100}, 40)]
    ratios = ratios_within_rounds(mine, theirs)
    # peaks (max over phases) 100 / 200 and 120 / 100; the medians' ratio would be 110 / 150
    assert ratios["peak"] == {"median": 0.85, "min": 0.5, "max": 1.2, "n": 2}
    assert ratios["step"] == {"median": 0.875, "min": 0.25, "max": 1.5, "n": 2}
    assert cost_cells(mine) == {"trainable": 7, "peak_rss_mib": {"median": 110, "min": 100, "max": 120, "n": 2},
                                "median_step_ms": {"median": 20, "min": 10, "max": 30, "n": 2}}


def test_a_cost_ratio_is_taken_against_lora_on_the_adapters_own_layers_where_the_run_has_it():
    from quic_edge.bench.device_memory import markdown, reference_lora

    run = ("head", "lora8", "quic12", "lora8-vf", "quic12-vf")
    assert reference_lora("quic12-vf", run) == "lora8-vf"
    assert reference_lora("quic12", run) == "lora8"  # query/value: the default LoRA is on its layers
    assert reference_lora("quic12-vf", ("lora8", "quic12-vf")) == "lora8"  # no LoRA on its layers in the run
    assert reference_lora("lora8-vf", run) == "lora8" and reference_lora("head", run) == "lora8"
    cell = {"trainable": 7, "peak_rss_mib": {"median": 1, "min": 1, "max": 1, "n": 1},
            "median_step_ms": {"median": 1, "min": 1, "max": 1, "n": 1}, "planned_mib": None}
    ratio = {"peak": {"median": 0.9, "min": 0.9, "max": 0.9, "n": 1}, "step": {"median": 1.1, "min": 1, "max": 1.2, "n": 1}}
    table = markdown({"settings": {"rounds": 1}, "summary": {"ort/quic12-vf/recompute/arena-on": cell},
                      "ratios_to_lora8": {"ort/quic12-vf/recompute/arena-on":
                                          {"against": "lora8-vf", **ratio}},
                      "attribution": {}})
    assert "| 0.900 (0.900-0.900) vs lora8-vf | 1 (1-1) | 1.10 (1.00-1.20) vs lora8-vf |" in table


def test_the_floor_and_every_mib_above_it_add_up_to_the_measured_peak():
    """Figures made up to be told apart: floor = 60 runtime + 20 base + 10 one layer (head only's live peak) + 1.5
    state (0.25 trainable, its gradient, 1.0 of moments) = 91.5; above it 110 - 91.5 = 18.5 = the session at load
    (90 - 60 - 20 - 1.5 = 8.5) + the live tensors beyond one layer's (15 - 10 = 5) + the rest (110 - 90 - 15 = 5)."""
    from quic_edge.bench.device_memory import floor_rows, markdown

    def cell(peak: float, load: float, runtime: float) -> dict:
        one = {"median": 0, "min": 0, "max": 0, "n": 1}
        return {"trainable": 7, "peak_rss_mib": one | {"median": peak}, "load_rss_mib": one | {"median": load},
                "runtime_rss_mib": one | {"median": runtime}, "median_step_ms": one, "planned_mib": None}

    def attribution(live: float, trainable: float) -> dict:
        return {"stashed": {}, "stashed_mib": 0.0, "peak_live_mib": live, "frozen_base_mib": 20.0,
                "resident": {"trainable_mib": trainable, "optimizer_moments_mib": 4 * trainable}}

    results = {"settings": {"rounds": 1}, "ratios_to_lora8": {},
               "summary": {"ort/head/recompute/arena-on": cell(85, 81, 60), "ort/quic12/recompute/arena-on": cell(110, 90, 60),
                           "ort/quic12/recompute/arena-off": cell(999, 999, 60)},
               "attribution": {"head/recompute": attribution(10, 0.0), "quic12/recompute": attribution(15, 0.25)}}
    rows = floor_rows(results)
    assert set(rows) == {"head/recompute", "quic12/recompute"}  # the loop's setting only: arena on
    quic = rows["quic12/recompute"]
    assert quic["state"] == 1.5 and quic["floor"] == 91.5 and quic["above"] == 18.5
    assert (quic["session"], quic["live_beyond"], quic["rest"]) == (8.5, 5.0, 5.0)
    assert rows["head/recompute"]["floor"] == 90 and rows["head/recompute"]["live_beyond"] == 0
    assert "| quic12/recompute | 60.0 | 20.0 | 10.0 | 1.5 | 91.5 | 110.0 | 18.5 | 8.5 | 5.0 | 5.0 |" in markdown(results)
    del results["attribution"]["head/recompute"]["frozen_base_mib"]  # a run from before the floor was measured
    assert floor_rows(results) == {} and "The floor" not in markdown(results)


def test_a_cost_benchmark_names_the_results_file_it_cannot_find_or_read(tmp_path, monkeypatch, capsys):
    from quic_edge.bench.blocks import main

    monkeypatch.setattr("sys.argv", ["blocks.py", "--from-results", "--out", str(tmp_path), "--accuracy", "nope.json"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert f"no such file: nope.json, {tmp_path / 'blocks.json'}" in capsys.readouterr().err
    (tmp_path / "blocks.json").write_text("{ half a results file")
    monkeypatch.setattr("sys.argv", ["blocks.py", "--from-results", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and f"{tmp_path / 'blocks.json'}: not a JSON results file" in capsys.readouterr().err


def test_a_cost_benchmark_names_a_results_file_of_the_wrong_kind_and_keeps_its_measurements(tmp_path, monkeypatch,
                                                                                            capsys):
    from quic_edge.bench import blocks

    committed = json.loads((ROOT / "benchmarks" / "results" / "blocks.json").read_text())
    measured = {"settings": committed["settings"],
                "rows": [{k: v for k, v in row.items() if k != "accuracy"} for row in committed["rows"][:2]]}
    wrong = tmp_path / "compare.json"  # valid JSON, but a `bench compare` summary, not an ablation
    wrong.write_text(json.dumps({"adapters": {"quic12": {"tasks": {}}}}))
    (tmp_path / "blocks.json").write_text(json.dumps({"rows": "not rows"}))
    monkeypatch.setattr("sys.argv", ["blocks.py", "--from-results", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        blocks.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{tmp_path / 'blocks.json'}: not a blocks results file" in err
    monkeypatch.setattr(blocks, "run", lambda rounds, root: json.loads(json.dumps(measured)))
    monkeypatch.setattr("sys.argv", ["blocks.py", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
                                     "--accuracy", str(wrong)])
    with pytest.raises(SystemExit) as exit_:
        blocks.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{wrong}: not a results file --accuracy takes" in err and "KeyError" in err
    assert json.loads((tmp_path / "out" / "blocks.json").read_text()) == measured  # the measurements are kept


def test_placement_table_takes_accuracy_from_compare_runs():
    from quic_edge.bench.placement import add_accuracy, markdown, name_at

    cell = {"median": 1.0, "min": 1.0, "max": 1.0, "n": 1}
    rows = [{"k": k, "quic12": {"adapter": name_at("quic12", k), "trainable": 1, "peak_rss_mib": cell,
                                "median_step_ms": cell},
             "lora8": {"adapter": name_at("lora8", k), "trainable": 1, "peak_rss_mib": cell, "median_step_ms": cell},
             "quic_over_lora": {"peak": cell, "step": cell}} for k in (0, 1, 6)]
    results = {"settings": {"batch": 8, "seq_len": 64, "rounds": 1}, "rows": rows}
    test = {"mean": 0.61, "std": 0.01, "n": 3}
    add_accuracy(results, [{"adapters": {"quic12": {"tasks": {"t": {"test": test, "lr": 3e-3}}}}},
                           {"adapters": {"quic12-top1": {"tasks": {"t": {"test": test | {"mean": 0.59}, "lr": 1e-2}}}}},
                           {"adapters": {"quic12": {"tasks": {"u": {"test": test | {"mean": 0.66}, "lr": 1e-3}}}}}])
    assert rows[2]["quic12"]["accuracy"]["u"]["mean"] == 0.66  # a second task's run adds to the first's
    assert [name_at("quic12", k) for k in (0, 1, 6)] == ["head", "quic12-top1", "quic12"]
    assert rows[2]["quic12"]["accuracy"]["t"]["mean"] == 0.61 and rows[1]["quic12"]["accuracy"]["t"]["lr"] == 1e-2
    assert "accuracy" not in rows[0]["quic12"] and "accuracy" not in rows[1]["lora8"]
    assert "t 0.590 ± 0.010 (n=3)" in markdown(results)


def test_shape_sweep_exports_and_measures_each_shape(tmp_path):
    from quic_edge.bench.shapes import markdown, plot, run

    results = run(1, tmp_path, shapes=((1, 8), (4, 32)), adapters=("head",), progress=False)
    small, large = results["rows"]
    assert (small["tokens"], large["tokens"]) == (8, 128)
    for b, s in ((1, 8), (4, 32)):  # each bundle was exported at its own shape
        manifest = json.loads((tmp_path / f"ort-head-{b}x{s}" / "manifest.json").read_text())
        assert {i["name"]: i["shape"] for i in manifest["inputs"]}["input_ids"] == [b, s]
    assert 50 < small["head"]["peak_rss_mib"]["median"] < 1000 and small["head"]["median_step_ms"]["n"] == 1
    assert "quic_over_lora" not in small  # no pair to compare
    assert "| 4 x 32 (128) |" in markdown(results)
    plot(results, tmp_path / "shapes.png")
    assert (tmp_path / "shapes.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("text, message", [("8x", "BATCHxSEQUENCE"), ("0x64", "batch must be"), ("8x1024", "sequence"),
                                           ("", "at least one")])
def test_shape_sweep_refuses_bad_shapes(text, message):
    from quic_edge.bench.shapes import parse_shapes

    assert parse_shapes("1x32, 16X128") == ((1, 32), (16, 128))
    with pytest.raises(ValueError, match=message):
        parse_shapes(text)


def test_curve_rates_come_from_the_first_file_that_holds_them(tmp_path):
    from quic_edge.bench.curve import chosen_rates

    def compare(name, lr):
        path = tmp_path / name
        path.write_text(json.dumps({"adapters": {a: {"tasks": {"t": {"lr": lr, "head_lr": 0.01}}} for a in ("head", "full")
                                                 if a in name}}))
        return str(path)

    first, second = compare("head_full.json", 3e-5), compare("full.json", 1e-4)
    found = chosen_rates(f"{second},{first}", ("head", "full"), "t")
    assert {n: (r["lr"], r["head_lr"]) for n, r in found.items()} == {"head": (3e-5, 0.01), "full": (1e-4, 0.01)}
    # these files carry neither a compare run's settings nor its runs: the report says they were written by hand
    assert found["full"]["from"] == "written by hand in full.json, not chosen on validation"
    made = json.loads(Path(first).read_text()) | {"settings": {"n_train": 1000}, "runs": []}
    Path(first).write_text(json.dumps(made))
    assert chosen_rates(first, ("head",), "t")["head"]["from"] == ("chosen on validation by `bench compare` at 1000 "
                                                                   "training examples (head_full.json)")
    Path(second).write_text(json.dumps(json.loads(Path(second).read_text()) | {"note": "a check"}))
    assert chosen_rates(second, ("full",), "t")["full"]["from"].endswith("not chosen on validation (a check)")
    with pytest.raises(ValueError, match="no chosen rate for quic12 on t"):
        chosen_rates(first, ("quic12",), "t")
    with pytest.raises(ValueError, match="not a readable"):
        chosen_rates(str(tmp_path / "missing.json"), ("head",), "t")


def test_a_search_whose_best_rate_is_its_top_tries_the_next_rate_up():
    from quic_edge.bench.compare import best_row, rate_above_best

    def rows(*pairs):
        return [{"lr": lr, "val": val} for lr, val in pairs]

    assert rate_above_best(rows((1e-3, 0.6), (3e-3, 0.7), (1e-2, 0.8))) == 3e-2
    assert rate_above_best(rows((1e-3, 0.6), (3e-3, 0.8))) == 1e-2
    assert rate_above_best(rows((1e-3, 0.6), (3e-3, 0.8), (1e-2, 0.7))) is None  # accuracy turned down: stop
    assert rate_above_best(rows((1e-2, 0.7), (3e-2, 0.7))) is None  # a tie goes to the smaller rate
    assert best_row(rows((1e-2, 0.7), (3e-2, 0.7)))["lr"] == 1e-2
    assert rate_above_best(rows((3e-5, 0.5))) == 1e-4


def test_a_refined_search_tries_the_rates_halfway_between_the_best_and_its_neighbours():
    from quic_edge.bench.compare import rates_beside_best

    def rows(*pairs):
        return [{"lr": lr, "val": val} for lr, val in pairs]

    assert rates_beside_best(rows((1e-5, 0.5), (1e-3, 0.55), (3e-3, 0.63), (1e-2, 0.71), (3e-2, 0.53))) == [5e-3, 2e-2]
    assert rates_beside_best(rows((1e-5, 0.5), (3e-4, 0.55), (1e-3, 0.75), (3e-3, 0.77), (1e-2, 0.5))) == [2e-3, 5e-3]
    assert rates_beside_best(rows((1e-5, 0.6), (3e-4, 0.55))) == [5e-5]  # the best at the bottom: only above it
    assert rates_beside_best(rows((3e-3, 0.6), (5e-3, 0.7), (1e-2, 0.6), (2e-2, 0.5))) == [4e-3, 7e-3]
    assert rates_beside_best(rows((1e-3, 0.6), (2e-3, 0.7), (3e-3, 0.6))) == []  # halfway rounds onto tried rates


def test_a_refined_benchmark_search_runs_the_midpoints_and_chooses_among_all_it_tried(tmp_path):
    """Head only, a real (tiny) search: the ladder, then the rates beside its best; the choice is the best of all
    on validation, and the table says how the rates were searched."""
    out, work = tmp_path / "out", tmp_path / "work"
    assert main(["bench", "compare", "--adapters", "head", "--tasks", "bbc-same-topic", "--seeds", "0", "--n-train", "16",
                 "--n-val", "16", "--n-test", "16", "--epochs", "1", "--refine", "--out", str(out), "--work", str(work),
                 "--no-progress"]) == 0
    from quic_edge.bench.compare import best_row, rates_beside_best

    summary = json.loads((out / "compare.json").read_text())
    search = summary["adapters"]["head"]["tasks"]["bbc-same-topic"]
    tried = [r["lr"] for r in summary["runs"]]
    ladder = [r for r in summary["runs"] if r["lr"] in (3e-3, 1e-2, 3e-2, 1e-1, 3e-1)]
    assert set(rates_beside_best(ladder)) <= set(tried) and len(tried) > len(ladder)
    assert search["lr"] == best_row(summary["runs"])["lr"]
    assert summary["settings"]["refine"] and "(--refine)" in (out / "compare.md").read_text()


def test_a_search_chooses_on_each_rate_s_mean_validation_over_its_seeds():
    from quic_edge.bench.compare import best_row, rate_means

    runs = [{"lr": 1e-2, "val": 0.80, "test": 0.7}, {"lr": 3e-3, "val": 0.70, "test": 0.6},
            {"lr": 1e-2, "val": 0.50, "test": 0.5}, {"lr": 3e-3, "val": 0.72, "test": 0.8}]
    means = rate_means(runs)
    assert [m["lr"] for m in means] == [3e-3, 1e-2]
    assert means[0]["val"] == pytest.approx(0.71) and means[1]["val"] == pytest.approx(0.65)
    assert means[0]["test"] == pytest.approx(0.7) and means[1]["vals"] == [0.80, 0.50]
    assert best_row(means)["lr"] == 3e-3  # the first seed alone (0.80 at 1e-2) would choose 1e-2
    assert rate_means(runs[:2]) == [{"lr": 3e-3, "val": 0.70, "test": 0.6, "vals": [0.70]},
                                    {"lr": 1e-2, "val": 0.80, "test": 0.7, "vals": [0.80]}]


def test_a_benchmark_search_on_two_seeds_runs_every_rate_on_both_and_chooses_on_their_mean(tmp_path):
    """Head only, a real (tiny) search with --select-seeds 2 over three seeds: every ladder rate on seeds 0 and 1,
    the choice the best mean, seed 2 at the chosen rate only; the table says on which seeds the rates were chosen."""
    out, work = tmp_path / "out", tmp_path / "work"
    assert main(["bench", "compare", "--adapters", "head", "--tasks", "bbc-same-topic", "--seeds", "0,1,2", "--n-train",
                 "16", "--n-val", "16", "--n-test", "16", "--epochs", "1", "--select-seeds", "2", "--out", str(out),
                 "--work", str(work), "--no-progress"]) == 0
    from quic_edge.bench.compare import best_row, rate_means

    summary = json.loads((out / "compare.json").read_text())
    runs, chosen = summary["runs"], summary["adapters"]["head"]["tasks"]["bbc-same-topic"]
    ladder = sorted({r["lr"] for r in runs if r["seed"] == 0})
    assert len(ladder) >= 3 and sorted(r["lr"] for r in runs if r["seed"] == 1) == ladder
    assert chosen["lr"] == best_row(rate_means([r for r in runs if r["seed"] in (0, 1)]))["lr"]
    assert [r["lr"] for r in runs if r["seed"] == 2] == [chosen["lr"]] and chosen["selection_seeds"] == [0, 1]
    assert chosen["val_selection"] == pytest.approx(
        sum(r["val"] for r in runs if r["lr"] == chosen["lr"] and r["seed"] < 2) / 2)
    assert "mean over seeds 0, 1 (--select-seeds 2)" in (out / "compare.md").read_text()


def test_a_head_search_keeps_the_best_head_rate_and_a_tie_keeps_head_only_s():
    from quic_edge.bench.compare import best_head, rate_means, tried_beside_best

    def rows(*pairs):
        return [{"lr": lr, "val": val} for lr, val in pairs]

    head_only = rows((3e-3, 0.536), (5e-3, 0.536), (1e-2, 0.543), (2e-2, 0.545), (3e-2, 0.541))  # word order, K = 5
    assert tried_beside_best(head_only) == [1e-2, 3e-2]
    assert tried_beside_best(rows((1e-2, 0.6), (3e-2, 0.5))) == [3e-2]  # the best at the bottom: only above it
    runs = [{"head_lr": 2e-2, "val": 0.70, "test": 0.6}, {"head_lr": 1e-2, "val": 0.72, "test": 0.7},
            {"head_lr": 2e-2, "val": 0.64, "test": 0.6}, {"head_lr": 1e-2, "val": 0.66, "test": 0.7},
            {"head_lr": 3e-2, "val": 0.67, "test": 0.5}, {"head_lr": 3e-2, "val": 0.67, "test": 0.5}]
    means = rate_means(runs, by="head_lr")
    assert [m["head_lr"] for m in means] == [1e-2, 2e-2, 3e-2] and means[0]["vals"] == [0.72, 0.66]
    assert best_head(means, 2e-2)["head_lr"] == 1e-2  # 0.69 against 0.67 at head-only's 2e-2
    tie = [{"head_lr": 1e-2, "val": 0.67}, {"head_lr": 2e-2, "val": 0.67}, {"head_lr": 3e-2, "val": 0.67}]
    assert best_head(tie, 2e-2)["head_lr"] == 2e-2 and best_head(tie, 5e-2)["head_lr"] == 1e-2


def test_a_benchmark_head_search_trains_the_other_head_rates_and_the_other_seeds_at_the_chosen_pair(tmp_path):
    """QuIC (1,2), a real (tiny) search: its rate with head-only's head rate, then with another head rate; a run of the
    other head rate already recorded in the work folder (as an interrupted run leaves it) with the better validation
    decides, so seed 1 must train at that head rate: a fresh bundle, a real run."""
    from quic_edge.bench.compare import CompareSettings, Runner, grid

    s = CompareSettings.make(quick=True, adapters=("head", "quic12"), seeds=(0, 1), head_search="beside",
                             work=str(tmp_path / "work"))
    task, lr = s.tasks[0], grid("quic12", quick=True)[0]
    Runner(s, Path(s.work), progress=False).close()  # a fresh work folder: its settings file
    recorded = {"adapter": "quic12", "lr": lr, "head_lr": 3e-3, "task": task, "seed": 0, "val": 1.0, "test": 0.5}
    with open(Path(s.work) / "rows.jsonl", "w", encoding="utf-8") as handle:
        handle.write(json.dumps(recorded) + "\n")
    runner = Runner(s, Path(s.work), progress=False)
    chosen = runner.search("quic12", {task: 1e-2}, {task: [3e-3]})[task]
    runner.close()
    assert chosen["lr"] == lr and chosen["head_lr"] == 3e-3 and chosen["val_selection"] == 1.0
    assert [(m["head_lr"], len(m["vals"])) for m in chosen["head_search"]] == [(3e-3, 1), (1e-2, 1)]
    trained = [(r["head_lr"], r["seed"]) for r in runner.rows]
    assert trained == [(1e-2, 0), (3e-3, 0), (3e-3, 1)]  # seed 1 at the chosen pair, not at head-only's head rate
    assert 0.0 <= runner.rows[-1]["val"] <= 1.0 and runner.rows[-1]["steps"] > 0
    assert {p.name for p in (Path(s.work) / "bundles").iterdir() if p.is_dir()} == {f"quic12-{lr:g}-0.01",
                                                                                     f"quic12-{lr:g}-0.003"}


def test_a_ladder_head_search_tries_head_only_s_whole_ladder_then_the_adapter_s_rates_at_the_new_head_rate(
        tmp_path, monkeypatch):
    """QuIC (1,2) with a three-rate grid, a real (tiny) search: the runs at head-only's head rate and the head search's
    runs are recorded (as an interrupted run leaves them), so rate 1e-2 is chosen and head 3e-3 wins at it; the
    alternation must then train rates 3e-3 and 3e-2 at head 3e-3 (real runs) and keep whichever pair is better on
    validation; seed 1 trains at that pair."""
    from quic_edge.bench import compare
    from quic_edge.bench.compare import CompareSettings, Runner, other_head_rates

    head = {"lr": 1e-1, "ladder": [3e-3, 1e-2, 3e-2, 1e-1, 3e-1],
            "search": [{"lr": lr, "val": v} for lr, v in ((3e-3, .54), (1e-2, .53), (3e-2, .55), (5e-2, .55),
                                                          (1e-1, .56), (2e-1, .55), (3e-1, .54))]}
    assert other_head_rates(head, "ladder") == [3e-3, 1e-2, 3e-2, 3e-1]  # not the halfway rates 5e-2, 2e-1
    assert other_head_rates(head, "beside") == [5e-2, 2e-1]
    with pytest.raises(ValueError, match="head-search: unknown 'grid'"):
        CompareSettings.make(quick=True, head_search="grid")
    monkeypatch.setattr(compare, "grid", lambda name, quick: (3e-3, 1e-2, 3e-2))
    s = CompareSettings.make(quick=True, adapters=("head", "quic12"), seeds=(0, 1), head_search="ladder",
                             work=str(tmp_path / "work"))
    task = s.tasks[0]
    Runner(s, Path(s.work), progress=False).close()  # a fresh work folder: its settings file
    recorded = [(3e-3, 3e-2, 0.60), (1e-2, 3e-2, 0.65), (3e-2, 3e-2, 0.50), (1e-2, 3e-3, 0.70), (1e-2, 1e-1, 0.55)]
    with open(Path(s.work) / "rows.jsonl", "w", encoding="utf-8") as handle:
        for lr, head_lr, val in recorded:
            handle.write(json.dumps({"adapter": "quic12", "lr": lr, "head_lr": head_lr, "task": task, "seed": 0,
                                     "val": val, "test": 0.5}) + "\n")
    runner = Runner(s, Path(s.work), progress=False)
    chosen = runner.search("quic12", {task: 3e-2}, {task: [3e-3, 1e-1]}, again=True)[task]
    runner.close()
    assert chosen["head_search_lr"] == 1e-2 and chosen["head_lr"] == 3e-3  # 0.70 against 0.65 and 0.55
    again = {r["lr"]: r["val"] for r in runner.rows if r["head_lr"] == 3e-3 and r["seed"] == 0 and r["lr"] != 1e-2}
    assert sorted(again) == [3e-3, 3e-2] and all(0.0 <= v <= 1.0 for v in again.values())  # trained here
    best = max(again, key=lambda lr: (again[lr], -lr))
    assert chosen["lr"] == (best if again[best] > 0.70 else 1e-2)  # a tie keeps the rate chosen first
    assert [(m["lr"], m["vals"]) for m in chosen["search_at_head"]] == [(3e-3, [again[3e-3]]), (1e-2, [0.70]),
                                                                         (3e-2, [again[3e-2]])]
    last = runner.rows[-1]
    assert (last["lr"], last["head_lr"], last["seed"]) == (chosen["lr"], 3e-3, 1) and last["steps"] > 0


def test_the_head_search_is_on_the_command_line_and_in_the_table(tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "compare", "--quick", "--adapters", "head", "--head-search", "--out", str(out), "--work",
                 str(tmp_path / "work"), "--no-progress"]) == 0
    assert json.loads((out / "compare.json").read_text())["settings"]["head_search"] == "beside"
    assert "(--head-search)" in (out / "compare.md").read_text()
    assert main(["bench", "compare", "--quick", "--adapters", "head", "--head-search", "ladder", "--out", str(out),
                 "--work", str(tmp_path / "work"), "--no-progress"]) == 0
    assert json.loads((out / "compare.json").read_text())["settings"]["head_search"] == "ladder"
    assert "(--head-search ladder)" in (out / "compare.md").read_text()


@pytest.mark.parametrize("k", ["0", "4"])
def test_choosing_on_more_seeds_than_the_run_trains_is_a_clear_error(tmp_path, capsys, k):
    assert main(["bench", "compare", "--adapters", "head", "--seeds", "0,1,2", "--select-seeds", k, "--out",
                 str(tmp_path), "--work", str(tmp_path / "w"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"select-seeds: {k} is not between 1 and the number of seeds (3)" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["compare", "ablation", "curve"])
@pytest.mark.parametrize(("bad", "says"), [
    (["--seeds", ""], "--seeds: give whole numbers separated by commas, got ''"),
    (["--seeds", ","], "--seeds: give whole numbers separated by commas"),
    (["--seeds", "0,x"], "--seeds: give whole numbers separated by commas, got '0,x'"),
    (["--seeds", "0,0"], "seeds: give distinct whole numbers from 0 to 4294967295"),
    (["--seeds", "-1"], "seeds: give distinct whole numbers from 0 to 4294967295"),
    (["--seeds", "4294967296"], "seeds: give distinct whole numbers from 0 to 4294967295"),
    (["--tasks", ","], "--tasks: give one or more names"),
    (["--tasks", "bbc-word-order,bbc-word-order"], "tasks: give distinct suite tasks"),
    (["--tasks", "nope"], "the suite has bbc-same-topic"),
    (["--adapters", ""], "--adapters: give one or more names"),
    (["--epochs", "0"], "epochs: must be at least 1, got 0"),
    (["--epochs", "-1"], "epochs: must be at least 1, got -1"),
    (["--n-train", "0"], "n-train: must be at least 1, got 0"),
    (["--jobs", "0"], "jobs: must be at least 1"),
    (["--jobs", "-2"], "jobs: must be at least 1"),
    (["--out", ""], "out: name a results folder"),
    (["--work", ""], "work: name a scratch folder"),
])
def test_bad_run_settings_are_refused_before_any_work(tmp_path, capsys, command, bad, says):
    """A value that would train nothing, train the wrong thing or fall back to the default silently (an empty --seeds
    once ran the default seeds, --jobs 0 ran two jobs, --epochs 0 started training, an empty --tasks wrote an empty
    report over the results) is refused with exit 2 before a folder is made."""
    extra = ["--search"] if command == "curve" else []
    args = ["bench", command, *extra, "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w"), "--no-progress"]
    assert main([*args, *bad]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()


def test_the_ablation_help_names_every_configuration():
    """The help names every configuration the adapter registry holds for the ablation, and only registered adapters
    (building the parser must not import torch)."""
    import argparse

    from quic_edge.bench.cli import add_ablation_arguments
    from quic_edge.bench.common import ABLATION_ADAPTERS, ADAPTERS

    parser = argparse.ArgumentParser()
    add_ablation_arguments(parser)
    text = next(a.help for a in parser._actions if a.dest == "adapters")
    named = text.split(": ")[1].split(";")[0].split(",")
    assert set(ABLATION_ADAPTERS) <= set(named) <= set(ADAPTERS)
    assert {"head", "lora8", "full"} <= set(named)  # the references every share is measured against
    blocked = ("import sys; sys.modules['torch'] = None  # any import of torch now fails\n"
               "from quic_edge.cli import build_parser; build_parser()")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"building the command line's parser imports torch: {done.stderr[-2000:]}"


def test_share_interval_resamples_seeds_in_pairs_and_counts_draws_where_lora_gains_nothing():
    import numpy as np

    from quic_edge.bench.compare import share_interval

    head, lora = [0.50, 0.52, 0.55], [0.60, 0.70, 0.62]
    same = share_interval([h + 0.4 * (lo - h) for h, lo in zip(head, lora, strict=True)], head, lora)  # every seed's share is 0.4
    assert (same["low"], same["high"], same["no_lora_gain"]) == (pytest.approx(0.4), pytest.approx(0.4), 0.0)
    # two seeds, LoRA below head on the first: of the 4 draws, (0, 0) has no share
    assert share_interval([0.5, 0.6], [0.5, 0.5], [0.4, 0.7])["no_lora_gain"] == 0.25
    assert share_interval([0.6], [0.5], [0.7])["low"] is None  # one seed: no interval
    # against every draw of 3 seeds enumerated with numpy (27 of them), nearest-rank 5 % and 95 %
    quic = [0.55, 0.60, 0.50]
    draws = np.array(np.meshgrid(*[range(3)] * 3, indexing="ij")).reshape(3, -1).T
    gains = (np.array(lora) - np.array(head))[draws].sum(1)
    shares = np.sort((np.array(quic) - np.array(head))[draws].sum(1) / gains)
    got = share_interval(quic, head, lora)
    assert (got["low"], got["high"]) == (pytest.approx(shares[1]), pytest.approx(shares[25]))
    wide = share_interval(quic, head, lora, level=0.98)  # the extremes: one draw each, no ties
    assert (wide["low"], wide["high"]) == (pytest.approx(shares[0]), pytest.approx(shares[26]))
    assert shares[0] < shares[1] and shares[25] < shares[26]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.3, 0.9), st.floats(0.01, 0.3), st.floats(-0.3, 0.3)), min_size=2, max_size=5))
def test_share_interval_lies_within_the_per_seed_shares(seeds):
    from quic_edge.bench.compare import share_interval

    head = [h for h, _, _ in seeds]
    lora = [h + g for h, g, _ in seeds]
    quic = [h + q for h, _, q in seeds]
    per_seed = [q / g for _, g, q in seeds]  # every seed's LoRA gain is positive: a draw's share is their weighted mean
    got = share_interval(quic, head, lora)
    assert got["no_lora_gain"] == 0.0
    assert min(per_seed) - 1e-9 <= got["low"] <= got["high"] <= max(per_seed) + 1e-9


def test_a_scratch_folder_is_removed_only_when_a_benchmark_made_it(tmp_path):
    from quic_edge.bench.common import SCRATCH_MARK, fresh_scratch

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not a scratch folder a benchmark made"):
        fresh_scratch(mine)
    assert (mine / "thesis.tex").read_text() == "years of work"

    made = fresh_scratch(tmp_path / "a" / "b")  # parents made too
    (made / "bundle.onnx").write_bytes(b"x")
    assert fresh_scratch(made) == made and sorted(p.name for p in made.iterdir()) == [SCRATCH_MARK]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (fresh_scratch(empty) / SCRATCH_MARK).exists()


def test_a_work_folder_with_runs_of_other_settings_is_kept_and_named(tmp_path, capsys):
    """A run given a folder of finished runs made with other settings stops; it never deletes those runs."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "settings.json").write_text('{"epochs": 3}')
    (work / "rows.jsonl").write_text('{"adapter": "head"}\n')
    assert main(["bench", "compare", "--quick", "--out", str(tmp_path / "out"), "--work", str(work), "--no-progress"]) == 2
    assert "holds runs finished with other settings" in capsys.readouterr().err
    assert (work / "rows.jsonl").read_text() == '{"adapter": "head"}\n'
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep")
    assert main(["bench", "compare", "--quick", "--out", str(tmp_path / "out"), "--work", str(notes), "--no-progress"]) == 2
    assert "not a scratch folder" in capsys.readouterr().err and (notes / "todo.txt").read_text() == "keep"


def test_the_linear_schedule_warms_up_then_decays_to_zero():
    from quic_edge.bench.common import step_schedule

    assert step_schedule("constant", 375) is None
    f = step_schedule("linear", 375)  # 6 % of 375 steps: 22 warm-up steps
    assert [f(s) for s in (0, 10, 21)] == pytest.approx([1 / 22, 11 / 22, 1.0])
    assert f(22) == pytest.approx(1.0) and f(374) == pytest.approx(1 / 353) and f(375) == 0.0
    assert all(f(s) >= f(s + 1) for s in range(22, 375))
    with pytest.raises(ValueError, match="schedule: 'cosine' is not one of constant, linear"):
        from quic_edge.bench.compare import CompareSettings

        CompareSettings.make(schedule="cosine")


def test_a_benchmark_run_trains_with_the_schedule_it_is_given(tmp_path):
    """Head only, 4 steps of 8: the first step is the same (warm-up over 1 step reaches the full rate), the later
    ones run at 2/3 and 1/3 of it, so the run's losses part; the schedule keys the work folder."""
    runs = {}
    for schedule in ("constant", "linear"):
        out, work = tmp_path / f"out-{schedule}", tmp_path / f"work-{schedule}"
        assert main(["bench", "compare", "--quick", "--adapters", "head", "--n-train", "32", "--schedule", schedule,
                     "--out", str(out), "--work", str(work), "--no-progress"]) == 0
        runs[schedule] = json.loads((out / "compare.json").read_text())["runs"][0]
        assert ('"schedule"' in (work / "settings.json").read_text()) == (schedule == "linear")
        said = {"constant": "at a constant learning rate", "linear": "then decayed linearly to 0"}[schedule]
        assert said in (out / "compare.md").read_text()
    assert runs["constant"]["steps"] == runs["linear"]["steps"] == 4
    assert runs["constant"]["first_loss"] == runs["linear"]["first_loss"]
    assert runs["constant"]["last_loss"] != pytest.approx(runs["linear"]["last_loss"], abs=1e-6)


def test_the_schedule_choices_on_the_command_line_are_the_ones_the_settings_take():
    """The parser is built without importing torch, so its choices are written out; they must not drift."""
    import argparse

    from quic_edge.bench.cli import add_compare_arguments
    from quic_edge.bench.common import SCHEDULES, WARMUP_SHARE

    parser = argparse.ArgumentParser()
    add_compare_arguments(parser)
    action = next(a for a in parser._actions if a.dest == "schedule")
    assert tuple(action.choices) == SCHEDULES and f"{WARMUP_SHARE:.0%}".replace("%", " %%") in action.help


@pytest.mark.parametrize("stem", sorted(p.stem for p in (ROOT / "benchmarks" / "results").glob("device_memory*.json")))
def test_a_committed_device_memory_table_regenerates_from_its_results_file(stem, tmp_path, monkeypatch, capsys):
    from quic_edge.bench.device_memory import main

    results = ROOT / "benchmarks" / "results"
    (tmp_path / f"{stem}.json").write_bytes((results / f"{stem}.json").read_bytes())
    monkeypatch.setattr("sys.argv", ["device_memory.py", "--from-results", "--out", str(tmp_path), "--name", stem,
                                     "--work", str(tmp_path / "never")])
    main()
    assert (tmp_path / f"{stem}.md").read_text() == (results / f"{stem}.md").read_text()
    assert not (tmp_path / "never").exists()  # nothing measured
    assert (tmp_path / f"{stem}.json").read_bytes() == (results / f"{stem}.json").read_bytes()


def test_device_memory_from_results_names_the_file_it_cannot_find_or_read(tmp_path, monkeypatch, capsys):
    from quic_edge.bench.device_memory import main

    def fails(content: str | None) -> str:
        if content is not None:
            (tmp_path / "device_memory.json").write_text(content)
        monkeypatch.setattr("sys.argv", ["device_memory.py", "--from-results", "--out", str(tmp_path)])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2 and not (tmp_path / "device_memory.md").exists()
        return capsys.readouterr().err

    assert f"no such file: {tmp_path / 'device_memory.json'}" in fails(None)
    assert "not a JSON results file" in fails("{ half a results file")
    assert "not a device_memory results file this benchmark wrote (KeyError" in fails(json.dumps({"rows": []}))


def test_the_curve_s_x_axis_marks_exactly_the_sizes_run(tmp_path, monkeypatch):
    import matplotlib.figure

    from quic_edge.bench.curve import write_curve

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, path, **kw: saved.append(fig))
    point = {"mean": 0.6, "std": 0.01, "min": 0.59, "max": 0.61, "n": 3, "values": [0.59, 0.6, 0.61]}
    summary = {"task": "bbc-word-order", "settings": {"sizes": [50, 800, 1000, 3200], "seeds": [0, 1, 2]},
               "rates": {}, "points": {"head": {50: point, 800: point, 1000: point}, "quic12": {3200: point}}}
    monkeypatch.setattr("quic_edge.bench.curve.curve_markdown", lambda summary: "")  # the table has its own tests
    write_curve(tmp_path, summary)
    ax = saved[0].axes[0]
    assert list(ax.get_xticks()) == [50, 800, 1000, 3200]  # every adapter's sizes, and nothing between them
    assert [t.get_text() for t in ax.get_xticklabels()] == ["50", "800", "1,000", "3,200"]
    assert not ax.xaxis.get_minorticklocs().size  # the log axis's own minor labels overlapped (200 to 800)

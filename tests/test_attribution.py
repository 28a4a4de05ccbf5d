"""The memory attribution (quic_edge.bench.attribution) reads what ONNX Runtime really runs: checked on tiny LLaMA
bundles, LoRA and QuIC on the same targets, against what the optimized graph's own nodes say."""

from __future__ import annotations

import pytest

from quic_edge import baselines, models
from quic_edge.config import QuICConfig
from quic_edge.export import export_bundle
from quic_edge.model import apply_quic
from quic_edge.runtimes.parity import NUM_LABELS
from quic_edge.tasks import example_batch

TARGETS = ("q_proj", "v_proj")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from quic_edge.bench.attribution import attribute, optimized_training_graph

    out = {}
    for adapter in ("lora", "quic"):
        model, _ = models.load("llama-tiny", num_labels=NUM_LABELS, seed=0)
        model = baselines.lora(model, 4, TARGETS) if adapter == "lora" else apply_quic(model, QuICConfig(
            blocks=2, orders=(1, 2), target_modules=TARGETS))
        folder = tmp_path_factory.mktemp(f"attribution-{adapter}") / "bundle"
        export_bundle("ort", model, example_batch("llama-tiny", 4, 16, NUM_LABELS), folder, optimizer="adamw")
        out[adapter] = (optimized_training_graph(folder).graph, attribute(folder), folder)
    return out


@pytest.mark.parametrize("adapter", ["lora", "quic"])
def test_nothing_the_gradient_builder_made_counts_as_kept_from_forward(bundles, adapter):
    """ORT names its gradient nodes `<forward node>_Grad/...` (some, like the reshapes of a MatMul's operands, carry
    no _grad tensor name): their outputs are backward temporaries, not tensors kept from forward."""
    from quic_edge.export.ort_graph import stashed_tensors

    graph, _, _ = bundles[adapter]
    made_by_gradient = {o for n in graph.node if "_Grad/" in n.name for o in n.output}
    assert made_by_gradient, "the optimized graph should hold gradient-builder nodes"
    assert not set(stashed_tensors(type("P", (), {"graph": graph})())) & made_by_gradient


def test_lora_keeps_its_layer_input_and_it_is_labelled_lora(bundles):
    """LoRA's A needs its input x for its weight gradient; nothing else in the backward pass reads x, so x is LoRA's."""
    from quic_edge.bench.attribution import _chains

    graph, report, _ = bundles["lora"]
    lora_inputs = {i for n in graph.node if n.op_type in ("MatMul", "FusedMatMul", "Gemm") and "_Grad/" not in n.name
                   and any("lora_A" in x for x in n.input) for i in n.input if "lora_A" not in i}
    assert lora_inputs
    _, labels = _chains(graph)
    assert all(labels.get(x) == "LoRA" for x in lora_inputs), {x: labels.get(x) for x in lora_inputs}
    assert report["stashed"]["LoRA"]["mib"] > 0 and "rotation (QuIC)" not in report["stashed"]


def test_quic_keeps_rotation_tensors_and_nothing_labelled_lora(bundles):
    _, report, _ = bundles["quic"]
    assert report["stashed"]["rotation (QuIC)"]["mib"] > 0 and "LoRA" not in report["stashed"]
    assert report["stashed_mib"] == pytest.approx(sum(v["mib"] for v in report["stashed"].values()))
    assert report["peak_live_mib"] > 0 and report["nodes"] > 0


@pytest.mark.parametrize("adapter", ["lora", "quic"])
def test_the_frozen_base_is_what_the_checkpoint_holds_besides_the_trainable_tensors(bundles, adapter):
    """Read from the training graph's inputs; checked against the checkpoint file the session loads, which holds the
    frozen and the trainable tensors (and a little of its own format)."""
    from quic_edge.formats.bundle import read_manifest

    _, report, folder = bundles[adapter]
    checkpoint = (folder / read_manifest(folder)["files"]["checkpoint"]).stat().st_size / 2**20
    held = report["frozen_base_mib"] + report["resident"]["trainable_mib"]
    assert report["frozen_base_mib"] > 0.5 * checkpoint
    assert held <= checkpoint <= held * 1.01 + 0.1, (held, checkpoint)


@pytest.mark.parametrize("adapter", ["lora", "quic"])
def test_weights_dequantized_from_int8_are_named_so(bundles, adapter):
    """Tiny LLaMA's weights are below the recompute rewrite's size floor, so the backward pass keeps their fp32
    dequantization; each such tensor is made, through any ops, from an int8 weight and constants only."""
    import onnx

    from quic_edge.bench.attribution import _chains

    graph, report, _ = bundles[adapter]
    int8 = {i.name for i in (*graph.input, *graph.initializer)
            if (i.type.tensor_type.elem_type if hasattr(i, "type") else i.data_type) == onnx.TensorProto.INT8}
    dequantized, _ = _chains(graph)
    assert report["stashed"]["dequantized weights"]["count"] > 0
    producer = {o: n for n in graph.node for o in n.output}

    def reaches_int8(name: str) -> bool:
        node = producer.get(name)
        return name in int8 or (node is not None and any(reaches_int8(i) for i in node.input if i))

    assert all(reaches_int8(name) for name in dequantized)


def test_the_op_profile_times_every_node_of_the_graph_ort_runs(bundles, tmp_path):
    """The kernel profile of a device-loop step (quic_edge.bench.op_profile) counts, per op type, the nodes of the
    optimized training graph, once per step."""
    from collections import Counter

    from quic_edge.bench.op_profile import op_profile

    graph, _, folder = bundles["quic"]
    profile = op_profile(folder, tmp_path / "work", steps=2, warmup=1)
    graph_ops = Counter(n.op_type for n in graph.node)
    assert {op: v["nodes"] for op, v in profile["by_op"].items()} == {op: c for op, c in graph_ops.items()
                                                                      if op in profile["by_op"]}
    assert set(graph_ops) - set(profile["by_op"]) <= {"Identity"}  # ORT may run an Identity without a kernel event
    assert profile["kernel_ms_per_step"] == pytest.approx(sum(v["ms"] for v in profile["by_op"].values()))
    # the sides split the same kernels: what reads the token ids is on the tokens side, what reads the angles (the
    # rotation build) on the fixed side
    sides = profile["by_side"]
    assert sum(v["ms"] for v in sides.values()) == pytest.approx(profile["kernel_ms_per_step"])
    assert sum(v["nodes"] for v in sides.values()) == sum(v["nodes"] for v in profile["by_op"].values())
    reads = {name: [n.name for n in graph.node if any(name in i for i in n.input)] for name in ("input_ids", "angles")}
    assert reads["input_ids"] and reads["angles"]
    side_of = profile_sides(folder, tmp_path / "sides")
    assert {side_of[n] for n in reads["input_ids"] if n in side_of} == {"tokens"}
    assert {side_of[n] for n in reads["angles"] if n in side_of} == {"fixed"}


def profile_sides(folder, work) -> dict[str, str]:
    """Each profiled node's side, from a fresh profile trace of one step."""
    import json

    from quic_edge.bench.memory import measuring_batch
    from quic_edge.bench.op_profile import node_side
    from quic_edge.runtimes.ort import OrtLoop

    loop = OrtLoop(folder, work, profile=str(work / "trace"))
    batch = measuring_batch(loop)
    loop.train_step(batch)
    loop.close()
    events = json.loads(next(work.glob("trace*.json")).read_text())
    tokens = batch["input_ids"].shape
    return {e["name"].removesuffix("_kernel_time"): node_side(e["args"], tokens) for e in events
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")}


@pytest.mark.parametrize(("shape", "side"), [
    ([8, 64, 384], "tokens"), ([512, 384], "tokens"), ([8, 12, 64, 64], "tokens"), ([3, 512, 105], "tokens"),
    ([384, 384], "fixed"), ([12, 3, 105, 105], "fixed"), ([12, 1, 3, 315], "fixed"), ([8], "fixed"), ([], "fixed")])
def test_a_kernel_is_on_the_tokens_side_when_a_tensor_holds_the_batch_tokens(shape, side):
    from quic_edge.bench.op_profile import node_side

    args = {"input_type_shape": [{"float": [384, 384]}], "output_type_shape": [{"float": shape}]}
    assert node_side(args, (8, 64)) == side


def test_kernel_times_average_only_the_last_runs():
    from quic_edge.bench.op_profile import kernel_times

    def run(ts):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": 5}

    def kernel(ts, op, dur):
        return {"cat": "Node", "name": f"n_{op}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [run(0), kernel(1, "MatMul", 9000), run(10), kernel(11, "MatMul", 2000), kernel(12, "Add", 1000),
              run(20), kernel(21, "MatMul", 4000), kernel(22, "Add", 1000)]
    times = kernel_times(events, steps=2)
    assert times["by_op"] == {"MatMul": {"ms": 3.0, "nodes": 1}, "Add": {"ms": 1.0, "nodes": 1}}
    assert "by_side" not in times  # no token shape given
    assert kernel_times(events, steps=2, tokens=(8, 64))["by_side"] == {"tokens": {"ms": 0.0, "nodes": 0},
                                                                        "fixed": {"ms": 4.0, "nodes": 2}}
    assert times["kernel_ms_per_step"] == 4.0
    with pytest.raises(ValueError, match="fewer than"):
        kernel_times(events, steps=4)


def test_quic_builds_its_rotations_without_gathers(bundles):
    """Nothing computed from the angles is a gather or a gather's gradient in the graph ORT trains: ORT's CPU
    GatherGrad is a serial scatter-add (1.5 ms of QuIC (1,2)'s MiniLM step when it placed the Givens rounds), so the
    rounds (quic_edge.givens) and the minors (quic_edge.compounds) are placed by products with constants."""
    graph, _, _ = bundles["quic"]
    reached = {i.name for i in graph.initializer if "angles" in i.name} | {i.name for i in graph.input
                                                                           if "angles" in i.name}
    assert reached
    gathers = []
    for node in graph.node:  # topological order
        if any(i in reached for i in node.input):
            reached.update(node.output)
            if node.op_type.startswith("Gather"):
                gathers.append((node.op_type, node.name))
    assert not gathers


def test_the_command_writes_one_row_per_adapter_and_refuses_unknown_names(tmp_path, capsys):
    import json

    from quic_edge.bench.attribution import main

    with pytest.raises(SystemExit):
        main(["--adapters", "quic99", "--out", str(tmp_path / "a.json"), "--work", str(tmp_path / "w")])
    assert "unknown quic99" in capsys.readouterr().err
    main(["--adapters", "head", "--out", str(tmp_path / "a.json"), "--work", str(tmp_path / "w")])
    results = json.loads((tmp_path / "a.json").read_text())
    row = [line for line in (tmp_path / "a.md").read_text().splitlines() if line.startswith("| head |")]
    assert list(results) == ["head"] and len(row) == 1
    assert row[0].split("|")[-3].strip() == f"{results['head']['stashed_mib']:.1f}"
    assert "rotation (QuIC)" not in results["head"]["stashed"] and results["head"]["stashed_mib"] > 0

"""Where a training step's memory goes, from the graph ONNX Runtime actually runs.

For an ONNX Runtime bundle: ORT optimizes the training graph (fusions, its own layout changes) and this module
reads that optimized graph back (`SessionOptions.optimized_model_filepath`), then
- lists the tensors a step keeps from forward to backward ("stashed": forward outputs that backward nodes read),
  grouped by kind, with their bytes;
- replays the execution order and frees each tensor after its last reader, which gives the peak of live tensors and
  what is alive at that peak.
Sizes come from ONNX shape inference on the bundle's training graph (ORT's fused nodes keep their outputs' names; a
gradient `X_grad` has the shape of `X`). Frozen weights and trainable tensors are graph inputs (held by the
checkpoint state for the whole session) and are counted apart.

    report = attribute("bundle/")          # {"stashed": {...by kind...}, "peak_live_mib": ..., "at_peak": {...}}

From the command line, MiniLM bundles of the benchmark's adapters (batch 8 x 64, AdamW), no timing (the figures are
read from the graph, so a busy machine gives the same numbers):

    python -m quic_edge.bench.attribution --adapters lora8,quic12,lora8-vf,quic12-vf --out attribution.json
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

MIB = 2**20
KINDS = ("dequantized weights", "attention", "feed-forward", "layer norm", "rotation (QuIC)", "LoRA", "gradients",
         "other")


def optimized_training_graph(bundle: str | Path, session_options: dict[str, str] | None = None,
                             manifest: dict[str, Any] | None = None) -> Any:
    """The training graph after ONNX Runtime's optimizations, as the device loop's session runs it. `manifest`: the
    bundle's, where the caller has verified it already (else it is verified here)."""
    import onnx

    from quic_edge.formats.bundle import bundle_file, verify_bundle
    from quic_edge.runtimes.ort import ort_bindings

    C = ort_bindings()
    manifest = manifest or verify_bundle(bundle)
    with tempfile.TemporaryDirectory(prefix="quic-edge-optimized-") as tmp:
        options = C.SessionOptions()
        options.enable_mem_pattern = False
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        for key, value in {**manifest.get("session_options", {}), **(session_options or {})}.items():
            options.add_session_config_entry(key, value)
        device = C.OrtDevice(C.OrtDevice.cpu(), C.OrtDevice.default_memory(), 0)
        state = C.load_checkpoint(str(bundle_file(bundle, manifest, "checkpoint")))
        C.Module(str(bundle_file(bundle, manifest, "training_model")), state, None, device, options)
        return onnx.load(str(Path(tmp) / "optimized.onnx"))


def size_of(name: str, sizes: dict[str, int]) -> int:
    if name in sizes:
        return sizes[name]
    base = re.sub(r"(_grad)(\.accumulation\.buffer)?.*$", "", name)  # X_grad, X_grad_1...: the shape of X
    return sizes.get(base, 0)


def kind(name: str, producer: str, int8_chain: set[str], adapter_chain: dict[str, str]) -> str:
    """What a tensor is, from its name (the exporter's FX names), its producing op and what it is made from."""
    if name in int8_chain:
        return "dequantized weights"
    if "_grad" in name:
        return "gradients"
    if name in adapter_chain:
        return adapter_chain[name]
    if producer in ("Softmax", "Where") or re.match(r"(softmax|clone|transpose|matmul|div|masked_fill|where)", name):
        return "attention"
    if producer in ("Gelu", "BiasGelu", "FastGelu") or re.match(r"(gelu|linear)", name):
        return "feed-forward"
    if "LayerNorm" in producer or name.startswith(("layer_norm", "add")):
        return "layer norm"
    return "other"


def _chains(graph: Any) -> tuple[set[str], dict[str, str]]:
    """Tensors made (through any ops) from int8 weights only, and tensors on the adapters' side (from angles or
    LoRA tensors, before they meet the activations)."""
    import onnx

    int8 = {i.name for i in graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.INT8}
    int8 |= {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    activations = {i.name for i in graph.input if i.name in ("input_ids", "attention_mask", "features", "labels")}
    # axes, shapes, scales and what is made from them alone: neither a weight nor data
    static = ({i.name for i in graph.initializer} - int8) | {i.name for i in graph.input if i.name.endswith("_scale")}
    from_int8, from_adapter, from_data = set(int8), {}, set(activations)
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if all(i in static for i in inputs):
            static.update(node.output)
        if any(i in from_data for i in inputs):
            from_data.update(node.output)
        elif any(i in from_int8 for i in inputs) and all(i in from_int8 or i in static for i in inputs):
            from_int8.update(node.output)
        for i in inputs:
            label = ("rotation (QuIC)" if i.endswith("angles") or from_adapter.get(i) == "rotation (QuIC)" else
                     "LoRA" if "lora_" in i or from_adapter.get(i) == "LoRA" else None)
            if label and not any(x in from_data for x in inputs):
                for o in node.output:
                    from_adapter[o] = label
    for node in graph.node:  # activation slices the rotation multiplies: a MatMul reading a compound
        if node.op_type in ("MatMul", "FusedMatMul") and any(from_adapter.get(i) == "rotation (QuIC)" for i in node.input):
            for i in node.input:
                if i not in from_adapter:
                    from_adapter[i] = "rotation (QuIC)"
    from_adapter |= _kept_for_adapters(graph, from_adapter)
    return from_int8 - int8, from_adapter


def _kept_for_adapters(graph: Any, from_adapter: dict[str, str]) -> dict[str, str]:
    """Forward tensors that only an adapter's gradient reads (LoRA's A needs its layer's input, x): every backward
    reader is a node of ONNX Runtime's gradient builder, `<forward node>_Grad/...`, for a forward node that reads an
    adapter tensor (ORT's fusions keep the forward node's name before a '/'). Kept because of the adapter, whatever
    made them."""
    from quic_edge.export.ort_graph import is_backward

    def label(name: str) -> str | None:
        return from_adapter.get(name) or ("LoRA" if "lora_" in name else None)

    adapter_nodes = {}
    for node in graph.node:
        labels = {label(i) for i in node.input} - {None}
        if labels and not is_backward(node):
            adapter_nodes[node.name.split("/")[0]] = labels.pop()
    readers: dict[str, set[str | None]] = defaultdict(set)
    for node in graph.node:
        if is_backward(node):
            owner = node.name.split("_Grad/")[0] if "_Grad/" in node.name else None
            for i in node.input:
                readers[i].add(adapter_nodes.get(owner) if owner else None)
    return {name: next(iter(labels)) for name, labels in readers.items()
            if len(labels) == 1 and None not in labels and name not in from_adapter and "_grad" not in name}


def stashed_by_kind(graph: Any, sizes: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The tensors kept from forward to backward, grouped by kind: {kind: {"mib", "count", "largest"}}."""
    from quic_edge.export.ort_graph import stashed_tensors

    producer = {o: n.op_type for n in graph.node for o in n.output}
    int8_chain, adapter_chain = _chains(graph)
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    proto_like = type("P", (), {"graph": graph})()
    for name in stashed_tensors(proto_like):
        groups[kind(name, producer.get(name, ""), int8_chain, adapter_chain)].append((size_of(name, sizes), name))
    return {k: {"mib": sum(s for s, _ in rows) / MIB, "count": len(rows),
                "largest": [n for _, n in sorted(rows, reverse=True)[:3]]} for k, rows in sorted(groups.items())}


def peak_live(graph: Any, sizes: dict[str, int]) -> dict[str, Any]:
    """Replay the node order: a tensor lives from its producer to its last reader (graph outputs to the end). Returns
    the peak of live bytes, where in the order it falls, and what is alive then, by kind."""
    producer = {o: n.op_type for n in graph.node for o in n.output}
    graph_io = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name:
                last_use[name] = index
    for out in graph.output:
        last_use[out.name] = len(graph.node)
    int8_chain, adapter_chain = _chains(graph)
    live: dict[str, int] = {}
    best, best_index, best_live = 0, 0, {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in graph_io:
                live[name] = size_of(name, sizes)
        total = sum(live.values())
        if total > best:
            best, best_index, best_live = total, index, dict(live)
        for name in [n for n in live if last_use.get(n, -1) <= index]:
            del live[name]
    at_peak: dict[str, float] = defaultdict(float)
    for name, size in best_live.items():
        at_peak[kind(name, producer.get(name, ""), int8_chain, adapter_chain)] += size / MIB
    return {"peak_live_mib": best / MIB, "peak_at_node": best_index, "nodes": len(graph.node),
            "at_peak": dict(sorted(at_peak.items(), key=lambda kv: -kv[1]))}


def resident_inputs(bundle: str | Path, manifest: dict[str, Any]) -> dict[str, float]:
    """MiB of what the checkpoint state holds for the whole session: frozen weights (by dtype) and trainable tensors
    (`manifest`: the bundle's, verified)."""
    import json

    trainable = sum(int(np.prod(s)) * 4 for s in manifest["trainable"].values()) / MIB
    checkpoint = Path(bundle) / manifest["files"]["checkpoint"]
    return {"checkpoint_file_mib": checkpoint.stat().st_size / MIB, "trainable_mib": trainable,
            "optimizer_moments_mib": 2 * trainable if manifest["optimizer"]["name"] == "adamw" else 0.0,
            "manifest": json.dumps(manifest["optimizer"]["name"])}


def frozen_base_mib(graph: Any, manifest: dict[str, Any], sizes: dict[str, int]) -> float:
    """MiB of the frozen base the session holds throughout: the training graph's inputs that are neither the batch,
    trainable, nor the trainable tensors' gradient buffers and their reset flag (int8 weights, their scales, fp32
    biases and norms), as stored (`graph`: the bundle's training graph; `manifest`: its manifest)."""
    batch = {s["name"] for s in [*manifest["inputs"], manifest["target"]]}
    return sum(sizes.get(i.name, 0) for i in graph.input if i.name not in batch and i.name not in manifest["trainable"]
               and not i.name.endswith("_grad.accumulation.buffer") and i.name != "lazy_reset_grad") / MIB


def attribute(bundle: str | Path) -> dict[str, Any]:
    """The attribution of one ONNX Runtime bundle (see the module text)."""
    import onnx

    from quic_edge.export.ort_graph import tensor_bytes
    from quic_edge.formats.bundle import bundle_file, verify_bundle

    manifest = verify_bundle(bundle)  # every byte, once
    training = onnx.load(str(bundle_file(bundle, manifest, "training_model")))
    sizes = tensor_bytes(training)  # shape inference on the bundle's training graph
    graph = optimized_training_graph(bundle, manifest=manifest).graph
    stashed = stashed_by_kind(graph, sizes)
    return {"stashed": stashed, "stashed_mib": sum(v["mib"] for v in stashed.values()), **peak_live(graph, sizes),
            "resident": resident_inputs(bundle, manifest), "frozen_base_mib": frozen_base_mib(training.graph, manifest, sizes)}


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """One row per bundle: MiB kept from forward to backward, by kind, and the replayed peak of live tensors."""
    kinds = [k for k in KINDS if any(k in r["stashed"] for r in results.values())]
    lines = ["| adapter | " + " | ".join(kinds) + " | kept in all | peak of live tensors |",
             "|---|" + "---|" * (len(kinds) + 2)]
    for name, r in results.items():
        cells = [f"{r['stashed'][k]['mib']:.1f}" if k in r["stashed"] else "-" for k in kinds]
        lines.append(f"| {name} | {' | '.join(cells)} | {r['stashed_mib']:.1f} | {r['peak_live_mib']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from quic_edge.bench.common import ADAPTERS, fresh_scratch
    from quic_edge.bench.device_memory import BATCH, SEQ, export

    parser = argparse.ArgumentParser(description="MiB a training step keeps from forward to backward, per adapter, "
                                     f"read from ONNX Runtime's optimized training graph (MiniLM, {BATCH} x {SEQ}).")
    parser.add_argument("--adapters", default="lora8,quic12", help="comma-separated names from quic-edge bench compare "
                        "and ablation (default lora8,quic12)")
    parser.add_argument("--out", required=True, help="results file (.json; a .md table is written beside it)")
    parser.add_argument("--work", default="runs/bench-attribution", help="scratch folder for the bundles")
    args = parser.parse_args(argv)
    names = [n for n in args.adapters.split(",") if n]
    unknown = [n for n in names if n not in ADAPTERS]
    if unknown or not names:
        parser.error(f"--adapters: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(ADAPTERS)}")
    root = fresh_scratch(args.work)
    results = {}
    for name in names:
        export(name, "ort", root / name)
        results[name] = attribute(root / name)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    out.write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()

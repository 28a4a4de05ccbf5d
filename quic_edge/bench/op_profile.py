"""Where a training step's time goes: ONNX Runtime's own kernel timings, by op type, for one bundle.

    profile = op_profile("bundle/", "work/", steps=10)
    # {"kernel_ms_per_step": ..., "by_op": {op: {"ms": ..., "nodes": ...}}, "by_side": {side: {"ms": ..., "nodes": ...}},
    #  "top_nodes": [[name, op, ms], ...]}

The device loop (quic_edge.runtimes.ort.OrtLoop) trains `warmup + steps` steps on the measuring batch with ORT's
profiler on for its training session; the trace's kernel times of the last `steps` runs are averaged per step. The
profiler adds a little time to every kernel, so the figures say what share each kind of op takes, not the step time
(quic_edge.bench.memory measures that, without the profiler). `by_side` splits the kernels by what their cost grows
with: "tokens" (a node reads or writes a tensor of the batch's tokens: the model's products and activations, an
adapter's work on them) or "fixed" (the rest, the same at any batch: the base weights' dequantization, QuIC's
rotation build from its angles, the optimizer). This is how ORT's CPU gradient of Gather was found to
take about a fifth of QuIC (1,2)'s kernel time at MiniLM 8 x 64 (quic_edge.compounds now gathers by products).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any


def op_profile(bundle: str | Path, work: str | Path, steps: int = 10, warmup: int = 3, top: int = 15,
               threads: int = 0) -> dict[str, Any]:
    """Kernel time per step of an ONNX Runtime bundle's training session, by op type, and its `top` slowest nodes
    (`threads`: intra-op threads, 0 = ORT's choice)."""
    from quic_edge.bench.memory import measuring_batch
    from quic_edge.runtimes.ort import OrtLoop

    with tempfile.TemporaryDirectory(prefix="quic-edge-profile-") as tmp:
        loop = OrtLoop(bundle, work, threads=threads, profile=str(Path(tmp) / "train"))
        batch = measuring_batch(loop)
        for _ in range(warmup + steps):
            loop.train_step(batch)
        loop.close()
        traces = sorted(Path(tmp).glob("train*.json"))
        if not traces:
            raise RuntimeError(f"ONNX Runtime wrote no profile for {bundle}")
        events = json.loads(traces[-1].read_text())
    first = next(iter(batch.values()))  # token ids [batch, seq] for a text model: then split by side
    tokens = (int(first.shape[0]), int(first.shape[1])) if first.ndim == 2 else None
    return kernel_times(events, steps, top, tokens=tokens)


def token_sized(shape: list[int], tokens: tuple[int, int]) -> bool:
    """Whether a tensor of `shape` holds the batch's tokens ([batch, seq] = tokens): one axis of batch x seq, or batch
    first and seq after it (the heads' [batch, heads, seq, ...])."""
    batch, seq = tokens
    return batch * seq in shape or (len(shape) > 1 and shape[0] == batch and seq in shape[1:])


def node_side(args: dict[str, Any], tokens: tuple[int, int]) -> str:
    """"tokens" when a kernel event's inputs or outputs hold the batch's tokens, else "fixed"."""
    shapes = [dims for key in ("input_type_shape", "output_type_shape") for tensor in args.get(key, [])
              for dims in tensor.values()]
    return "tokens" if any(token_sized(list(dims), tokens) for dims in shapes) else "fixed"


def kernel_times(events: list[dict[str, Any]], steps: int, top: int = 15,
                 tokens: tuple[int, int] | None = None) -> dict[str, Any]:
    """Per-step kernel time by op type over the last `steps` session runs of an ORT profile trace; with `tokens`
    (the batch's [batch, seq]) also by side (node_side)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[-steps:]
    if len(runs) < steps:
        raise ValueError(f"the profile holds {len(runs)} session runs, fewer than the {steps} asked for")
    start = runs[0]["ts"]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start]
    by_op: Counter[str] = Counter()
    nodes: Counter[str] = Counter()
    by_node: Counter[tuple[str, str]] = Counter()
    by_side: Counter[str] = Counter()
    side_nodes: Counter[str] = Counter()
    for e in kernels:
        op = e["args"]["op_name"]
        by_op[op] += e["dur"] / 1e3 / steps
        nodes[op] += 1 / steps
        by_node[e["name"].removesuffix("_kernel_time"), op] += e["dur"] / 1e3 / steps
        if tokens is not None:
            side = node_side(e["args"], tokens)
            by_side[side] += e["dur"] / 1e3 / steps
            side_nodes[side] += 1 / steps
    times = {"steps": steps, "kernel_ms_per_step": sum(by_op.values()),
             "by_op": {op: {"ms": ms, "nodes": round(nodes[op])} for op, ms in by_op.most_common()},
             "top_nodes": [[name, op, ms] for (name, op), ms in by_node.most_common(top)]}
    if tokens is not None:
        times["by_side"] = {side: {"ms": by_side[side], "nodes": round(side_nodes[side])} for side in ("tokens", "fixed")}
    return times

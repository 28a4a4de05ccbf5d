"""What an ExecuTorch training program runs in one step, read from its `.pte` (issue 11): kernel calls by operator,
the bytes their outputs write, and the products' arithmetic. The pip runtime has no event tracer (ETDump), so this
static count stands in for a kernel profile: ExecuTorch's portable kernels copy for every layout op (a permute, an
expand, a slice each write their whole output), so bytes written tell where a step's time goes beside the products.
"""

from __future__ import annotations

from math import prod
from pathlib import Path
from typing import Any

# ExecuTorch's ScalarType codes (executorch/runtime/core/portable_type/scalar_type.h) -> bytes per element
ELEMENT_BYTES = {0: 1, 1: 1, 2: 2, 3: 4, 4: 8, 5: 2, 6: 4, 7: 8, 11: 1, 15: 2}
PRODUCTS = ("aten::mm", "aten::bmm")


def op_volume(program: str | Path | bytes) -> dict[str, Any]:
    """Per operator of the program's "forward" method (the joint step): {"nodes", "mib_written", "gflop"}, and totals."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    data = program if isinstance(program, bytes) else Path(program).read_bytes()
    plan = next(p for p in deserialize_pte_binary(data).program.execution_plan if p.name == "forward")
    by_op: dict[str, dict[str, float]] = {}
    for chain in plan.chains:
        for instruction in chain.instructions:
            call = instruction.instr_args
            if not hasattr(call, "op_index"):
                continue  # a move or a jump, not a kernel
            operator = plan.operators[call.op_index]
            out = _tensor(plan, call.args[-1])
            entry = by_op.setdefault(operator.name, {"nodes": 0, "mib_written": 0.0, "gflop": 0.0})
            entry["nodes"] += 1
            if out is not None:
                entry["mib_written"] += prod(out.sizes) * ELEMENT_BYTES.get(int(out.scalar_type), 4) / 2**20
                first = _tensor(plan, call.args[0])
                if operator.name in PRODUCTS and first is not None:
                    entry["gflop"] += 2 * prod(out.sizes) * first.sizes[-1] / 1e9
    ordered = dict(sorted(by_op.items(), key=lambda kv: -kv[1]["mib_written"]))
    return {"by_op": ordered, "nodes": sum(e["nodes"] for e in by_op.values()),
            "mib_written": sum(e["mib_written"] for e in by_op.values()),
            "gflop": sum(e["gflop"] for e in by_op.values())}


def _tensor(plan: Any, index: int) -> Any:
    value = plan.values[index].val
    return value if hasattr(value, "sizes") and hasattr(value, "scalar_type") else None


def volume_table(volumes: dict[str, dict[str, Any]], top: int = 12) -> list[str]:
    """Markdown rows: the `top` operators by bytes written in any program, then the rest and the totals."""
    if not volumes:
        return []
    ops = sorted({op for v in volumes.values() for op in v["by_op"]},
                 key=lambda op: -max(v["by_op"].get(op, {}).get("mib_written", 0.0) for v in volumes.values()))[:top]
    lines = ["", "ExecuTorch: kernel calls per step by operator (calls, MiB their outputs write, GFLOP of products; read "
             "from each `.pte`, quic_edge/bench/executorch_ops.py):", "",
             "| operator | " + " | ".join(volumes) + " |", "|---|" + "---|" * len(volumes)]

    def cell(entry: dict[str, float]) -> str:
        flop = f", {entry['gflop']:.2f} GF" if entry.get("gflop") else ""
        return f"{entry.get('nodes', 0)} / {entry.get('mib_written', 0.0):.1f}{flop}"

    for op in ops:
        lines.append(f"| {op} | " + " | ".join(cell(v["by_op"].get(op, {})) for v in volumes.values()) + " |")
    rest = {name: {"nodes": sum(e["nodes"] for o, e in v["by_op"].items() if o not in ops),
                   "mib_written": sum(e["mib_written"] for o, e in v["by_op"].items() if o not in ops)}
            for name, v in volumes.items()}
    lines.append("| all other operators | " + " | ".join(cell(r) for r in rest.values()) + " |")
    lines.append("| total | " + " | ".join(cell(v) for v in volumes.values()) + " |")
    return lines

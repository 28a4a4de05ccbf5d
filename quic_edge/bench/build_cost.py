"""Cost of building the block rotation: our Givens + minors against Cayley + det (the published code's way).

    .venv/bin/python benchmarks/build_cost.py     # writes benchmarks/results/build_cost.{json,md}

For each n, 3 blocks, orders (1, 2), forward + backward of C_1(A) (+) C_2(A) from n(n-1)/2 parameters:
- ours: A from the "planes" Givens circuit (one static gather per round, log-depth product), C_2 from
  2 x 2 minors whose entries are picked by products with constant one-hot matrices (quic_edge.givens.orthogonal,
  quic_edge.compound);
- reference: A = (I - S)(I + S)^-1 from a skew matrix S (torch.inverse), C_2 by torch.linalg.det of every
  2 x 2 submatrix, as the published QuIC code builds it.
Median of repeated runs, one thread, in one process.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from itertools import combinations
from pathlib import Path

import torch
from tqdm import tqdm

from quic_edge import compound
from quic_edge.givens import gate_count, orthogonal

SIZES = (8, 15, 22, 30, 44)
BLOCKS = 3
REPEATS = 15


def ours(angles: torch.Tensor, n: int) -> torch.Tensor:
    A = orthogonal(angles, n)  # (B, n, n)
    return compound(A, 1).sum() + compound(A, 2).sum()


def reference(params: torch.Tensor, n: int, pairs: torch.Tensor) -> torch.Tensor:
    iu = torch.triu_indices(n, n, 1)
    S = torch.zeros(params.shape[0], n, n)
    S[:, iu[0], iu[1]] = params
    S = S - S.transpose(-1, -2)
    eye = torch.eye(n)
    A = (eye - S) @ torch.inverse(eye + S)
    rows = A[:, pairs][:, :, :, pairs]  # (B, P, 2, P, 2): every 2 x 2 submatrix
    sub = rows.permute(0, 1, 3, 2, 4)  # (B, P, P, 2, 2)
    return A.sum() + torch.linalg.det(sub).sum()


def timed(fn, x: torch.Tensor) -> float:
    times = []
    for _ in range(REPEATS):
        x.grad = None
        start = time.perf_counter()
        fn(x).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1e3


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for n in tqdm(SIZES, desc="build cost", unit="n"):
        g = gate_count(n)
        pairs = torch.tensor(list(combinations(range(n), 2)))
        angles = (0.1 * torch.randn(BLOCKS, g)).requires_grad_()
        params = (0.1 * torch.randn(BLOCKS, g)).requires_grad_()
        ours_ms = timed(lambda a, n=n: ours(a, n), angles)
        ref_ms = timed(lambda p, n=n, pairs=pairs: reference(p, n, pairs), params)
        rows.append({"n": n, "angles_per_block": g, "ours_ms": ours_ms, "cayley_det_ms": ref_ms, "speedup": ref_ms / ours_ms})
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"blocks": BLOCKS, "orders": [1, 2], "repeats": REPEATS, "threads": 1, "torch": torch.__version__,
            "machine": platform.machine(), "command": ".venv/bin/python benchmarks/build_cost.py"}
    (out / "build_cost.json").write_text(json.dumps({"settings": meta, "rows": rows}, indent=2))
    lines = ["| n | angles per block | ours: Givens + minors (ms) | Cayley + det (ms) | speed-up |", "|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['angles_per_block']} | {r['ours_ms']:.2f} | {r['cayley_det_ms']:.2f} | "
              f"{r['speedup']:.1f}x |" for r in rows]
    (out / "build_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

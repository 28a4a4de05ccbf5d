"""Parity: the same init, data and optimizer in PyTorch eager and in a device runtime (DESIGN.md section 5).

    run = collect("ort", "mlp", steps=20, optimizer="adamw")    # both traces: losses, gradients every step, parameters
    report = judge(run)                                         # per-tensor verdicts; report["within"] is the answer

A harness that cannot miss: every tensor is judged on its own (shape, NaN, absolute error and error relative to the
tensor's own scale, so a 5% error on a small tensor fails), gradients at every step, losses per step, and every
trainable tensor must have moved by far more than the tolerance on both sides (else the parameter check says
nothing). Text models get padded attention masks. Runtime-agnostic: the bundle comes from the exporter registry and
the runtime is driven through the DeviceLoop interface. Both sides run in eval mode (dropout off).
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quic_edge import models
from quic_edge.config import QuICConfig
from quic_edge.model import apply_quic
from quic_edge.state import delta_parameters
from quic_edge.tasks import example_batch
from quic_edge.training import fit

# Settings per optimizer: SGD needs a larger rate to move the angles measurably in 20 steps.
LR = {"adamw": 1e-2, "sgd": 0.5}
WEIGHT_DECAY = {"adamw": 0.01, "sgd": 0.0}  # torch's AdamW default; checks the decoupled decay as well
TARGETS = {"loss": 1e-5, "grad": 1e-5, "param": {"sgd": 1e-5, "adamw": 1e-4}, "rtol": 1e-3, "moved": 20.0}
NOISE_FLOOR = 1e-7  # fp32 rounding below which a relative error means nothing
SHAPES = {"minilm": (8, 64), "llama-tiny": (4, 32), "mlp": (16, 1)}
NUM_LABELS = 3

Tensors = dict[str, np.ndarray]


@dataclass
class Trace:
    """One side of a parity run."""

    losses: list[float] = field(default_factory=list)
    gradients: list[Tensors] = field(default_factory=list)  # per step
    initial: Tensors = field(default_factory=dict)
    final: Tensors = field(default_factory=dict)


@dataclass
class ParityRun:
    runtime: str
    model: str
    optimizer: str
    steps: int
    lr: float
    weight_decay: float
    eager: Trace
    device: Trace


def parity_model(name: str, seed: int = 0) -> torch.nn.Module:
    """The base model with QuIC on its default targets (int8 base, head trainable)."""
    model, _ = models.load(name, num_labels=NUM_LABELS, seed=seed)
    return apply_quic(model, QuICConfig(target_modules=models.DEFAULT_TARGETS[name]))


def batches(name: str | torch.nn.Module, steps: int, seed: int = 0,
            shape: tuple[int, int] | None = None) -> list[dict[str, np.ndarray]]:
    """Different data every step (seeded by the step); text batches padded (random lengths, mask 0 at the end).
    `name`: one of quic_edge.models, or a transformers model (its config gives the shapes and label count)."""
    batch_size, seq_len = shape or SHAPES.get(name if isinstance(name, str) else "", (2, 8))
    classes = NUM_LABELS if isinstance(name, str) else None
    return [example_batch(name, batch_size, seq_len, classes, seed=seed + 1000 * step, padded=True)
            for step in range(steps)]


def _copy(tensors: dict[str, Any]) -> Tensors:
    return {n: (t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)).copy() for n, t in tensors.items()}


def eager_trace(model: torch.nn.Module, task: str, data: list[dict[str, np.ndarray]], spec: dict[str, Any]) -> Trace:
    """Losses, gradients at every step and parameters before and after, in PyTorch eager (quic_edge.training.fit),
    with the optimizer entry of the runtime's bundle (`spec`: name, rates, groups)."""
    params = delta_parameters(model)
    trace = Trace(initial=_copy(params))

    def capture(step: int, loss: torch.Tensor) -> None:
        trace.gradients.append({n: p.grad.detach().numpy().copy() for n, p in params.items()})

    trace.losses = fit(model, data, spec, task=task, on_step=capture)
    trace.final = _copy(params)
    return trace


def device_trace(loop: Any, data: list[dict[str, np.ndarray]]) -> Trace:
    trace = Trace(initial=loop.parameters())
    for batch in data:
        trace.losses.append(loop.train_step(batch, capture_gradients=True))
        trace.gradients.append(loop.last_gradients)
    trace.final = loop.parameters()
    return trace


def collect(runtime: str, name: str | torch.nn.Module, steps: int = 20, optimizer: str = "adamw", seed: int = 0,
            work_dir: str | Path | None = None, shape: tuple[int, int] | None = None,
            head_lr: float | None = None) -> ParityRun:
    """Train `steps` steps on both sides from one init and data; both traces. `name`: one of quic_edge.models (QuIC
    on its default targets) or an adapted model (a transformers one, say). head_lr: the head in its own
    learning-rate group (weight decay 0 then, as ONNX Runtime requires for groups)."""
    from quic_edge.export import export_bundle
    from quic_edge.export.common import infer_task
    from quic_edge.runtimes import open_loop

    if isinstance(name, str) and name not in models.MODELS:
        raise ValueError(f"model: must be one of {models.MODELS} or an adapted model, got {name!r}")
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    lr, weight_decay = LR.get(optimizer), WEIGHT_DECAY.get(optimizer)
    if lr is None:
        raise ValueError(f"optimizer: must be one of {sorted(LR)}, got {optimizer!r}")
    if head_lr is not None:
        weight_decay = 0.0
    model = parity_model(name, seed) if isinstance(name, str) else name
    reference = copy.deepcopy(model)
    data = batches(name, steps, seed, shape)
    task = infer_task(model, None)
    classes = NUM_LABELS if isinstance(name, str) else int(model.config.num_labels)
    labels = [f"class{i}" for i in range(classes)] if task == "classification" else None
    with tempfile.TemporaryDirectory(prefix="parity-", dir=work_dir) as tmp:
        manifest = export_bundle(runtime, model, data[0], Path(tmp) / "bundle", optimizer=optimizer, lr=lr,
                                 weight_decay=weight_decay, labels=labels, head_lr=head_lr)
        loop = open_loop(Path(tmp) / "bundle", Path(tmp) / "work")
        device = device_trace(loop, data)
        del loop
    eager = eager_trace(reference, task, data, manifest["optimizer"])
    label = name if isinstance(name, str) else type(name).__name__
    return ParityRun(runtime, label, optimizer, steps, lr, weight_decay, eager, device)


# ---- the verdict -------------------------------------------------------------------------------------------------
def tensor_diff(name: str, reference: np.ndarray | None, other: np.ndarray | None, atol: float, rtol: float) -> dict:
    """One tensor judged alone: shapes equal, no NaN or infinity on either side, max |a - b| <= atol and
    <= rtol * max |a| + NOISE_FLOOR (so an error that is small in absolute terms but large for this tensor fails)."""
    row: dict[str, Any] = {"name": name, "atol": atol, "rtol": rtol}
    if reference is None or other is None:
        return row | {"ok": False, "why": "missing on the " + ("eager" if reference is None else "runtime") + " side"}
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if a.shape != b.shape:
        return row | {"ok": False, "why": f"shape {list(b.shape)} against {list(a.shape)}"}
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return row | {"ok": False, "why": "NaN or infinity"}
    max_abs = float(np.abs(a - b).max()) if a.size else 0.0
    scale = float(np.abs(a).max()) if a.size else 0.0
    ok = max_abs <= atol and max_abs <= rtol * scale + NOISE_FLOOR
    return row | {"ok": ok, "max_abs": max_abs, "scale": scale, "relative": max_abs / scale if scale else 0.0,
                  "why": "" if ok else f"|diff| {max_abs:.3g} with scale {scale:.3g}"}


def compare(reference: Tensors, other: Tensors, atol: float, rtol: float) -> list[dict]:
    """tensor_diff for every name on either side (a name on one side only fails)."""
    return [tensor_diff(n, reference.get(n), other.get(n), atol, rtol) for n in sorted(set(reference) | set(other))]


def judge(run: ParityRun, targets: dict[str, Any] = TARGETS) -> dict[str, Any]:
    """The report: per-step loss and gradient verdicts, per-tensor parameter verdicts and movement, and `within`."""
    rtol, param_tol = targets["rtol"], targets["param"][run.optimizer]
    e, d = run.eager, run.device
    losses = [tensor_diff(f"loss[{s}]", np.array(a), np.array(b), targets["loss"], rtol)
              for s, (a, b) in enumerate(zip(e.losses, d.losses, strict=False))]
    if len(e.losses) != len(d.losses):
        losses.append({"name": "loss count", "ok": False, "why": f"{len(d.losses)} runtime steps, {len(e.losses)} eager"})
    grads = [[row | {"step": s} for row in compare(ge, gd, targets["grad"], rtol)]
             for s, (ge, gd) in enumerate(zip(e.gradients, d.gradients, strict=False))]
    if len(e.gradients) != len(d.gradients) or not grads:
        grads.append([{"name": "gradient steps", "ok": False, "why": "a side recorded no gradients for some step"}])
    params = compare(e.final, d.final, param_tol, rtol)
    moved = []
    for side, trace in (("eager", e), ("runtime", d)):
        for n in sorted(trace.final):
            distance = float(np.abs(trace.final[n].astype(np.float64) - trace.initial.get(n, np.nan)).max())
            needed = targets["moved"] * param_tol
            moved.append({"name": n, "side": side, "moved": distance, "needed": needed,
                          "ok": math.isfinite(distance) and distance > needed})
    failures = [r for r in [*losses, *(r for step in grads for r in step), *params] if not r["ok"]]
    failures += [{"name": f"{m['name']} ({m['side']})", "why": f"moved only {m['moved']:.3g} (needs > {m['needed']:.3g})"}
                 for m in moved if not m["ok"]]
    return {
        "runtime": run.runtime, "model": run.model, "optimizer": run.optimizer, "steps": run.steps, "lr": run.lr,
        "weight_decay": run.weight_decay, "trainable_numbers": int(sum(v.size for v in e.final.values())),
        "targets": {"loss": targets["loss"], "grad": targets["grad"], "param": param_tol, "rtol": rtol,
                    "moved": targets["moved"]},
        "max_abs_loss_diff": _worst(losses), "max_abs_grad_diff": _worst([r for step in grads for r in step]),
        "max_abs_param_diff": _worst(params), "max_relative_param_diff": max((r.get("relative", math.inf) for r in params),
                                                                           default=math.inf),
        "min_moved_over_needed": min((m["moved"] / m["needed"] for m in moved), default=0.0),
        "params": params, "moved": moved, "gradient_steps_checked": len(grads),
        "losses_eager": e.losses, "losses_runtime": d.losses,
        "failures": [{"name": f["name"], "why": f["why"]} for f in failures], "within": not failures,
    }


def _worst(rows: list[dict]) -> float:
    """The largest absolute difference, NaN when any row failed without one (a NaN or shape failure)."""
    if any("max_abs" not in r for r in rows) or not rows:
        return math.nan
    return max(r["max_abs"] for r in rows)


def run_parity(runtime: str, name: str, steps: int = 20, optimizer: str = "adamw", seed: int = 0,
               work_dir: str | Path | None = None) -> dict[str, Any]:
    """collect + judge: the report of one parity run."""
    return judge(collect(runtime, name, steps, optimizer, seed, work_dir))


def within_targets(report: dict[str, Any]) -> bool:
    return bool(report["within"])

"""Parity: the same init, data and optimizer in PyTorch eager and in a device runtime (DESIGN.md section 5).

    from quic_edge.runtimes.parity import run_parity
    report = run_parity("ort", "mlp", steps=20, optimizer="adamw")
    report["max_abs_loss_diff"], report["max_abs_grad_diff"], report["max_abs_param_diff"]

Runtime-agnostic: the bundle comes from the exporter registry (quic_edge.export.export_bundle) and the runtime
is driven through the DeviceLoop interface (train_step, gradients via capture_gradients, parameters), so a
new runtime needs no change here. The eager reference uses torch.optim.SGD / torch.optim.AdamW; the exporters
give the runtime the same semantics (ONNX Runtime's AdamW with adam_mode=0). Both sides run in eval mode
(dropout off), so every step is deterministic. Different data every step (seeded by the step).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quic_edge import models
from quic_edge.config import QuICConfig
from quic_edge.model import apply_quic
from quic_edge.tasks import TASKS, WithLoss, example_batch

# Settings per optimizer: SGD needs a larger rate to move the angles measurably in 20 steps.
LR = {"adamw": 1e-2, "sgd": 0.5}
WEIGHT_DECAY = {"adamw": 0.01, "sgd": 0.0}  # torch's AdamW default; checks the decoupled decay as well
TARGETS = {"loss": 1e-5, "grad": 1e-5, "param": {"sgd": 1e-5, "adamw": 1e-4}}
SHAPES = {"minilm": (8, 64), "llama-tiny": (4, 32), "mlp": (16, 1)}
NUM_LABELS = 3


def parity_model(name: str, seed: int = 0) -> torch.nn.Module:
    """The base model with QuIC on its default targets (int8 base, head trainable)."""
    model, _ = models.load(name, num_labels=NUM_LABELS, seed=seed)
    return apply_quic(model, QuICConfig(target_modules=models.DEFAULT_TARGETS[name]))


def batches(name: str, steps: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    batch_size, seq_len = SHAPES[name]
    return [example_batch(name, batch_size, seq_len, NUM_LABELS, seed=seed + 1000 * step) for step in range(steps)]


def eager_run(model: torch.nn.Module, name: str, data: list[dict[str, np.ndarray]], optimizer: str, lr: float,
              weight_decay: float) -> tuple[list[float], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(losses, gradients at step 1, parameters after the last step) in PyTorch eager."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(params.values(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                                       weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params.values(), lr=lr)
    wrapper = WithLoss(model, TASKS[name]).eval()
    losses, first_grads = [], {}
    for step, batch in enumerate(data):
        loss, _ = wrapper(*[torch.from_numpy(a) for a in batch.values()])
        loss.backward()
        if step == 0:
            first_grads = {n: p.grad.detach().numpy().copy() for n, p in params.items()}
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses, first_grads, {n: p.detach().numpy().copy() for n, p in params.items()}


def runtime_run(loop: Any, data: list[dict[str, np.ndarray]]) -> tuple[list[float], dict[str, np.ndarray], dict[str, np.ndarray]]:
    losses, first_grads = [], {}
    for step, batch in enumerate(data):
        losses.append(loop.train_step(batch, capture_gradients=step == 0))
        if step == 0:
            first_grads = loop.last_gradients
    return losses, first_grads, loop.parameters()


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    if set(a) != set(b):
        raise AssertionError(f"trainable tensors differ: eager {sorted(a)} vs runtime {sorted(b)}")
    return max(float(np.abs(a[n].astype(np.float64) - b[n]).max()) for n in a)


def run_parity(runtime: str, name: str, steps: int = 20, optimizer: str = "adamw", seed: int = 0,
               work_dir: str | Path | None = None) -> dict[str, Any]:
    """Train `steps` steps on both sides from one init and data; the report holds the differences and losses."""
    from quic_edge.export import export_bundle
    from quic_edge.runtimes import open_loop

    if name not in models.MODELS:
        raise ValueError(f"model: must be one of {models.MODELS}, got {name!r}")
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    lr, weight_decay = LR.get(optimizer), WEIGHT_DECAY.get(optimizer)
    if lr is None:
        raise ValueError(f"optimizer: must be one of {sorted(LR)}, got {optimizer!r}")
    model = parity_model(name, seed)
    reference = copy.deepcopy(model)
    data = batches(name, steps, seed)
    labels = [f"class{i}" for i in range(NUM_LABELS)] if TASKS[name] == "classification" else None
    with tempfile.TemporaryDirectory(prefix="parity-", dir=work_dir) as tmp:
        export_bundle(runtime, model, data[0], Path(tmp) / "bundle", optimizer=optimizer, lr=lr,
                      weight_decay=weight_decay, labels=labels)
        loop = open_loop(Path(tmp) / "bundle", Path(tmp) / "work")
        rt_losses, rt_grads, rt_params = runtime_run(loop, data)
        del loop
    ref_losses, ref_grads, ref_params = eager_run(reference, name, data, optimizer, lr, weight_decay)
    return {
        "runtime": runtime, "model": name, "optimizer": optimizer, "steps": steps, "lr": lr,
        "weight_decay": weight_decay, "batch_shape": list(SHAPES[name]),
        "trainable_numbers": int(sum(v.size for v in ref_params.values())),
        "max_abs_loss_diff": float(np.max(np.abs(np.array(ref_losses) - np.array(rt_losses)))),
        "max_abs_grad_diff": _max_diff(ref_grads, rt_grads),
        "max_abs_param_diff": _max_diff(ref_params, rt_params),
        "targets": {"loss": TARGETS["loss"], "grad": TARGETS["grad"], "param": TARGETS["param"][optimizer]},
        "losses_eager": ref_losses, "losses_runtime": rt_losses,
    }


def within_targets(report: dict[str, Any]) -> bool:
    t = report["targets"]
    return (report["max_abs_loss_diff"] <= t["loss"] and report["max_abs_grad_diff"] <= t["grad"]
            and report["max_abs_param_diff"] <= t["param"])

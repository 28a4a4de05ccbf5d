"""The ExecuTorch device loop: the bundle's `.pte` computes loss and gradients; the optimizer runs here.

ExecuTorch ships only SGD. AdamW (torch.optim.AdamW semantics) and SGD are written here on the program's
parameter tensors, which alias the runtime's memory, so an in-place update is what the next step sees.
The program is always loaded from its path: loading from a temporary `bytes` buffer crashes the process
(RUNTIMES.md), so this loop never does. ExecuTorch's Python runtime imports torch (unlike the ORT loop).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from quic_edge.formats.bundle import bundle_file
from quic_edge.runtimes.loop import DeviceLoop

STATE_FILE = "state.safetensors"
PREFIX = "model."  # WithLoss holds the model as .model


class ExecuTorchLoop(DeviceLoop):
    """DeviceLoop on ExecuTorch's training runtime.

    threads: intra-op threads of the runtime's BLAS kernels (torch's OpenMP pool, process-wide); 1 by default: on
    the 2-core machine we measured, two threads spun in OpenMP and made steps slower; 0 leaves torch's default.
    """

    runtime = "executorch"

    def __init__(self, bundle_dir, work_dir, keep: int = 2, threads: int = 1, **verify: Any) -> None:
        self.threads = threads
        super().__init__(bundle_dir, work_dir, keep, **verify)

    @staticmethod
    def load_runtime() -> Any:
        """ExecuTorch's training loader (its Python runtime imports torch)."""
        from executorch.extension.training import _load_for_executorch_for_training

        return _load_for_executorch_for_training

    def _open(self) -> None:
        import torch

        load = self.load_runtime()
        if self.threads:
            torch.set_num_threads(self.threads)
        self._torch = torch
        self._module = load(str(bundle_file(self.bundle_dir, self.manifest, "program")))
        self._names = list(self.manifest["trainable"])
        self._feed_names = [s["name"] for s in self.manifest["inputs"]] + [self.manifest["target"]["name"]]
        self._grads: dict[str, Any] | None = None
        self._adam_step = 0
        self._moments: dict[str, tuple[Any, Any]] = {}
        self._run(self._placeholder_batch())  # the parameter tensors exist only after a first run
        self._grads = None

    def _placeholder_batch(self) -> dict[str, np.ndarray]:
        specs = [*self.manifest["inputs"], self.manifest["target"]]
        return {s["name"]: np.zeros(s["shape"], dtype=s["dtype"]) for s in specs}

    def _run(self, batch: dict[str, np.ndarray]) -> list[Any]:
        feeds = [self._torch.from_numpy(np.ascontiguousarray(batch[n])) for n in self._feed_names]
        outputs = self._module.forward_backward("forward", feeds)
        self._grads = {k[len(PREFIX):]: g for k, g in self._module.named_gradients().items()}
        return outputs

    @property
    def _params(self) -> dict[str, Any]:
        return {k[len(PREFIX):]: p for k, p in self._module.named_parameters().items()}

    # ---- DeviceLoop ---------------------------------------------------------------------------------
    def _forward_backward(self, batch: dict[str, np.ndarray]) -> float:
        return float(self._run(batch)[0])

    def _optimizer_step(self, lr: float) -> None:
        spec = self.manifest["optimizer"]
        params, grads = self._params, self._grads
        with self._torch.no_grad():
            if spec["name"] == "sgd":
                for name, p in params.items():
                    g = grads[name] + spec["weight_decay"] * p if spec["weight_decay"] else grads[name]
                    p.sub_(lr * self.lr_scales[name] * g)
            else:
                self._adamw(params, grads, lr, spec)
        self._grads = None

    def _adamw(self, params: dict[str, Any], grads: dict[str, Any], lr: float, spec: dict[str, Any]) -> None:
        """torch.optim.AdamW's single-tensor update, step for step."""
        beta1, beta2 = spec["betas"]
        self._adam_step += 1
        correction1 = 1 - beta1 ** self._adam_step
        correction2_sqrt = math.sqrt(1 - beta2 ** self._adam_step)
        for name, p in params.items():
            g, rate = grads[name], lr * self.lr_scales[name]
            m, v = self._moments.setdefault(name, (self._torch.zeros_like(p), self._torch.zeros_like(p)))
            p.mul_(1 - rate * spec["weight_decay"])
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / correction2_sqrt).add_(spec["eps"])
            p.addcdiv_(m, denom, value=-rate / correction1)

    def _zero_grad(self) -> None:
        self._grads = None  # each run computes fresh gradients: nothing accumulates

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Outputs of the joint program (its gradients are computed and dropped; parameters do not change)."""
        self.check_batch(batch, with_target=False)
        batch = {**batch, **{k: v for k, v in self._placeholder_batch().items() if k == self.manifest["target"]["name"]}}
        grads = self._grads
        outputs = self._run(batch)
        self._grads = grads
        return outputs[1].numpy().copy()

    def parameters(self) -> dict[str, np.ndarray]:
        return {name: p.detach().numpy().copy() for name, p in self._params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        if self._grads is None:
            return {name: np.zeros(shape, np.float32) for name, shape in self.manifest["trainable"].items()}
        return {name: g.numpy().copy() for name, g in self._grads.items()}

    def _write_parameters(self, tensors: dict[str, np.ndarray]) -> None:
        with self._torch.no_grad():
            for name, p in self._params.items():
                p.copy_(self._torch.from_numpy(tensors[name]))

    def _save_state(self, folder: Path) -> None:
        arrays = {f"param/{k}": v for k, v in self.parameters().items()}
        for name, (m, v) in self._moments.items():
            arrays[f"m/{name}"], arrays[f"v/{name}"] = m.numpy().copy(), v.numpy().copy()
        save_file(arrays, str(folder / STATE_FILE), metadata={"adam_step": json.dumps(self._adam_step)})

    def _load_state(self, folder: Path) -> None:
        from safetensors import safe_open

        path = folder / STATE_FILE
        arrays = load_file(str(path))
        with safe_open(str(path), "np") as handle:
            step = int(json.loads(handle.metadata()["adam_step"]))
        self.load_parameters({k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("param/")})
        self._moments = {
            name: (self._torch.from_numpy(arrays[f"m/{name}"].copy()), self._torch.from_numpy(arrays[f"v/{name}"].copy()))
            for name in self._names if f"m/{name}" in arrays
        }
        self._adam_step = step

    def planned_memory_bytes(self) -> list[int]:
        """The sizes of the program's memory-planned buffers (ExecuTorch's own memory figure), read from the `.pte`.

        The pybindings' MethodMeta does not expose them, so the program's flatbuffer is read (buffer 0 is reserved).
        """
        from executorch.exir._serialize._program import deserialize_pte_binary

        data = bundle_file(self.bundle_dir, self.manifest, "program").read_bytes()
        plans = {plan.name: plan for plan in deserialize_pte_binary(data).program.execution_plan}
        return list(plans["forward"].non_const_buffer_sizes[1:])

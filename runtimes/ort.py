"""The ONNX Runtime device loop: what a phone or a Raspberry Pi runs to train a bundle. Torch-free.

    from quic_edge.runtimes.ort import OrtLoop
    loop = OrtLoop("bundle/", "work/")               # verifies the bundle, resumes the newest good checkpoint
    loss = loop.train_step(batch)                     # batch: numpy arrays named as manifest["inputs"] + target
    loop.save_checkpoint(); loop.export_delta("me.safetensors")

Built on the pybind classes of `onnxruntime.capi._pybind_state` (CheckpointState, Module, Optimizer):
`onnxruntime.training` imports torch, and so does `import onnxruntime` itself where torch is installed (its
package check imports ORTModule). `ort_bindings()` imports the bindings as a device without torch would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from quic_edge.formats.bundle import bundle_file
from quic_edge.formats.optimizer import stored_scales
from quic_edge.runtimes.loop import DeviceLoop

CHECKPOINT_FILE = "checkpoint"


def ort_bindings() -> Any:
    """onnxruntime's pybind module, imported without pulling in torch (as on a device that has none)."""
    if "onnxruntime.capi._pybind_state" in sys.modules or "torch" in sys.modules:
        from onnxruntime.capi import _pybind_state
    else:
        sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` fails: ORT skips its ORTModule check
        try:
            from onnxruntime.capi import _pybind_state
        finally:
            if sys.modules.get("torch", 0) is None:
                del sys.modules["torch"]
            for name in [m for m in sys.modules if m.startswith("onnxruntime.training")]:
                del sys.modules[name]  # half-imported by that check; a later real import starts afresh
    _pybind_state.set_default_logger_severity(3)  # errors only: ORT's warnings are meant for its developers
    return _pybind_state


class OrtLoop(DeviceLoop):
    """DeviceLoop on ONNX Runtime's training API.

    Memory settings (stated with every measurement): `enable_mem_pattern=False` (it saved 60-120 MiB of growth
    after the first step, RUNTIMES.md); `mem_reuse` (default False): ORT's planner lets a tensor take over the
    buffer of one freed earlier, which ties that buffer up from the first tensor's birth to the second's death, across
    the forward-backward gap for tensors remade in the backward pass (QuIC's compound entries: 6 MiB held through the
    peak, found by a malloc trace; off, MiniLM QuIC (1,2) peaked 196 against 215-219 MiB, LoRA r8 199 against
    203-208); `cpu_arena` (default True) keeps ORT's CPU arena allocator, False
    turns it off (lower RSS, slightly more allocation work); `threads` = intra-op threads (0 = ORT's choice);
    `profile` = a file prefix: ORT times every kernel of the training session and writes a JSON trace when the
    session closes (quic_edge.bench.op_profile reads it).
    """

    runtime = "ort"

    def __init__(self, bundle_dir, work_dir, keep: int = 2, threads: int = 0, cpu_arena: bool = True,
                 mem_reuse: bool = False, profile: str | None = None, **verify: Any) -> None:
        self._threads, self._cpu_arena, self._mem_reuse, self._profile = threads, cpu_arena, mem_reuse, profile
        self._session: tuple[Any, Any, Any] | None = None
        super().__init__(bundle_dir, work_dir, keep, **verify)

    load_runtime = staticmethod(ort_bindings)

    # ---- sessions -----------------------------------------------------------------------------------
    def _open(self) -> None:
        """Nothing is loaded yet: resume() loads a checkpoint, or the first use loads the bundle's own."""
        self._ort = self.load_runtime()
        self._trainable = list(self.manifest["trainable"])
        # grouped tensors are stored divided by a factor the graph multiplies back (export/ort_graph.py)
        self._stored = stored_scales(self.manifest["optimizer"], self._trainable)
        self._inputs = [s["name"] for s in self.manifest["inputs"]]
        self._target = self.manifest["target"]
        self._device = self._ort.OrtDevice(self._ort.OrtDevice.cpu(), self._ort.OrtDevice.default_memory(), 0)
        self._with_eval = False

    def _options(self, profile: bool = False) -> Any:
        C = self._ort
        options = C.SessionOptions()
        options.enable_mem_pattern = False
        options.enable_cpu_mem_arena = self._cpu_arena
        options.enable_mem_reuse = self._mem_reuse
        options.intra_op_num_threads = self._threads
        if profile and self._profile:
            options.enable_profiling = True
            options.profile_file_prefix = self._profile
        for key, value in self.manifest.get("session_options", {}).items():  # e.g. what recomputed tensors need
            options.add_session_config_entry(key, value)
        return options

    def memory_settings(self) -> dict[str, Any]:
        """The allocator settings of this loop's sessions, read back from the options they are built with."""
        options = self._options()
        return {"cpu_arena": options.enable_cpu_mem_arena, "enable_mem_pattern": options.enable_mem_pattern,
                "enable_mem_reuse": options.enable_mem_reuse}

    def _path(self, role: str) -> str:
        return str(bundle_file(self.bundle_dir, self.manifest, role))

    def _build(self, checkpoint: Path, with_eval: bool = False) -> tuple[Any, Any, Any]:
        """Training session and optimizer on a checkpoint. The eval graph is loaded only when first needed
        (`logits`): a session that only trains does not hold it (about 5 MiB for MiniLM)."""
        C = self._ort
        self._session = None  # release the old session's memory before loading the new one
        state = C.load_checkpoint(str(checkpoint))
        eval_model = self._path("eval_model") if with_eval else None
        module = C.Module(self._path("training_model"), state, eval_model, self._device, self._options(profile=True))
        optimizer = C.Optimizer(self._path("optimizer_model"), state, self._device, self._options())
        self._with_eval = with_eval
        return state, module, optimizer

    def _ensure_eval(self) -> None:
        """Reload the sessions with the eval graph, through a checkpoint of the current state: a second module on a
        live state would leave the optimizer reading the old module's gradients."""
        if self._with_eval:
            return
        switch = self.work_dir / f".eval-switch-{os.getpid()}"
        self._ort.save_checkpoint(self.session[0], str(switch), True)
        try:
            self._session = self._build(switch, with_eval=True)
        finally:
            switch.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the sessions (ORT writes the profile, when asked for, as the training session closes); the next
        use loads the bundle's checkpoint again."""
        self._session = None

    @property
    def session(self) -> tuple[Any, Any, Any]:
        if self._session is None:
            self._session = self._build(bundle_file(self.bundle_dir, self.manifest, "checkpoint"))
        return self._session

    def _feeds(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.ascontiguousarray(batch[name]) for name in (*self._inputs, self._target["name"])]

    # ---- DeviceLoop ---------------------------------------------------------------------------------
    def _forward_backward(self, batch: dict[str, np.ndarray]) -> float:
        _, module, _ = self.session
        fetches = self._ort.OrtValueVector()
        module.train_step(self._feeds(batch), fetches)
        return float(fetches[0].numpy())

    def _optimizer_step(self, lr: float) -> None:
        _, module, optimizer = self.session
        optimizer.set_learning_rate(float(lr))
        optimizer.optimizer_step()
        module.lazy_reset_grad()

    def _zero_grad(self) -> None:
        self.session[1].lazy_reset_grad()

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        self.check_batch(batch, with_target=False)
        self._ensure_eval()
        batch = dict(batch)  # the eval model also computes the loss: feed a placeholder target
        batch[self._target["name"]] = np.zeros(self._target["shape"], dtype=self._target["dtype"])
        fetches = self._ort.OrtValueVector()
        self.session[1].eval_step(self._feeds(batch), fetches)
        return fetches[1].numpy()

    def parameters(self) -> dict[str, np.ndarray]:
        state = self.session[0]
        return {name: np.array(state.get_parameter(name).data.numpy()) * np.float32(self._stored[name])
                for name in self._trainable}

    def _write_parameters(self, tensors: dict[str, np.ndarray]) -> None:
        C, state = self._ort, self.session[0]
        for name, array in tensors.items():
            stored = np.ascontiguousarray(array / np.float32(self._stored[name]), dtype=np.float32)
            state.copy_parameter_from(name, C.OrtValue.ortvalue_from_numpy(stored, self._device))  # `stored` lives here

    def gradients(self) -> dict[str, np.ndarray]:
        state = self.session[0]
        grads = {}
        for name in self._trainable:
            grad = state.get_parameter(name).grad
            grads[name] = (np.array(grad.numpy()) / np.float32(self._stored[name]) if grad.has_value()
                           else np.zeros(self.manifest["trainable"][name], np.float32))
        return grads

    def _save_state(self, folder: Path) -> None:
        self._ort.save_checkpoint(self.session[0], str(folder / CHECKPOINT_FILE), True)  # with the optimizer state

    def _load_state(self, folder: Path) -> None:
        path = folder / CHECKPOINT_FILE
        if not path.is_file():
            raise ValueError(f"{path} is missing")
        self._session = self._build(path, with_eval=self._with_eval)

"""The device loop every runtime shares: verify, resume, train, checkpoint atomically, evaluate, export.

A runtime subclasses DeviceLoop and implements the few methods marked "runtime-specific". Torch-free:
this is what a phone or a Raspberry Pi runs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quic_edge.atomic import atomic_write_bytes, fsync_dir
from quic_edge.data import Example, batches, encode_texts, label_ids
from quic_edge.delta import write_delta_file
from quic_edge.export.bundle import BundleError, bundle_file, sha256_file, verify_bundle

CHECKPOINT_PREFIX = "ckpt-"
CHECKPOINT_STATE = "state.json"

Schedule = Callable[[int], float]  # step (0-based) -> learning-rate multiplier


class CheckpointError(RuntimeError):
    pass


@dataclass
class TrainReport:
    losses: list[float] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)  # steps whose loss was NaN or infinite
    seconds: float = 0.0
    steps: int = 0


class DeviceLoop(ABC):
    """Train the trainable tensors of a bundle on one person's data, on the device."""

    runtime: str = ""

    def __init__(self, bundle_dir: str | os.PathLike, work_dir: str | os.PathLike, keep: int = 2) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest = verify_bundle(self.bundle_dir)
        if self.manifest.get("runtime") != self.runtime:
            raise BundleError(
                f"{bundle_dir} is a {self.manifest.get('runtime')} bundle; this loop runs {self.runtime} bundles"
            )
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.keep = max(1, keep)
        self.step = 0
        self.last_gradients: dict[str, np.ndarray] = {}
        self.labels: list[str] = list(self.manifest.get("labels") or [])
        self._open()
        self.resume()

    # ---- runtime-specific -------------------------------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Load the runtime's files from the bundle (initial parameters and optimizer state)."""

    @abstractmethod
    def _forward_backward(self, batch: dict[str, np.ndarray]) -> float:
        """Loss of one batch; gradients accumulate in the runtime."""

    @abstractmethod
    def _optimizer_step(self, lr: float) -> None:
        """Apply the optimizer with this learning rate and zero the gradients."""

    @abstractmethod
    def _zero_grad(self) -> None: ...

    @abstractmethod
    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Evaluation-mode outputs for one batch."""

    @abstractmethod
    def parameters(self) -> dict[str, np.ndarray]:
        """The trainable tensors by their model names (copies)."""

    @abstractmethod
    def _write_parameters(self, tensors: dict[str, np.ndarray]) -> None:
        """Overwrite the trainable tensors in the runtime (names and shapes already checked)."""

    @abstractmethod
    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients of the trainable tensors after `_forward_backward` (copies)."""

    @abstractmethod
    def _save_state(self, folder: Path) -> None:
        """Write parameters and optimizer state into `folder` (a fresh temporary folder)."""

    @abstractmethod
    def _load_state(self, folder: Path) -> None:
        """Read what `_save_state` wrote; raise on anything unreadable."""

    # ---- shared -------------------------------------------------------------------------------------
    @property
    def base_lr(self) -> float:
        return float(self.manifest["optimizer"]["lr"])

    def train_step(self, batch: dict[str, np.ndarray], lr: float | None = None, capture_gradients: bool = False) -> float:
        """One step; a NaN or infinite loss skips the update (the returned loss says so).

        capture_gradients: keep this step's gradients in `last_gradients` (before the optimizer consumes them).
        """
        self.check_batch(batch, with_target=True)
        loss = self._forward_backward(batch)
        if capture_gradients:
            self.last_gradients = self.gradients()
        if math.isfinite(loss):
            self._optimizer_step(self.base_lr if lr is None else lr)
        else:
            self._zero_grad()
        self.step += 1
        return loss

    def check_batch(self, batch: dict[str, np.ndarray], with_target: bool) -> None:
        """Names, shapes and dtypes as the manifest declares them; a clear error otherwise."""
        specs = list(self.manifest["inputs"]) + ([self.manifest["target"]] if with_target else [])
        expected = {s["name"] for s in specs}
        if set(batch) != expected:
            raise ValueError(f"batch inputs {sorted(batch)} do not match the bundle's inputs {sorted(expected)}")
        for spec in specs:
            array = batch[spec["name"]]
            if not isinstance(array, np.ndarray):
                raise ValueError(f"input {spec['name']}: give a numpy array, got {type(array).__name__}")
            if list(array.shape) != list(spec["shape"]):
                raise ValueError(f"input {spec['name']}: shape {list(array.shape)}, the bundle expects {spec['shape']}")
            if str(array.dtype) != spec["dtype"]:
                raise ValueError(f"input {spec['name']}: dtype {array.dtype}, the bundle expects {spec['dtype']}")

    def load_parameters(self, tensors: dict[str, np.ndarray]) -> None:
        """Set the trainable tensors (a delta's or a federated global's); exact names and shapes required."""
        current = self.parameters()
        if set(current) != set(tensors):
            missing, extra = sorted(set(current) - set(tensors)), sorted(set(tensors) - set(current))
            raise ValueError(f"the tensors do not match this bundle (missing {missing[:3]}, unexpected {extra[:3]})")
        for name, value in current.items():
            if tuple(np.shape(tensors[name])) != value.shape:
                raise ValueError(f"{name}: shape {np.shape(tensors[name])}, the bundle has {value.shape}")
            if not np.isfinite(tensors[name]).all():
                raise ValueError(f"{name}: holds NaN or infinite values")
        self._write_parameters({name: np.ascontiguousarray(tensors[name], dtype=np.float32) for name in current})

    # ---- text examples ----------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.manifest["inputs"][0]["shape"][0])

    def encode(self, examples: list[Example]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Tokenize examples as the bundle's tokenizer does: (inputs [n, seq], label ids [n])."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(bundle_file(self.bundle_dir, self.manifest, "tokenizer")))
        seq_len = int(self.manifest["inputs"][0]["shape"][1])
        return encode_texts(tokenizer, [e.text for e in examples], seq_len), label_ids(examples, self.labels)

    def fit(
        self, examples: list[Example], epochs: int = 1, seed: int = 0, schedule: Schedule | None = None,
        checkpoint_every: int = 0, progress: bool = True, on_step: Callable[[int, float], None] | None = None,
    ) -> TrainReport:
        """Train over the examples in shuffled fixed-size batches; checkpoints atomically as it goes."""
        inputs, targets = self.encode(examples)
        if len(targets) < self.batch_size:
            raise ValueError(f"{len(targets)} examples are fewer than one batch of {self.batch_size}")
        rng = np.random.default_rng(seed)
        per_epoch = len(targets) // self.batch_size
        total = per_epoch * epochs
        report, start = TrainReport(), time.perf_counter()
        bar = _progress(total, progress, f"training ({self.runtime})")
        target_name = self.manifest["target"]["name"]
        for _ in range(epochs):
            for index in batches(len(targets), self.batch_size, rng):
                batch = {name: array[index] for name, array in inputs.items()}
                batch[target_name] = targets[index]
                lr = self.base_lr * (schedule(report.steps) if schedule else 1.0)
                loss = self.train_step(batch, lr)
                if not math.isfinite(loss):
                    report.skipped_steps.append(self.step)
                report.losses.append(loss)
                report.steps += 1
                if on_step:
                    on_step(self.step, loss)
                if checkpoint_every and self.step % checkpoint_every == 0:
                    self.save_checkpoint()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
        bar.close()
        report.seconds = time.perf_counter() - start
        return report

    def evaluate(self, examples: list[Example]) -> float:
        """Accuracy over the examples (the last partial batch padded and its padding ignored)."""
        inputs, targets = self.encode(examples)
        correct = 0
        for index in _padded_batches(len(targets), self.batch_size):
            logits = self.logits({name: array[index] for name, array in inputs.items()})
            real = min(self.batch_size, len(targets) - int(index[0]))
            correct += int((logits[:real].argmax(-1) == targets[index][:real]).sum())
        return correct / len(targets)

    # ---- checkpoints ------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    def save_checkpoint(self) -> Path:
        """Write a new checkpoint folder atomically (temp folder, fsync, rename); keep the newest `keep`."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir / f"{CHECKPOINT_PREFIX}{self.step:08d}"
        tmp = self.checkpoint_dir / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self._save_state(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        for p in tmp.iterdir():
            _fsync_file(p)
        state = {"step": self.step, "runtime": self.runtime, "sha256": files,
                 "base_fingerprint": self.manifest.get("base_fingerprint")}
        atomic_write_bytes(tmp / CHECKPOINT_STATE, json.dumps(state).encode())
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
        fsync_dir(self.checkpoint_dir)
        self._prune()
        return final

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint folders, newest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = [p for p in self.checkpoint_dir.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def resume(self) -> Path | None:
        """Load the newest checkpoint that verifies; a torn or corrupt one is skipped (and kept for a look)."""
        for folder in self.checkpoints():
            try:
                state = json.loads((folder / CHECKPOINT_STATE).read_text())
                if state.get("base_fingerprint") != self.manifest.get("base_fingerprint"):
                    raise CheckpointError("it belongs to another bundle")
                for name, expected in state["sha256"].items():
                    if sha256_file(folder / name) != expected:
                        raise CheckpointError(f"{name} does not match its sha256")
                self._load_state(folder)
            except (OSError, ValueError, KeyError, RuntimeError) as err:
                print(f"warning: skipping checkpoint {folder.name}: {err}")
                continue
            self.step = int(state["step"])
            return folder
        return None

    def _prune(self) -> None:
        for old in self.checkpoints()[self.keep :]:
            _discard(old)
        for tmp in self.checkpoint_dir.glob(".tmp-*"):
            if not tmp.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(tmp, ignore_errors=True)
        for trash in self.checkpoint_dir.glob(".trash-*"):  # left by a process killed while deleting
            shutil.rmtree(trash, ignore_errors=True)

    # ---- delta ------------------------------------------------------------------------------------
    def export_delta(self, path: str | os.PathLike) -> Path:
        """The personal delta (trained angles and head) in the format quic_edge.load_delta reads."""
        m = self.manifest
        return write_delta_file(
            path, self.parameters(), base_fingerprint=m["base_fingerprint"],
            config_json=json.dumps(m["config"], sort_keys=True),
            quantize=m.get("quantize"), base_model=m.get("model", ""),
        )


def _padded_batches(n: int, batch_size: int) -> Iterable[np.ndarray]:
    for start in range(0, n, batch_size):
        index = np.arange(start, start + batch_size)
        yield np.minimum(index, n - 1)


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder: renamed away first (atomic), so a kill mid-delete never leaves a torn ckpt-*."""
    trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="step")

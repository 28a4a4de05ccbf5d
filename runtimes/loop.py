"""The device loop every runtime shares: verify, resume, train, checkpoint atomically, evaluate, export.

A runtime subclasses DeviceLoop and implements the few methods marked "runtime-specific". Torch-free:
this is what a phone or a Raspberry Pi runs.
"""

from __future__ import annotations

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

from quic_edge.data import Example, batches, encode_examples, label_ids
from quic_edge.formats.atomic import atomic_write_bytes, fsync_dir
from quic_edge.formats.bundle import BundleError, bundle_file, sha256_file, verify_bundle
from quic_edge.formats.checkpoint import STATE_FILE as CHECKPOINT_STATE
from quic_edge.formats.checkpoint import CheckpointStateError, read_state, state_bytes
from quic_edge.formats.delta_file import write_delta_file
from quic_edge.formats.identity import identity_mismatch, identity_of
from quic_edge.formats.optimizer import lr_scales
from quic_edge.images import ImageExample, encode_images

CHECKPOINT_PREFIX = "ckpt-"
UNUSABLE_PREFIX = "unusable-"  # where start_over moves checkpoints that could not be resumed (kept, never deleted)

Schedule = Callable[[int], float]  # step (0-based) -> learning-rate multiplier


def linear_schedule(warmup: int, total: int) -> Schedule:
    """Multiplier per step: linear warm-up over `warmup` steps, then linear decay to 0 at `total`."""
    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return schedule


class CheckpointError(ValueError):
    """No checkpoint in the work folder can be used; the message names the folder and how to start over."""


class BatchError(ValueError):
    """A batch the bundle cannot train on (names, shapes, dtypes or values); nothing was trained."""


@dataclass
class TrainReport:
    losses: list[float] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)  # steps whose loss was NaN or infinite
    seconds: float = 0.0
    steps: int = 0


class DeviceLoop(ABC):
    """Train the trainable tensors of a bundle on one person's data, on the device."""

    runtime: str = ""

    def __init__(self, bundle_dir: str | os.PathLike, work_dir: str | os.PathLike, keep: int = 2, *,
                 expected_digest: str | None = None, trusted_keys: list[bytes] | None = None,
                 start_over: bool = False) -> None:
        """Verify the bundle (every byte; `expected_digest` pins it, `trusted_keys` require a publisher's signature),
        then resume from the newest good checkpoint in `work_dir`. When checkpoints exist but none is usable the loop
        refuses to start (CheckpointError) unless start_over=True, which moves them aside and starts from the bundle."""
        self.bundle_dir = Path(bundle_dir)
        self.manifest = verify_bundle(self.bundle_dir, expected_digest, trusted_keys)
        if self.manifest.get("runtime") != self.runtime:
            raise BundleError(
                f"{bundle_dir} is a {self.manifest.get('runtime')} bundle; this loop runs {self.runtime} bundles"
            )
        self.identity = identity_of(self.manifest)
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.keep = max(1, keep)
        self.step = 0
        self.last_gradients: dict[str, np.ndarray] = {}
        self.labels: list[str] = list(self.manifest.get("labels") or [])
        self.lr_scales = lr_scales(self.manifest["optimizer"], self.manifest["trainable"])
        self._open()
        self.resume(start_over)

    # ---- runtime-specific -------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def load_runtime() -> Any:
        """Load the runtime's own libraries, no bundle yet (what a process holds before it opens one); returns the
        runtime's entry module or function."""

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
        """Names, shapes, dtypes and values as the manifest declares them (integer ranges, finite floats); a BatchError
        naming the input otherwise. Out-of-range ids would make the runtime read past its tables."""
        specs = list(self.manifest["inputs"]) + ([self.manifest["target"]] if with_target else [])
        expected = {s["name"] for s in specs}
        if not isinstance(batch, dict) or set(batch) != expected:
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise BatchError(f"batch inputs {got} do not match the bundle's inputs {sorted(expected)}")
        for spec in specs:
            array = batch[spec["name"]]
            if not isinstance(array, np.ndarray):
                raise BatchError(f"input {spec['name']}: give a numpy array, got {type(array).__name__}")
            if list(array.shape) != list(spec["shape"]):
                raise BatchError(f"input {spec['name']}: shape {list(array.shape)}, the bundle expects {spec['shape']}")
            if str(array.dtype) != spec["dtype"]:
                raise BatchError(f"input {spec['name']}: dtype {array.dtype}, the bundle expects {spec['dtype']}")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise BatchError(f"input {spec['name']}: holds NaN or infinite values")
            bounds = spec.get("range")
            if bounds is not None and array.size:
                values = array[array != spec["ignore_index"]] if "ignore_index" in spec else array
                if values.size and (values.min() < bounds[0] or values.max() > bounds[1]):
                    what = "label ids" if spec is self.manifest.get("target") and self.labels else "values"
                    raise BatchError(f"input {spec['name']}: {what} must be in {bounds[0]}..{bounds[1]}, got "
                                     f"{values.min()}..{values.max()}")

    def load_parameters(self, tensors: dict[str, np.ndarray]) -> None:
        """Set the trainable tensors (a delta's or a federated global's); exact names and shapes required."""
        current = self.parameters()
        if set(current) != set(tensors):
            missing, extra = sorted(set(current) - set(tensors)), sorted(set(tensors) - set(current))
            raise ValueError(f"the tensors do not match this bundle (missing {missing[:3]}, unexpected {extra[:3]})")
        for name, value in current.items():
            if tuple(np.shape(tensors[name])) != value.shape:
                raise ValueError(f"{name}: shape {np.shape(tensors[name])}, the bundle has {value.shape}")
            if not np.issubdtype(np.asarray(tensors[name]).dtype, np.number) or not np.isfinite(tensors[name]).all():
                raise ValueError(f"{name}: holds NaN or infinite values (or is not numeric)")
        self._write_parameters({name: np.ascontiguousarray(tensors[name], dtype=np.float32) for name in current})

    # ---- text examples ----------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.manifest["inputs"][0]["shape"][0])

    def encode(self, examples: list[Example] | list[ImageExample]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(inputs, label ids [n]): text tokenized as the bundle's tokenizer does ([n, seq]); images of a vision
        bundle preprocessed as its manifest says ([n, C, size, size])."""
        if "preprocessing" in self.manifest:
            pixels = encode_images(examples, self.manifest["preprocessing"])
            return {self.manifest["inputs"][0]["name"]: pixels}, label_ids(examples, self.labels)
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(bundle_file(self.bundle_dir, self.manifest, "tokenizer")))
        seq_len = int(self.manifest["inputs"][0]["shape"][1])
        return encode_examples(tokenizer, examples, self.labels, seq_len)

    def steps_for(self, examples: int, epochs: int) -> int:
        """The steps fit takes over `examples` examples for `epochs` epochs (full batches only: the rest is left)."""
        return examples // self.batch_size * epochs

    def fit(
        self, examples: list[Example], epochs: int = 1, seed: int = 0, schedule: Schedule | None = None,
        checkpoint_every: int = 0, progress: bool = True, on_step: Callable[[int, float], None] | None = None,
    ) -> TrainReport:
        """Train over the examples in shuffled fixed-size batches; checkpoints atomically as it goes."""
        inputs, targets = self.encode(examples)
        if len(targets) < self.batch_size:
            raise ValueError(f"{len(targets)} examples are fewer than one batch of {self.batch_size}")
        rng = np.random.default_rng(seed)
        total = self.steps_for(len(targets), epochs)
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
        """Write a new checkpoint folder atomically (temp folder, fsync, rename); keep the newest `keep`. A failure on
        the way (a full disk) removes the temporary folder and raises; the previous checkpoints stay as they were."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir / f"{CHECKPOINT_PREFIX}{self.step:08d}"
        tmp = self.checkpoint_dir / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            self._save_state(tmp)
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
            for p in tmp.iterdir():
                _fsync_file(p)
            atomic_write_bytes(tmp / CHECKPOINT_STATE, state_bytes(self.step, self.runtime, files, self.identity))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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

    def resume(self, start_over: bool = False) -> Path | None:
        """Load the newest checkpoint that verifies; a torn or corrupt one is skipped with a warning (and kept).

        If checkpoints exist and none can be used, progress would be lost silently by starting again: CheckpointError
        says so, unless start_over=True, which moves them to checkpoints/unusable-*/ and starts from the bundle."""
        found, reasons = self.checkpoints(), []
        for folder in found:
            try:
                state = self._verified_state(folder)
                self._load_state(folder)
            except (OSError, ValueError, KeyError, RuntimeError) as err:
                reasons.append(f"{folder.name}: {err}")
                print(f"warning: skipping checkpoint {folder.name}: {err}")
                continue
            self.step = int(state["step"])
            return folder
        if found and not start_over:
            raise CheckpointError(
                f"no checkpoint in {self.checkpoint_dir} can be resumed ({'; '.join(reasons)[:600]}); nothing was "
                "changed. To start over from the bundle's initial state (the unusable checkpoints are kept aside), pass "
                "start_over=True (quic-edge train --start-over)"
            )
        if found:
            aside = self.checkpoint_dir / f"{UNUSABLE_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            aside.mkdir()
            for folder in found:
                os.replace(folder, aside / folder.name)
            fsync_dir(self.checkpoint_dir)
            print(f"warning: starting over; the unusable checkpoints are kept in {aside}")
        return None

    def _verified_state(self, folder: Path) -> dict[str, Any]:
        state = read_state(folder / CHECKPOINT_STATE)
        if state["runtime"] != self.runtime:
            raise CheckpointStateError(f"it is a {state['runtime']} checkpoint")
        reason = identity_mismatch(self.identity, identity_of(state))
        if reason:
            raise CheckpointStateError(f"it belongs to another bundle ({reason})")
        for name, expected in state["sha256"].items():
            if sha256_file(folder / name) != expected:
                raise CheckpointStateError(f"{name} does not match its sha256")
        return state

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
        return write_delta_file(path, self.parameters(), self.identity, self.manifest.get("model", ""))


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

"""Training bundles: a directory a device app loads as it is, described by `manifest.json`, every byte verified.

Integrity, from the root down: `manifest.sha256` holds the sha256 of manifest.json's exact bytes; the manifest holds
the sha256 of every other file. `verify_bundle` checks the root first, then the manifest's fields (a schema with
messages that name the field), then every file. Optional: `expected_digest` pins the root (a publisher ships the
bundle's digest with the app, so even a consistent edit of manifest and root is caught), and `trusted_keys` require
an Ed25519 signature over the root (`manifest.sig`, written by `write_manifest(..., signing_key=...)`).

Torch-free: device loops verify bundles with this module. The Android app reads the same field names
(android_demo/app/src/main/java/dev/quicedge/demo/BundleFields.kt; tests check that they agree).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from .atomic import atomic_write_bytes
from .identity import IdentityError, identity_of

MANIFEST = "manifest.json"
ROOT_DIGEST = "manifest.sha256"
SIGNATURE = "manifest.sig"
BUNDLE_FORMAT = "quic-edge-bundle"
BUNDLE_FORMAT_VERSION = 2
# The roles of files in a bundle (keys of manifest["files"]); a runtime uses those it needs.
FILE_ROLES = (
    "training_model", "eval_model", "optimizer_model", "checkpoint",  # ONNX Runtime
    "program", "program_data",  # ExecuTorch
    "tokenizer", "labels",
)
RUNTIMES = ("ort", "executorch")
TASKS = ("classification", "causal-lm")
DTYPES = ("int64", "float32")
OPTIMIZERS = ("adamw", "sgd")
MAX_MANIFEST_BYTES = 16 * 2**20


class BundleError(ValueError):
    """A bundle that must not be loaded; the message says what is wrong and what to do."""


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_path(root: str | os.PathLike, relative: str) -> Path:
    """`root / relative`, refusing absolute paths, '..' and links that lead outside the bundle."""
    if not isinstance(relative, str):
        raise BundleError(f"bundle file path {relative!r} is not a string; re-export the bundle")
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative or "\x00" in relative:
        raise BundleError(f"bundle file path {relative!r} escapes the bundle directory; re-export the bundle")
    root = Path(root).resolve()
    full = (root / pure).resolve()
    if root != full and root not in full.parents:
        raise BundleError(f"bundle file path {relative!r} resolves outside the bundle ({full}); re-export the bundle")
    return full


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The canonical bytes of a manifest (what the root digest and the signature cover)."""
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


def write_manifest(bundle_dir: str | os.PathLike, manifest: dict[str, Any], signing_key: bytes | None = None) -> dict[str, Any]:
    """Fill in format and the sha256 of every file in manifest['files'], write manifest.json, its root digest and,
    with `signing_key` (a PEM Ed25519 private key), its signature. Returns the manifest as written."""
    bundle_dir = Path(bundle_dir)
    manifest = dict(manifest)
    manifest["format"] = BUNDLE_FORMAT
    manifest["format_version"] = BUNDLE_FORMAT_VERSION
    unknown = set(manifest.get("files", {})) - set(FILE_ROLES)
    if unknown:
        raise ValueError(f"manifest files: unknown roles {sorted(unknown)}; known roles {FILE_ROLES}")
    manifest["sha256"] = {
        rel: sha256_file(safe_path(bundle_dir, rel)) for rel in sorted(set(manifest["files"].values()))
    }
    check_manifest(manifest, MANIFEST)
    data = manifest_bytes(manifest)
    atomic_write_bytes(bundle_dir / MANIFEST, data)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(bundle_dir / ROOT_DIGEST, (digest + "\n").encode())
    if signing_key is not None:
        from .signing import sign

        atomic_write_bytes(bundle_dir / SIGNATURE, sign(signing_key, digest))
    elif (bundle_dir / SIGNATURE).exists():
        (bundle_dir / SIGNATURE).unlink()  # a stale signature of another manifest would only confuse
    return manifest


def bundle_digest(bundle_dir: str | os.PathLike) -> str:
    """The bundle's root digest (sha256 of manifest.json), checked against manifest.sha256."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle: {MANIFEST} is missing; export one with `quic-edge export`")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is {path.stat().st_size:,} bytes, too large for a manifest; re-export the bundle")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    root = bundle_dir / ROOT_DIGEST
    if not root.is_file():
        raise BundleError(f"{bundle_dir}: {ROOT_DIGEST} is missing, so the manifest cannot be verified; copy the whole "
                          "bundle again (or re-export it with this quic-edge)")
    recorded = root.read_bytes()[:200].decode("ascii", errors="replace").strip()
    if recorded != digest:
        raise BundleError(f"{path} was altered after export (its sha256 is not the one in {ROOT_DIGEST}); copy the "
                          "bundle again from its publisher")
    return digest


def read_manifest(
    bundle_dir: str | os.PathLike, expected_digest: str | None = None, trusted_keys: Sequence[bytes] | None = None
) -> dict[str, Any]:
    """The manifest, after its root digest (and, when given, the pinned digest and a trusted signature) and its fields
    are checked. Files are not read: verify_bundle does that."""
    bundle_dir = Path(bundle_dir)
    digest = bundle_digest(bundle_dir)
    if expected_digest is not None and digest != expected_digest.strip().lower():
        raise BundleError(f"{bundle_dir} is not the bundle this app expects (digest {digest[:16]}..., expected "
                          f"{expected_digest[:16]}...); install the bundle its publisher released")
    if trusted_keys is not None:
        from .signing import verify_signature

        verify_signature(bundle_dir / SIGNATURE, digest, trusted_keys)
    path = bundle_dir / MANIFEST
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BundleError(f"{path} is not valid JSON ({err}); re-export the bundle") from None
    check_manifest(manifest, str(path))
    return manifest


def verify_bundle(
    bundle_dir: str | os.PathLike, expected_digest: str | None = None, trusted_keys: Sequence[bytes] | None = None
) -> dict[str, Any]:
    """Read and check the manifest (read_manifest), then every file's sha256; returns the manifest."""
    manifest = read_manifest(bundle_dir, expected_digest, trusted_keys)
    for rel, expected in manifest["sha256"].items():
        path = safe_path(bundle_dir, rel)
        if not path.is_file():
            raise BundleError(f"bundle file {rel} is missing from {bundle_dir}; copy the whole bundle again")
        if sha256_file(path) != expected:
            raise BundleError(f"bundle file {rel} is altered or corrupt (sha256 mismatch); copy the bundle again")
    return manifest


def bundle_file(bundle_dir: str | os.PathLike, manifest: dict[str, Any], role: str) -> Path:
    """The path of the file that plays `role` (see FILE_ROLES)."""
    rel = manifest.get("files", {}).get(role)
    if rel is None:
        raise BundleError(f"this {manifest.get('runtime')} bundle has no {role} file; re-export it")
    return safe_path(bundle_dir, rel)


# ---- the manifest's fields ------------------------------------------------------------------------------------
def check_manifest(manifest: Any, where: str) -> None:
    """Every field a device loop reads, with its type and range; a BundleError names the first bad field."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{where} is not a JSON object; re-export the bundle")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where} is not a quic-edge bundle manifest (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{where}: format_version must be a positive integer, got {version!r}; re-export the bundle")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{where} has bundle format {version}; this quic-edge reads format {BUNDLE_FORMAT_VERSION} "
                          "and older: upgrade quic-edge on the device")
    if version < BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{where} has bundle format {version} (quic-edge 0.1), without a root digest or identity; "
                          "re-export the bundle with this quic-edge")
    field = _FieldReader(manifest, where)
    field.choice("runtime", RUNTIMES)
    field.choice("task", TASKS)
    field.text("model")
    try:
        identity_of(manifest)
    except IdentityError as err:
        raise BundleError(f"{where}: {err}; re-export the bundle") from None
    labels = manifest.get("labels")
    if labels is not None and (not isinstance(labels, list) or not labels or len(set(map(str, labels))) != len(labels)
                               or not all(isinstance(x, str) and x for x in labels)):
        raise BundleError(f"{where}: labels must be null or a list of distinct non-empty strings")
    inputs = manifest.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BundleError(f"{where}: inputs must be a non-empty list of tensor specs")
    for i, spec in enumerate(inputs):
        _check_spec(spec, f"{where}: inputs[{i}]")
    _check_spec(manifest.get("target"), f"{where}: target")
    if "preprocessing" in manifest:
        _check_preprocessing(manifest["preprocessing"], inputs[0], f"{where}: preprocessing")
    trainable = manifest.get("trainable")
    if not isinstance(trainable, dict) or not trainable:
        raise BundleError(f"{where}: trainable must map tensor names to shapes")
    for name, shape in trainable.items():
        _check_shape(shape, f"{where}: trainable[{name!r}]")
    _check_optimizer(manifest.get("optimizer"), set(trainable), f"{where}: optimizer")
    session = manifest.get("session_options", {})
    if not isinstance(session, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in session.items()):
        raise BundleError(f"{where}: session_options must map strings to strings")
    files, sums = manifest.get("files"), manifest.get("sha256")
    if not isinstance(files, dict) or not isinstance(sums, dict):
        raise BundleError(f"{where}: files and sha256 must be objects")
    for role, rel in files.items():
        if role not in FILE_ROLES:
            raise BundleError(f"{where}: files has an unknown role {role!r}; known roles {FILE_ROLES}")
        if not isinstance(rel, str) or rel not in sums:
            raise BundleError(f"{where}: files lists {role} = {rel!r} without a sha256; re-export the bundle")
    for rel, digest in sums.items():
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BundleError(f"{where}: sha256[{rel!r}] is not a sha256 hex digest")


class _FieldReader:
    def __init__(self, manifest: dict[str, Any], where: str) -> None:
        self.manifest, self.where = manifest, where

    def choice(self, key: str, allowed: tuple[str, ...]) -> None:
        if self.manifest.get(key) not in allowed:
            raise BundleError(f"{self.where}: {key} must be one of {allowed}, got {self.manifest.get(key)!r}")

    def text(self, key: str) -> None:
        if not isinstance(self.manifest.get(key), str):
            raise BundleError(f"{self.where}: {key} must be a string, got {self.manifest.get(key)!r}")


def _check_shape(shape: Any, where: str) -> None:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BundleError(f"{where}: a shape must be a list of non-negative integers, got {shape!r}")


def _check_spec(spec: Any, where: str) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise BundleError(f"{where} must be an object with a name, shape and dtype")
    _check_shape(spec.get("shape"), f"{where} ({spec['name']})")
    if spec.get("dtype") not in DTYPES:
        raise BundleError(f"{where} ({spec['name']}): dtype must be one of {DTYPES}, got {spec.get('dtype')!r}")
    bounds = spec.get("range")
    if bounds is not None and not (isinstance(bounds, list) and len(bounds) == 2
                                   and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
                                   and bounds[0] <= bounds[1]):
        raise BundleError(f"{where} ({spec['name']}): range must be [low, high] integers, got {bounds!r}")
    ignore = spec.get("ignore_index")
    if ignore is not None and (not isinstance(ignore, int) or isinstance(ignore, bool)):
        raise BundleError(f"{where} ({spec['name']}): ignore_index must be an integer, got {ignore!r}")


def _check_preprocessing(pre: Any, first_input: dict[str, Any], where: str) -> None:
    """A vision bundle's image preprocessing: square size and channels matching its first input [n, C, size, size],
    one finite mean and a positive finite std per channel, a positive rescale."""
    def number(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    if not isinstance(pre, dict):
        raise BundleError(f"{where} must be an object (size, channels, mean, std, rescale)")
    size, channels = pre.get("size"), pre.get("channels")
    if first_input.get("shape", [None])[1:] != [channels, size, size] or not isinstance(size, int) or size < 1:
        raise BundleError(f"{where}: size {size!r} and channels {channels!r} do not match the input shape "
                          f"{first_input.get('shape')}")
    for key in ("mean", "std"):
        values = pre.get(key)
        if not isinstance(values, list) or len(values) != channels or not all(number(v) for v in values):
            raise BundleError(f"{where}: {key} must be {channels} finite numbers, got {values!r}")
    if not all(v > 0 for v in pre["std"]) or not (number(pre.get("rescale")) and pre["rescale"] > 0):
        raise BundleError(f"{where}: std and rescale must be positive")


def _check_optimizer(spec: Any, trainable: set[str], where: str) -> None:
    if not isinstance(spec, dict) or spec.get("name") not in OPTIMIZERS:
        raise BundleError(f"{where} must be an object whose name is one of {OPTIMIZERS}")
    for key in ("lr", "eps", "weight_decay"):
        value = spec.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0 or value != value:
            raise BundleError(f"{where}: {key} must be a number >= 0, got {value!r}")
    if not spec["lr"] > 0:
        raise BundleError(f"{where}: lr must be > 0, got {spec['lr']!r}")
    betas = spec.get("betas")
    if not (isinstance(betas, list) and len(betas) == 2 and all(isinstance(b, int | float) and 0 <= b < 1 for b in betas)):
        raise BundleError(f"{where}: betas must be two numbers in [0, 1), got {betas!r}")
    groups = spec.get("groups", [])
    if not isinstance(groups, list):
        raise BundleError(f"{where}: groups must be a list")
    seen: set[str] = set()
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise BundleError(f"{where}: groups[{i}] must be an object with params and lr_scale")
        scale = group.get("lr_scale")
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0 or scale == float("inf"):
            raise BundleError(f"{where}: groups[{i}].lr_scale must be a finite number > 0, got {scale!r}")
        names = set(group["params"])
        if not names <= trainable or names & seen:
            raise BundleError(f"{where}: groups[{i}] names tensors that are not trainable or already in a group")
        seen |= names

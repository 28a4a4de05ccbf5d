"""Training bundles: a directory a device app loads as it is, described by `manifest.json`.

Torch-free: device loops verify bundles with this module. The Android app reads the same field names
(android_demo/app/src/main/java/dev/quicedge/demo/BundleFields.kt; tests check that they agree).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from quic_edge.atomic import atomic_write_bytes

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "quic-edge-bundle"
BUNDLE_FORMAT_VERSION = 1
# The roles of files in a bundle (keys of manifest["files"]); a runtime uses those it needs.
FILE_ROLES = (
    "training_model", "eval_model", "optimizer_model", "checkpoint",  # ONNX Runtime
    "program", "program_data",  # ExecuTorch
    "tokenizer", "labels",
)


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
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative:
        raise BundleError(f"bundle file path {relative!r} escapes the bundle directory; re-export the bundle")
    root = Path(root).resolve()
    full = (root / pure).resolve()
    if root != full and root not in full.parents:
        raise BundleError(f"bundle file path {relative!r} resolves outside the bundle ({full}); re-export the bundle")
    return full


def write_manifest(bundle_dir: str | os.PathLike, manifest: dict[str, Any]) -> dict[str, Any]:
    """Fill in format, sha256 of every file named in manifest['files'], and write manifest.json atomically."""
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
    atomic_write_bytes(bundle_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def read_manifest(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle: {MANIFEST} is missing; export one with `quic-edge export`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path} is not valid JSON ({err}); re-export the bundle") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path} is not a quic-edge bundle manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{path} has bundle format {version!r}; this quic-edge reads format {BUNDLE_FORMAT_VERSION} and older: "
            "upgrade quic-edge on the device"
        )
    return manifest


def verify_bundle(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """Read the manifest and check every file's sha256; returns the manifest."""
    manifest = read_manifest(bundle_dir)
    files, sums = manifest.get("files", {}), manifest.get("sha256", {})
    for role, rel in files.items():
        if rel not in sums:
            raise BundleError(f"bundle manifest lists {role} = {rel!r} without a sha256; re-export the bundle")
    for rel, expected in sums.items():
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

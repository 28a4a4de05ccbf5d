"""Exporters: a training bundle per device runtime (DESIGN.md section 4).

`export_bundle(runtime, model, example_batch, out_dir, **options)` (export/common.py) writes what every bundle
holds and asks the runtime's module (`write_files`, imported only when used: each pulls in its own toolchain) for the
runtime's own files.
"""

from __future__ import annotations

import importlib
from typing import Any


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says what and how to fix it."""


EXPORTERS = {"ort": "quic_edge.export.ort", "executorch": "quic_edge.export.executorch"}


def exporter(runtime: str) -> Any:
    """The module that writes `runtime`'s files (its `write_files` and `VERSIONS`)."""
    if runtime not in EXPORTERS:
        raise ValueError(f"runtime: must be one of {sorted(EXPORTERS)}, got {runtime!r}")
    return importlib.import_module(EXPORTERS[runtime])


def export_bundle(runtime: str, model: Any, example_batch: dict, out_dir: Any, **options: Any) -> dict:
    """Write a training bundle for `runtime` ('ort' or 'executorch'); returns its manifest (export/common.py)."""
    from quic_edge.export.common import export_bundle as export

    return export(runtime, model, example_batch, out_dir, **options)

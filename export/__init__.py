"""Exporters: a training bundle per device runtime (DESIGN.md section 4).

`export_bundle(runtime, model, example_batch, out_dir, **options)` dispatches to the runtime's exporter,
imported only when used (each pulls in its own toolchain).
"""

from __future__ import annotations

import importlib
from typing import Any


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says what and how to fix it."""


EXPORTERS = {
    "ort": "quic_edge.export.ort:export_ort",
    "executorch": "quic_edge.export.executorch:export_executorch",
}


def exporter(runtime: str):
    if runtime not in EXPORTERS:
        raise ValueError(f"runtime: must be one of {sorted(EXPORTERS)}, got {runtime!r}")
    module, name = EXPORTERS[runtime].split(":")
    return getattr(importlib.import_module(module), name)


def export_bundle(runtime: str, model: Any, example_batch: dict, out_dir: Any, **options: Any) -> dict:
    """Write a training bundle for `runtime` ('ort' or 'executorch'); returns its manifest."""
    return exporter(runtime)(model, example_batch, out_dir, **options)

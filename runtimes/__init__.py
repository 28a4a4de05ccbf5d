"""Device loops, one per runtime, behind one interface (runtimes/loop.py). Torch-free and lazy.

    from quic_edge.runtimes import open_loop
    loop = open_loop("bundle/", "work/")      # the loop class the bundle's runtime needs
    loop.fit(examples, epochs=3); loop.export_delta("me.safetensors")
"""

from __future__ import annotations

import importlib
import os
from typing import Any

LOOPS = {
    "ort": "quic_edge.runtimes.ort:OrtLoop",
    "executorch": "quic_edge.runtimes.executorch:ExecuTorchLoop",
}


def loop_class(runtime: str) -> Any:
    if runtime not in LOOPS:
        raise ValueError(f"runtime: no device loop for {runtime!r}; known runtimes {sorted(LOOPS)}")
    module, name = LOOPS[runtime].split(":")
    return getattr(importlib.import_module(module), name)


def open_loop(bundle_dir: str | os.PathLike, work_dir: str | os.PathLike, **options: Any) -> Any:
    """The device loop for the bundle's runtime (read from its manifest), resumed from the newest good checkpoint."""
    from quic_edge.formats.bundle import read_manifest

    return loop_class(str(read_manifest(bundle_dir).get("runtime")))(bundle_dir, work_dir, **options)

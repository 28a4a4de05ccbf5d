"""The rule of the architecture (docs/ARCHITECTURE.md): nothing the device side imports imports torch.

The device side is what a phone or a Raspberry Pi runs: the ONNX Runtime loop, the loop every runtime shares, serving
several people from one base, the fleet client's aggregation rules, and the formats they read and write. This test
imports them with torch blocked, collects every quic_edge module that came with them, and reads each one's source for
an import of torch anywhere (in a function too, where a lazy import would hide until the day it runs).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

DEVICE_SIDE = ("quic_edge.runtimes.ort", "quic_edge.runtimes.loop", "quic_edge.runtimes.serving",
               "quic_edge.fleet.aggregation", "quic_edge.formats.bundle", "quic_edge.formats.delta_file",
               "quic_edge.formats.checkpoint", "quic_edge.formats.identity", "quic_edge.formats.optimizer",
               "quic_edge.formats.signing", "quic_edge.formats.atomic", "quic_edge.data")
FORBIDDEN = ("torch", "transformers", "peft", "executorch", "torchao")

IMPORT_ALL = f"""
import importlib, json, sys
sys.modules["torch"] = None  # any import of torch now fails
for name in {DEVICE_SIDE!r}:
    importlib.import_module(name)
print(json.dumps({{n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.startswith("quic_edge")}}))
"""


def imported_roots(source: str) -> set[str]:
    """The top-level package of every import statement in a module, at any depth."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_device_side_imports_nothing_that_imports_torch():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(DEVICE_SIDE) <= set(modules)
    offenders = {}
    for name, path in modules.items():
        if path is None:
            continue
        found = imported_roots(Path(path).read_text()) & set(FORBIDDEN)
        if found:
            offenders[name] = sorted(found)
    assert offenders == {}, f"device-side modules importing {FORBIDDEN}: {offenders}"


def test_the_scan_finds_a_lazy_import():
    """The check itself: an import inside a function is found (shown failing on an injected case)."""
    source = "import numpy\n\ndef later():\n    from torch import nn\n    return nn\n"
    assert imported_roots(source) & set(FORBIDDEN) == {"torch"}

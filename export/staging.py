"""Write a folder all at once: every exporter (training bundles and inference folders) writes into a staging folder
beside the target and moves it into place only when everything is written, so a failed or interrupted export leaves
no half folder behind and the previous one stays intact until the new one is complete.

    with staged(out_dir, is_ours=lambda d: (d / "manifest.json").is_file()) as staging:
        ...write files into staging...
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from quic_edge.export import ExportError


@contextlib.contextmanager
def staged(out_dir: str | Path, is_ours: Callable[[Path], bool]) -> Iterator[Path]:
    """A fresh staging folder; on success it replaces `out_dir` (only if that is empty, new, or one of ours)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"out: {out_dir} is a file; give a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_ours(out_dir):
        raise ExportError(f"out: {out_dir} exists and holds other files; give an empty or new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the folder is shipped as it is
    try:
        yield staging
        _replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{staging.name[-8:]}")
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out_dir)

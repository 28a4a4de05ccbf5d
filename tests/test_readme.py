"""The README's Python example runs as written (STYLE.md: an example a reader can run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    result = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "4935 trainable numbers" in result.stdout
    losses = [float(line.split()[1]) for line in result.stdout.splitlines() if re.match(r"^\d+ \d", line)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert (tmp_path / "me.safetensors").stat().st_size < 24 * 1024


def test_readme_names_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command


def test_readme_bring_your_own_model_example_runs(tmp_path):
    """The second example: MiniLM loaded by its path with transformers, adapted and exported with no wrapper."""
    text = (ROOT / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[1]
    assert "from_pretrained(folder" in block
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "switched to eager attention" in result.stderr  # the one-line notice
    import json

    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["task"] == "classification" and manifest["labels"] == ["no", "yes"]
    assert "bert.encoder.layer.0.attention.self.query.angles" in manifest["trainable"]

"""MiniLM (real weights) end to end on ONNX Runtime: `quic-edge export`, `quic-edge train` in a torch-free
process, resume, the delta back in PyTorch, and bad data files reported with their line."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from quic_edge import QuICConfig, apply_quic, load_delta, models
from quic_edge.cli import main
from quic_edge.data import Example
from quic_edge.formats.bundle import verify_bundle
from quic_edge.runtimes.ort import OrtLoop

LABELS = ["pos", "neg", "neu"]
WORDS = {"pos": "great lovely fantastic happy wonderful", "neg": "awful terrible sad horrible bad",
         "neu": "table chair window report meeting"}


def examples(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(LABELS)
        out.append(Example(" ".join(rng.choices(WORDS[label].split(), k=6)), label))
    return out


def write_csv(path, rows) -> str:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("minilm") / "bundle"
    assert main(["export", "--runtime", "ort", "--model", "minilm", "--labels", ",".join(LABELS), "--out", str(folder),
                 "--lr", "1e-2"]) == 0
    return folder


def test_bundle_keeps_the_base_int8_and_trains_only_angles_and_head(bundle):
    manifest = verify_bundle(bundle)
    assert manifest["model"] == "minilm" and manifest["labels"] == LABELS and "tokenizer" in manifest["files"]
    assert [s["shape"] for s in manifest["inputs"]] == [[8, 64], [8, 64]]
    names = set(manifest["trainable"])
    assert names == {n for n in names if n.endswith(".angles")} | {"classifier.weight", "classifier.bias"}
    assert sum(int(np.prod(s)) for s in manifest["trainable"].values()) < 6000
    size = sum((bundle / rel).stat().st_size for rel in manifest["files"].values())
    assert size < 40e6  # int8 base (fp32 MiniLM alone is 90 MB)


def test_train_command_in_a_torch_free_process_then_resume(bundle, tmp_path):
    data = write_csv(tmp_path / "train.csv", [(e.text, e.label) for e in examples(48, 0)])
    work = tmp_path / "work"
    code = ("import sys; from quic_edge.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    args = ["train", "--bundle", str(bundle), "--data", data, "--epochs", "2", "--out", str(work), "--eval", data,
            "--no-progress"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["steps"] == 12 and summary["resumed_at_step"] == 0
    assert summary["last_loss"] < summary["first_loss"] and summary["accuracy"] >= 0.9
    assert os.path.getsize(summary["delta"]) < 24_000

    assert main([*args[:6], "1", *args[7:]]) == 0  # one more epoch resumes at step 12
    loop = OrtLoop(bundle, work)
    assert loop.step == 18

    # the delta, loaded into an independent PyTorch MiniLM, gives the device loop's logits
    delta = loop.export_delta(tmp_path / "me.safetensors")
    model, _ = models.load("minilm", num_labels=3, seed=0)
    model = load_delta(apply_quic(model, QuICConfig(target_modules=models.DEFAULT_TARGETS["minilm"])), delta)
    inputs, _ = loop.encode(examples(8, 1))
    with torch.no_grad():
        expected = model(*[torch.from_numpy(inputs[k]) for k in ("input_ids", "attention_mask")]).numpy()
    np.testing.assert_allclose(loop.logits(inputs), expected, rtol=0, atol=1e-4)


def test_train_warmup_runs_each_step_at_its_scheduled_rate(bundle, tmp_path):
    """--warmup 1 over 4 steps: the rate multipliers are 1, 1, 2/3, 1/3 (warm-up, then linear decay to 0 at the end);
    the device loop given those multipliers by hand trains the same delta, and no schedule trains another."""
    from quic_edge.formats.delta_file import read_delta_file

    rows = examples(32, 2)
    data = write_csv(tmp_path / "train.csv", [(e.text, e.label) for e in rows])
    assert main(["train", "--bundle", str(bundle), "--data", data, "--out", str(tmp_path / "cmd"), "--warmup", "1",
                 "--no-progress"]) == 0
    by_command, _ = read_delta_file(tmp_path / "cmd" / "delta.safetensors")
    deltas = {}
    for name, schedule in (("by_hand", [1.0, 1.0, 2 / 3, 1 / 3].__getitem__), ("constant", None)):
        loop = OrtLoop(bundle, tmp_path / name)
        loop.fit(rows, epochs=1, seed=0, schedule=schedule, progress=False)
        deltas[name], _ = read_delta_file(loop.export_delta(tmp_path / f"{name}.safetensors"))
    assert by_command.keys() == deltas["by_hand"].keys()
    for key, value in by_command.items():
        np.testing.assert_array_equal(value, deltas["by_hand"][key])
    assert any(not np.array_equal(value, deltas["constant"][key]) for key, value in by_command.items())


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.csv", "", "no usable examples"),
        ("header-only.csv", "text,label\n", "no usable examples"),
        ("ragged.csv", "text,label\ngood day,pos\none,two,three\n", r"ragged.csv:3: 3 columns, the header has 2: quote"),
        ("unknown.csv", "text,label\ngood day,pos\nso-so,meh\n", r"unknown.csv:3: label 'meh' is not one of"),
        ("bad.jsonl", '{"text": "fine", "label": "pos"}\n{"text": "oops",\n', r"bad.jsonl:2: not valid JSON"),
        ("nolabel.jsonl", '{"text": "fine"}\n', r"nolabel.jsonl:1: missing label"),
        ("data.txt", "whatever", "must be .csv"),
        ("latin1.csv", b"text,label\ncaf\xe9,pos\n", r"latin1.csv:2: not utf-8 text .*--encoding cp1252"),
        ("noheader.csv", "good day,pos\n", r"noheader.csv:1: the header must name the columns text and label"),
    ],
)
def test_bad_data_files_are_reported_with_their_line(bundle, tmp_path, capsys, name, content, match):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    rc = main(["train", "--bundle", str(bundle), "--data", str(path), "--out", str(tmp_path / "work"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("quic-edge train: error:") and "Traceback" not in err
    assert re.search(match, err), err


def test_fewer_examples_than_a_batch(bundle, tmp_path, capsys):
    data = write_csv(tmp_path / "few.csv", [("good", "pos")] * 3)
    assert main(["train", "--bundle", str(bundle), "--data", data, "--out", str(tmp_path / "w"), "--no-progress"]) == 2
    assert "fewer than one batch of 8" in capsys.readouterr().err

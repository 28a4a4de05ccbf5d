"""Property-based fuzzing of every parser that reads outside input: each case ends in success or the module's own
typed error, never another exception, never a crash.

Default run: FUZZ_CASES cases per parser; the slow set (-m slow) runs SLOW_CASES each. Inputs: random bytes, random
JSON values, and mutations of valid files (a key dropped, a value replaced by any JSON, bytes flipped or cut).
"""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from quic_edge.config import QuICConfig
from quic_edge.data import DataError, read_examples, read_labels
from quic_edge.fleet.aggregation import Update, aggregate, check_update
from quic_edge.formats.bundle import BundleError, check_manifest, read_manifest
from quic_edge.formats.checkpoint import CheckpointStateError, read_state, state_bytes
from quic_edge.formats.delta_file import DeltaError, read_delta_file, write_delta_file
from quic_edge.formats.identity import IdentityError, identity_of, make_identity
from quic_edge.images import encode_images, read_images

FUZZ_CASES = 300
SLOW_CASES = 10_000
IDENTITY = make_identity("quic", "f" * 64, {"blocks": 3, "orders": [1, 2]}, "int8")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _manifest() -> dict:
    return {
        "format": "quic-edge-bundle", "format_version": 2, "runtime": "ort", "model": "minilm", "task": "classification",
        **IDENTITY, "config": {"blocks": 3, "orders": [1, 2]}, "labels": ["a", "b"],
        "inputs": [{"name": "input_ids", "shape": [8, 64], "dtype": "int64", "range": [0, 30521]}],
        "target": {"name": "labels", "shape": [8], "dtype": "int64", "range": [0, 1]},
        "trainable": {"x.angles": [1, 3, 105], "classifier.weight": [2, 384]},
        "optimizer": {"name": "adamw", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                      "groups": [{"name": "head", "params": ["classifier.weight"], "lr_scale": 2.0}]},
        "session_options": {}, "files": {"labels": "labels.json"}, "sha256": {"labels.json": "0" * 64}, "versions": {},
    }


def _mutated(base: dict, data: st.DataObject) -> dict:
    """A copy with one key (at the top or one level down) dropped or replaced by any JSON value."""
    value = json.loads(json.dumps(base))
    target = value
    key = data.draw(st.sampled_from(sorted(value)))
    if isinstance(value[key], dict) and value[key] and data.draw(st.booleans()):
        target, key = value[key], data.draw(st.sampled_from(sorted(value[key])))
    if data.draw(st.booleans()):
        del target[key]
    else:
        target[key] = data.draw(json_values)
    return value


def fuzz(cases: int):
    return settings(max_examples=cases, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---- the properties, each run at two sizes below ------------------------------------------------------------------
def manifest_fields(data: st.DataObject) -> None:
    candidate = _mutated(_manifest(), data) if data.draw(st.booleans()) else data.draw(json_values)
    try:
        check_manifest(candidate, "manifest.json")
    except BundleError:
        pass


def manifest_files(tmp_path: Path, data: st.DataObject) -> None:
    raw = data.draw(st.binary(max_size=300)) if data.draw(st.booleans()) else \
        json.dumps(_mutated(_manifest(), data)).encode()
    folder = tmp_path / "b"
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_bytes(raw)
    (folder / "manifest.sha256").write_text(hashlib.sha256(raw).hexdigest())  # past the root: the parser itself
    try:
        read_manifest(folder)
    except BundleError:
        pass


def delta_files(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "d.safetensors"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(st.binary(max_size=400)))
    else:
        arrays = {"a": data.draw(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=4),
                                            elements=st.floats(-1e3, 1e3, width=32)))}
        write_delta_file(path, arrays, IDENTITY)
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 4))):  # flip bytes in the header or the data, or cut the file
            if data.draw(st.booleans()):
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
            else:
                del raw[data.draw(st.integers(0, len(raw) - 1)):]
                if not raw:
                    break
        path.write_bytes(bytes(raw))
    try:
        tensors, meta = read_delta_file(path)
        identity_of(meta)
        assert all(np.isfinite(t).all() for t in tensors.values())
    except DeltaError:
        pass


def checkpoint_states(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "state.json"
    good = json.loads(state_bytes(3, "ort", {"checkpoint": "0" * 64}, IDENTITY))
    choice = data.draw(st.integers(0, 2))
    raw = data.draw(st.binary(max_size=200)) if choice == 0 else json.dumps(
        _mutated(good, data) if choice == 1 else data.draw(json_values)).encode()
    path.write_bytes(raw)
    try:
        read_state(path)
    except CheckpointStateError:
        pass


def data_files(tmp_path: Path, data: st.DataObject) -> None:
    suffix = data.draw(st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]))
    path = tmp_path / f"data{suffix}"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(st.binary(max_size=200)))
    else:
        alphabet = st.sampled_from(list(string.printable) + ["é", "☕", "\ufeff", "\u2028", '"', ",", ";", "\t", "\r"])
        head = data.draw(st.sampled_from(["text,label\n", "label;text\r\n", "", "text\tlabel\n", '{"text": "a"}\n']))
        path.write_text(head + data.draw(st.text(alphabet, max_size=200)), encoding="utf-8")
    try:
        read_examples(path, data.draw(st.sampled_from([None, ["a", "b"]])), skip_bad_rows=data.draw(st.booleans()))
    except DataError:
        pass


def label_files(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(data.draw(st.binary(max_size=100)) if data.draw(st.booleans())
                     else json.dumps(data.draw(json_values)).encode())
    try:
        read_labels(path)
    except DataError:
        pass


def image_files(tmp_path: Path, data: st.DataObject) -> None:
    """.npz image sets: random bytes, or arrays of any dtype and shape under the expected and other names."""
    path = tmp_path / "images.npz"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(st.binary(max_size=300)))
    else:
        dtypes = st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_, "U3"])
        arrays = {name: data.draw(hnp.arrays(data.draw(dtypes), hnp.array_shapes(min_dims=0, max_dims=4, max_side=4)))
                  for name in data.draw(st.sets(st.sampled_from(["images", "labels", "label_names", "x"]), max_size=4))}
        np.savez(path, **arrays)
    try:
        examples = read_images(path, labels=data.draw(st.none() | st.lists(st.text(max_size=2), max_size=3)))
        pre = {"size": 3, "channels": data.draw(st.sampled_from([1, 3])), "mean": [0.5] * 3, "std": [0.5] * 3,
               "rescale": 1 / 255}
        pre["mean"], pre["std"] = pre["mean"][: pre["channels"]], pre["std"][: pre["channels"]]
        assert encode_images(examples, pre).shape == (len(examples), pre["channels"], 3, 3)
    except DataError:
        pass


def fleet_updates(data: st.DataObject) -> None:
    reference = {"a.angles": np.zeros((1, 3, 4), np.float32), "classifier.weight": np.zeros((2, 3), np.float32)}
    tensors = {name: data.draw(hnp.arrays(data.draw(st.sampled_from([np.float32, np.float64, np.int64, np.bool_])),
                                          data.draw(st.sampled_from([(1, 3, 4), (2, 3), (3,), (1, 3, 5)])),
                                          elements=None))
               for name in data.draw(st.sets(st.sampled_from([*reference, "extra"]), max_size=3))}
    identity = data.draw(st.sampled_from([IDENTITY, {}, {k: "x" for k in IDENTITY}]) | st.dictionaries(
        st.text(max_size=8), st.text(max_size=8), max_size=4))
    count = data.draw(st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=3)))
    update = Update("c", tensors, count, identity)
    reason = check_update(update, reference, IDENTITY)
    assert reason is None or isinstance(reason, str)
    result = aggregate(reference, [update], IDENTITY)
    assert all(np.isfinite(v).all() for v in result.tensors.values())


def identities_and_configs(data: st.DataObject) -> None:
    record = data.draw(json_values)
    try:
        identity_of(record if isinstance(record, dict) else {"config": record})
    except IdentityError:
        pass
    try:
        QuICConfig.from_json(json.dumps(data.draw(json_values)))
    except ValueError:
        pass


PROPERTIES = {"manifest fields": manifest_fields, "fleet updates": fleet_updates,
              "identities and configs": identities_and_configs}
FILE_PROPERTIES = {"manifest files": manifest_files, "deltas": delta_files, "checkpoint states": checkpoint_states,
                   "data files": data_files, "label files": label_files, "image sets": image_files}


def _run(name: str, cases: int, tmp_path: Path) -> None:
    if name in PROPERTIES:
        given(st.data())(fuzz(cases)(PROPERTIES[name]))()
    else:
        given(st.data())(fuzz(cases)(lambda data: FILE_PROPERTIES[name](tmp_path, data)))()


@pytest.mark.parametrize("name", [*PROPERTIES, *FILE_PROPERTIES])
def test_fuzz(name, tmp_path):
    _run(name, FUZZ_CASES, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*PROPERTIES, *FILE_PROPERTIES])
def test_fuzz_long(name, tmp_path):
    _run(name, SLOW_CASES, tmp_path)

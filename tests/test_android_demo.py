"""The Android demo's plain-Kotlin parts, compiled with Debian's kotlinc and run on the JVM (no Android SDK here),
checked against the Python side: the bundle fields the app reads, the app's tokenizer against Hugging Face
`tokenizers`, bundle verification, the delta writer against quic_edge.delta, checkpoint folders against the
Python device loop. Trainer.kt (ONNX Runtime) is type-checked against declarations of the ORT Java API."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from quic_edge import QuICConfig, apply_quic, models
from quic_edge.cli import main
from quic_edge.data import Example, encode_texts, load_dataset, read_examples
from quic_edge.delta import DELTA_FORMAT, DELTA_FORMAT_VERSION, DeltaError, load_delta, read_delta_file, write_delta_file
from quic_edge.export.ort import OUTPUTS
from quic_edge.formats import bundle as bundle_module
from quic_edge.formats.bundle import BundleError, verify_bundle
from quic_edge.formats.identity import canonical_config, identity_of
from quic_edge.runtimes import loop as loop_module
from quic_edge.runtimes.loop import CheckpointError
from quic_edge.runtimes.ort import CHECKPOINT_FILE, OrtLoop
from quic_edge.state import delta_parameters
from quic_edge.tasks import TARGET_NAME

DEMO = Path(__file__).resolve().parents[1] / "android_demo"
SOURCES = DEMO / "app/src/main/java/dev/quicedge/demo"
LABELS = ["pos", "neg", "neu"]
INSTALL_HINT = "kotlinc not found: install Debian's kotlin package (apt-get install kotlin; `make test` does it)"


def plain_kotlin_sources() -> tuple[list[Path], list[Path]]:
    """(files kotlinc compiles here, files that need the Android SDK)."""
    files = sorted(SOURCES.glob("*.kt"))
    android = [f for f in files if re.search(r"^import android\.", f.read_text(), re.M)]
    return [f for f in files if f not in android], android


@pytest.fixture(scope="module")
def kotlin_build(tmp_path_factory):
    """Start kotlinc (one call, ~20-40 s) in the background; `jar` waits for it."""
    if shutil.which("kotlinc") is None or shutil.which("java") is None:
        pytest.fail(INSTALL_HINT)
    folder = tmp_path_factory.mktemp("kotlin")
    jar, log = folder / "check.jar", folder / "kotlinc.log"
    plain, _ = plain_kotlin_sources()
    args = [*map(str, plain), str(DEMO / "tools/jvm/JvmCheck.kt"), str(DEMO / "tools/ort-api-stubs")]
    with open(log, "w") as out:
        proc = subprocess.Popen(["kotlinc", *args, "-include-runtime", "-d", str(jar)], stdout=out, stderr=subprocess.STDOUT)
    yield proc, jar, log
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def jar(kotlin_build) -> Path:
    proc, jar, log = kotlin_build
    proc.wait(timeout=600)
    messages = [line for line in log.read_text().splitlines() if "warning: Options -Xverify" not in line]
    assert proc.returncode == 0 and jar.is_file(), "\n".join(messages)
    return jar


@pytest.fixture(scope="module")
def bundle(kotlin_build, tmp_path_factory) -> Path:
    """A real MiniLM ONNX Runtime bundle (kotlinc compiles meanwhile)."""
    folder = tmp_path_factory.mktemp("android") / "bundle"
    assert main(["export", "--runtime", "ort", "--model", "minilm", "--labels", ",".join(LABELS), "--out", str(folder),
                 "--head-lr", "0.01"]) == 0  # the head in its own learning-rate group: stored scaled in the checkpoint
    return folder


def kotlin(jar: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["java", "-jar", str(jar), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def kotlin_constants() -> dict[str, str | int]:
    text = (SOURCES / "BundleFields.kt").read_text()
    pattern = r'const val (\w+) = (?:"([^"]*)"|(\d+))'
    found = {name: (string if number == "" else int(number)) for name, string, number in re.findall(pattern, text)}
    assert len(found) == len(re.findall(r"const val ", text)), "a constant the regex did not read"
    return found


# ---- bundle fields ------------------------------------------------------------------------------------------
def test_every_name_the_app_reads_is_what_python_writes(bundle, tmp_path):
    const = kotlin_constants()
    manifest = json.loads((bundle / bundle_module.MANIFEST).read_text())
    checked = set()

    def check(name, ok):
        assert ok, f"BundleFields.{name} = {const[name]!r} does not match the Python side"
        checked.add(name)

    check("MANIFEST", const["MANIFEST"] == bundle_module.MANIFEST)
    check("ROOT_DIGEST", const["ROOT_DIGEST"] == bundle_module.ROOT_DIGEST and (bundle / const["ROOT_DIGEST"]).is_file())
    check("SIGNATURE", const["SIGNATURE"] == bundle_module.SIGNATURE)
    check("FORMAT", const["FORMAT"] == bundle_module.BUNDLE_FORMAT == manifest["format"])
    check("FORMAT_VERSION", const["FORMAT_VERSION"] == bundle_module.BUNDLE_FORMAT_VERSION == manifest["format_version"])
    check("RUNTIME_ORT", const["RUNTIME_ORT"] == manifest["runtime"])
    for name, value in const.items():
        if name.startswith("KEY_"):
            check(name, value in manifest)
        elif name.startswith("SPEC_"):
            check(name, all(value in spec for spec in [*manifest["inputs"], manifest["target"]]))
        elif name in ("OPT_PARAMS", "OPT_LR_SCALE"):
            check(name, value in manifest["optimizer"]["groups"][0])
        elif name.startswith("OPT_"):
            check(name, value in manifest["optimizer"])
        elif name.startswith("ROLE_"):
            check(name, value in manifest["files"] and (bundle / manifest["files"][value]).is_file())
    check("DTYPE_INT64", {s["dtype"] for s in [*manifest["inputs"], manifest["target"]]} == {const["DTYPE_INT64"]})
    names = [s["name"] for s in manifest["inputs"]]
    check("INPUT_IDS", names[0] == const["INPUT_IDS"])
    check("INPUT_ATTENTION_MASK", names[1:] == [const["INPUT_ATTENTION_MASK"]])
    check("TARGET_LABELS", const["TARGET_LABELS"] == manifest["target"]["name"] == TARGET_NAME)
    check("EVAL_OUTPUT_LOGITS", OUTPUTS[const["EVAL_OUTPUT_LOGITS"]] == "logits")

    loop = OrtLoop(bundle, tmp_path / "work")
    saved = loop.save_checkpoint()
    check("CHECKPOINT_DIR", saved.parent.name == const["CHECKPOINT_DIR"])
    prefix = const["CHECKPOINT_PREFIX"]
    check("CHECKPOINT_PREFIX", saved.name.startswith(prefix) and prefix == loop_module.CHECKPOINT_PREFIX)
    check("CHECKPOINT_STATE", (saved / const["CHECKPOINT_STATE"]).is_file())
    check("CHECKPOINT_FILE", const["CHECKPOINT_FILE"] == CHECKPOINT_FILE and (saved / CHECKPOINT_FILE).is_file())

    _, metadata = read_delta_file(loop.export_delta(tmp_path / "python.safetensors"))
    check("DELTA_FORMAT", const["DELTA_FORMAT"] == DELTA_FORMAT == metadata["format"])
    check("DELTA_FORMAT_VERSION", const["DELTA_FORMAT_VERSION"] == str(DELTA_FORMAT_VERSION) == metadata["format_version"])
    meta_keys = {v for k, v in const.items() if k.startswith("META_")}
    assert meta_keys == set(metadata), f"delta metadata keys: Kotlin {sorted(meta_keys)}, Python {sorted(metadata)}"
    checked |= {k for k in const if k.startswith("META_")}
    assert checked == set(const), f"constants without a check: {sorted(set(const) - checked)}"


def test_only_the_activity_and_the_asset_copy_need_the_android_sdk(jar):
    _, android = plain_kotlin_sources()
    assert sorted(f.name for f in android) == ["BundleInstaller.kt", "MainActivity.kt"]
    # Trainer.kt (ONNX Runtime) compiled here against the declarations in tools/ort-api-stubs
    with zipfile.ZipFile(jar) as archive:
        assert "dev/quicedge/demo/Trainer.class" in archive.namelist()
        assert not [n for n in archive.namelist() if n.startswith("ai/onnxruntime/")]


# ---- bundle verification ------------------------------------------------------------------------------------
def test_the_kotlin_verifier_reads_what_the_python_verifier_reads(bundle, jar):
    manifest = verify_bundle(bundle)
    seen = json.loads(kotlin(jar, "verify", bundle).stdout)
    assert seen["runtime"] == "ort" and seen["model"] == "minilm"
    assert seen["labels"] == manifest["labels"] == LABELS
    assert seen["inputs"] == manifest["inputs"] and seen["target"] == manifest["target"]
    assert (seen["batch_size"], seen["seq_len"]) == tuple(manifest["inputs"][0]["shape"]) == (8, 64)
    assert seen["lr"] == manifest["optimizer"]["lr"] and seen["optimizer"] == manifest["optimizer"]["name"]
    assert seen["trainable"] == manifest["trainable"]
    assert seen["files"] == {role: str((bundle / rel).resolve()) for role, rel in manifest["files"].items()}
    assert seen["delta_metadata"]["config"] == canonical_config(manifest["config"])
    assert seen["identity"] == identity_of(manifest)


def _rewrite_manifest(folder: Path, manifest: dict) -> None:
    data = json.dumps(manifest).encode()
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")


def test_an_edited_manifest_is_caught_by_the_root_digest_on_both_sides(bundle, jar, tmp_path):
    folder = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["labels"] = list(reversed(manifest["labels"]))  # an edit that every file's sha256 still allows
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with pytest.raises(BundleError, match="altered after export"):
        verify_bundle(folder)
    done = kotlin(jar, "verify", folder, check=False)
    assert done.returncode == 2 and "was altered after export" in done.stderr
    (folder / "manifest.sha256").unlink()
    assert "manifest.sha256 is missing" in kotlin(jar, "verify", folder, check=False).stderr


def test_a_signed_bundle_verifies_only_with_its_publishers_key(bundle, jar, tmp_path):
    from quic_edge.formats.signing import generate_key_pair, sign

    private, public = generate_key_pair()
    _, other = generate_key_pair()
    folder = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    digest = (folder / "manifest.sha256").read_text().strip()
    (folder / "manifest.sig").write_bytes(sign(private, digest))
    (tmp_path / "pub.pem").write_bytes(public)
    (tmp_path / "other.pem").write_bytes(other)
    assert verify_bundle(folder, trusted_keys=[public])["runtime"] == "ort"
    assert json.loads(kotlin(jar, "verify", folder, "-", tmp_path / "pub.pem").stdout)["runtime"] == "ort"
    assert json.loads(kotlin(jar, "verify", folder, digest, tmp_path / "other.pem", tmp_path / "pub.pem").stdout)
    for args, message in [(("-", tmp_path / "other.pem"), "signed by none of the trusted keys"),
                          (("0" * 64,), "not the bundle this app expects")]:
        done = kotlin(jar, "verify", folder, *args, check=False)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    with pytest.raises(BundleError, match="signed by none"):
        verify_bundle(folder, trusted_keys=[other])
    signature = bytearray((folder / "manifest.sig").read_bytes())
    signature[0] ^= 1
    (folder / "manifest.sig").write_bytes(bytes(signature))
    assert "signed by none" in kotlin(jar, "verify", folder, "-", tmp_path / "pub.pem", check=False).stderr
    (folder / "manifest.sig").unlink()
    assert "is not signed" in kotlin(jar, "verify", folder, "-", tmp_path / "pub.pem", check=False).stderr


def test_the_checks_at_the_door_agree_with_python(bundle, jar, tmp_path):
    from quic_edge.runtimes.loop import BatchError

    loop = OrtLoop(bundle, tmp_path / "work")
    inputs, targets = loop.encode([Example("a good day", "pos")] * 8)
    good = {**inputs, "labels": targets}
    vocab = loop.manifest["inputs"][0]["range"][1]
    cases = {
        "good": good,
        "token id past the vocabulary": {**good, "input_ids": np.where(good["input_ids"] == 0, 0, vocab + 1)},
        "negative token id": {**good, "input_ids": good["input_ids"] - 5000},
        "label outside the label set": {**good, "labels": np.full(8, 3, np.int64)},
        "negative label": {**good, "labels": np.full(8, -1, np.int64)},
        "mask not 0/1": {**good, "attention_mask": good["attention_mask"] * 2},
        "one row short": {**good, "input_ids": good["input_ids"][:, :-1]},
    }
    for name, batch in cases.items():
        path = tmp_path / "batch.json"
        path.write_text(json.dumps({k: v.tolist() for k, v in batch.items()}))
        done = kotlin(jar, "check-batch", bundle, path, check=False)
        try:
            loop.check_batch({k: np.asarray(v) for k, v in batch.items()}, with_target=True)
            python_ok = True
        except BatchError:
            python_ok = False
        assert (done.returncode == 0) == python_ok == (name == "good"), (name, done.stderr)
        assert "Exception" not in done.stderr


def _alter_file(folder: Path, manifest: dict) -> None:
    with open(folder / "eval_model.onnx", "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _newer_format(folder: Path, manifest: dict) -> None:
    manifest["format_version"] = 3


def _dotdot(folder: Path, manifest: dict) -> None:
    manifest["files"]["labels"] = "../labels.json"
    manifest["sha256"]["../labels.json"] = manifest["sha256"].pop("labels.json")


def _absolute(folder: Path, manifest: dict) -> None:
    path = str((folder / "labels.json").resolve())
    manifest["files"]["labels"] = path
    manifest["sha256"][path] = manifest["sha256"].pop("labels.json")


def _backslash(folder: Path, manifest: dict) -> None:
    manifest["files"]["labels"] = "sub\\labels.json"
    manifest["sha256"]["sub\\labels.json"] = manifest["sha256"].pop("labels.json")


def _link_outside(folder: Path, manifest: dict) -> None:
    outside = folder.parent / "elsewhere.json"
    (folder / "labels.json").rename(outside)
    (folder / "labels.json").symlink_to(outside)  # same bytes, same sha256: only the path check catches it


def _missing(folder: Path, manifest: dict) -> None:
    (folder / "tokenizer.json").unlink()


def _no_sha(folder: Path, manifest: dict) -> None:
    del manifest["sha256"]["tokenizer.json"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_alter_file, r"bundle file eval_model.onnx is altered or corrupt \(sha256 mismatch\)"),
        (_newer_format, r"has bundle format 3; this app reads format 2: update the app"),
        (_dotdot, r"bundle file path '\.\./labels\.json' escapes the bundle directory"),
        (_absolute, r"bundle file path '/.*labels\.json' escapes the bundle directory"),
        (_backslash, r"bundle file path 'sub\\labels\.json' escapes the bundle directory"),
        (_link_outside, r"bundle file path 'labels\.json' resolves outside the bundle"),
        (_missing, r"bundle file tokenizer\.json is missing"),
        (_no_sha, r"lists tokenizer = tokenizer\.json without a sha256"),
    ],
    ids=["altered-file", "newer-format", "dotdot-path", "absolute-path", "backslash-path", "link-outside", "missing-file",
         "no-sha256"],
)
def test_the_kotlin_verifier_refuses_a_bad_bundle_as_python_does(bundle, jar, tmp_path, damage, message):
    """Each damage made consistently (the root digest rewritten too), so the check behind the root must catch it."""
    folder = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    manifest = json.loads((folder / "manifest.json").read_text())
    damage(folder, manifest)
    _rewrite_manifest(folder, manifest)
    with pytest.raises(BundleError):  # the Python verifier refuses it too
        verify_bundle(folder)
    done = kotlin(jar, "verify", folder, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and re.search(message, done.stderr), done.stderr
    assert "Exception" not in done.stderr


# ---- tokenizer ----------------------------------------------------------------------------------------------
SAMPLES = [
    "Hello, world!", "café naïve résumé Ångström Çà", "HELLO World MiXeD cAsE", "ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ ἀλήθεια",
    "İstanbul ǅemal straße ﬁne Ⅻ ① x² ³", "中文字符测试 and 日本語のテキスト, カタカナ ｶﾀｶﾅ ＡＢＣ", "한국어 텍스트입니다",
    "emoji 😀🙈🥲👍🏽 👨‍👩‍👧 ❤️ 🇬🇧", "a" * 150, "b" * 100, "c" * 101, "supercalifragilisticexpialidocious antidisestablishment",
    "word " * 200, "", "   ", "\t\n\r\v\f", "control\x00chars\x07here\x1b[0m \x85 \x9f", "zero\u200bwidth\u200d joiner\ufeff",
    "non\u00a0breaking\u2003em\u3000ideographic\u2028line\u2029para", "numbers 3.14159 1,000,000 42nd 0x1F -7e10",
    "https://example.com/path/to?q=1&x=y#frag", "mail someone@example.org or @handle #hashtag",
    "[CLS] [SEP] [MASK] [PAD] [UNK] inside text", "[mask] is not special in lowercase", "x[MASK]y[SEP]", "[MASK][MASK]",
    "don't won't y'all rock'n'roll", "$100 + 5% = <tag> ^_^ `code` |pipe| ~tilde {brace} \\back",
    "«quotes» „German“ ‘single’ — em – en … ¡hola! ¿qué?", "русский текст, ёлка", "עברית עם ניקוד שָׁלוֹם",
    "العربية مع تشكيل مُحَمَّد", "हिन्दी पाठ", "ภาษาไทย", "e\u0301 combining a\u0308 n\u0303",
    "private \ue000 use \U000f0000", "replacement \ufffd char", "tab\tseparated\tvalues\nnew line",
    "a.b.c...d", "😀" * 120, "ab" + "\U0001F972" * 3 + "cd", "Ꭰ Cherokee ꭰ", "ǆ Ǆ ǅ ΐ ΰ",
]


def python_ids(texts: list[str], seq_len: int) -> list[list[list[int]]]:
    tokenizer = Tokenizer.from_file(str(models.minilm_path() / "tokenizer.json"))
    encoded = encode_texts(tokenizer, texts, seq_len)
    return [[encoded["input_ids"][i].tolist(), encoded["attention_mask"][i].tolist()] for i in range(len(texts))]


def kotlin_ids(jar: Path, tmp_path: Path, texts: list[str], seq_len: int) -> list[list[list[int]]]:
    texts_file, out = tmp_path / "texts.jsonl", tmp_path / "ids.jsonl"
    texts_file.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")
    kotlin(jar, "tokenize", models.minilm_path() / "tokenizer.json", seq_len, texts_file, out)
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("seq_len", [64, 12, 256])
def test_the_kotlin_tokenizer_gives_python_ids_on_samples_and_real_texts(jar, tmp_path, seq_len):
    tweets = [e.text for e in load_dataset("tweets")[:300]]
    bbc = [e.text for e in load_dataset("bbc")[::20][:100]]
    texts = SAMPLES + tweets + bbc
    expected, got = python_ids(texts, seq_len), kotlin_ids(jar, tmp_path, texts, seq_len)
    assert len(got) == len(texts)
    wrong = [(t[:60], e[0], g[0]) for t, e, g in zip(texts, expected, got, strict=True) if e != g]
    assert not wrong, wrong[:3]
    assert any(row[1][-1] == 1 for row in expected) and any(0 in row[1] for row in expected)  # truncated and padded rows


def test_the_kotlin_tokenizer_gives_python_ids_for_every_code_point_up_to_U_2FFFF(jar, tmp_path):
    """Each code point between letters: exercises the Unicode tables (clean-up, accents, punctuation, CJK)."""
    points = [cp for cp in range(0x30000) if not 0xD800 <= cp <= 0xDFFF] + list(range(0xE0000, 0xE0200))
    texts = ["ab" + chr(cp) + "cd" for cp in points]
    expected, got = python_ids(texts, 8), kotlin_ids(jar, tmp_path, texts, 8)
    wrong = [hex(cp) for cp, e, g in zip(points, expected, got, strict=True) if e != g]
    assert not wrong, f"{len(wrong)} code points differ, first {wrong[:10]}"


# ---- JSON and the delta -------------------------------------------------------------------------------------
def test_kotlin_json_dumps_is_pythons_byte_for_byte(jar, tmp_path):
    value = {
        "z": [1, -2, 2.5, 0.1, 1e-05, 1e-08, 0.001, 1e16, 123456789.0, 1e300, -0.0, 100.0, 3.14159, -12345678901234],
        "a": {"y": None, "x": True, "w": False, "v": "é \u00e9 😀 \"q\" \\ \n\t\u0001 \u007f / ü€", "": []},
        "config": {"blocks": 3, "orders": [1, 2], "depth": None, "target_modules": ["query", "value"], "n": None},
        "nested": [[], {}, [{"b": 1, "a": 2}]],
    }
    path = tmp_path / "value.json"
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")
    assert kotlin(jar, "canon", path).stdout == json.dumps(value, sort_keys=True) + "\n"


def quic_minilm(minilm_base, **config):
    model, _ = minilm_base
    return apply_quic(copy.deepcopy(model), QuICConfig(target_modules=models.DEFAULT_TARGETS["minilm"], **config))


def test_a_kotlin_delta_is_read_by_python_and_loads_onto_the_matching_model(bundle, jar, tmp_path, minilm_base):
    manifest = verify_bundle(bundle)
    rng = np.random.default_rng(0)
    tensors = {name: rng.normal(0, 0.3, size=shape).astype(np.float32) for name, shape in manifest["trainable"].items()}
    first = next(iter(tensors))
    tensors[first].flat[:4] = [-0.0, 1e-42, 3.4e38, -1.5]  # sign of zero, a subnormal, near the float32 maximum
    raw = tmp_path / "values.f32"
    raw.write_bytes(b"".join(tensors[name].astype("<f4").tobytes() for name in manifest["trainable"]))
    kotlin(jar, "delta-raw", bundle, raw, tmp_path / "kotlin.safetensors")

    got, metadata = read_delta_file(tmp_path / "kotlin.safetensors")
    python_file = write_delta_file(tmp_path / "python.safetensors", tensors, identity_of(manifest), manifest["model"])
    assert metadata == read_delta_file(python_file)[1]
    assert set(got) == set(tensors)
    for name, value in tensors.items():
        assert got[name].dtype == np.float32 and got[name].tobytes() == value.tobytes(), name

    model = load_delta(quic_minilm(minilm_base), tmp_path / "kotlin.safetensors")
    params = {n: p.detach().numpy() for n, p in delta_parameters(model).items()}
    for name, value in tensors.items():
        np.testing.assert_array_equal(params[name], value)
    with pytest.raises(DeltaError, match="its config is"):
        load_delta(quic_minilm(minilm_base, blocks=2), tmp_path / "kotlin.safetensors")


def train_python_loop(bundle: Path, work: Path, steps: int) -> OrtLoop:
    loop = OrtLoop(bundle, work)
    words = {"pos": "great lovely happy", "neg": "awful sad bad", "neu": "table chair window"}
    examples = [Example(f"{words[label]} {i}", label) for i in range(8) for label in [LABELS[i % 3]]]
    inputs, targets = loop.encode(examples)
    for _ in range(steps):
        loop.train_step({**inputs, "labels": targets})
    return loop


def test_the_delta_of_a_trained_checkpoint_is_the_python_loops_delta(bundle, jar, tmp_path):
    loop = train_python_loop(bundle, tmp_path / "work", 3)
    checkpoint = loop.save_checkpoint() / CHECKPOINT_FILE  # as the app does: save, then read the parameters back
    kotlin(jar, "delta-from-checkpoint", bundle, checkpoint, tmp_path / "kotlin.safetensors")
    got, metadata = read_delta_file(tmp_path / "kotlin.safetensors")
    expected, expected_metadata = read_delta_file(loop.export_delta(tmp_path / "python.safetensors"))
    assert metadata == expected_metadata
    initial = OrtLoop(bundle, tmp_path / "fresh").parameters()
    assert set(got) == set(expected) == set(initial)
    for name, value in expected.items():
        assert got[name].tobytes() == value.tobytes(), name
    assert any(not np.array_equal(got[n], initial[n]) for n in got)  # trained values, not the bundle's


# ---- checkpoints --------------------------------------------------------------------------------------------
def _identity_file(bundle: Path, tmp_path: Path, **change: str) -> Path:
    path = tmp_path / f"identity-{len(change)}.json"
    path.write_text(json.dumps(identity_of(verify_bundle(bundle)) | change))
    return path


def test_the_checkpoint_store_rotates_skips_leftovers_and_falls_back_from_a_corrupt_newest(bundle, jar, tmp_path):
    work, state = tmp_path / "work", bundle / CHECKPOINT_FILE
    fingerprint = _identity_file(bundle, tmp_path)
    for step in (1, 2, 3):
        assert kotlin(jar, "ckpt-save", work, fingerprint, step, state).stdout.strip() == f"ckpt-{step:08d}"
    listed = json.loads(kotlin(jar, "ckpt-list", work).stdout)
    assert listed == {"checkpoints": ["ckpt-00000003", "ckpt-00000002"], "entries": ["ckpt-00000002", "ckpt-00000003"]}

    leftover = work / "checkpoints" / ".tmp-ckpt-00000009-dead"  # a save killed before its rename
    leftover.mkdir()
    (leftover / CHECKPOINT_FILE).write_bytes(b"half a checkpoint")
    resumed = json.loads(kotlin(jar, "ckpt-resume", work, fingerprint).stdout)
    assert resumed == {"folder": "ckpt-00000003", "step": 3, "skipped": []}

    newest = work / "checkpoints" / "ckpt-00000003" / CHECKPOINT_FILE
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    resumed = json.loads(kotlin(jar, "ckpt-resume", work, fingerprint).stdout)
    assert resumed["folder"] == "ckpt-00000002" and resumed["step"] == 2
    assert resumed["skipped"] == ["ckpt-00000003: checkpoint does not match its sha256"]

    other = _identity_file(bundle, tmp_path, base_fingerprint="0" * 64)
    done = kotlin(jar, "ckpt-resume", work, other, check=False)  # checkpoints of another bundle: refused, not used
    assert done.returncode == 2 and "ckpt-00000003: it belongs to another bundle (its base_fingerprint differs)" in done.stderr

    (work / "checkpoints" / "ckpt-00000002" / "state.json").unlink()  # torn: no state
    done = kotlin(jar, "ckpt-resume", work, fingerprint, check=False)  # none usable: progress is not lost silently
    assert done.returncode == 2 and "no checkpoint in" in done.stderr and "Start over" in done.stderr
    assert "state.json is missing (a torn checkpoint)" in done.stderr
    with pytest.raises(CheckpointError, match="no checkpoint in .* can be resumed"):  # the Python loop alike
        OrtLoop(bundle, work)
    resumed = json.loads(kotlin(jar, "ckpt-resume", work, fingerprint, "start-over").stdout)
    assert resumed["folder"] is None and resumed["step"] == 0 and len(resumed["skipped"]) == 2
    entries = [e for e in json.loads(kotlin(jar, "ckpt-list", work).stdout)["entries"] if not e.startswith(".tmp-")]
    assert len(entries) == 1 and entries[0].startswith("unusable-")  # kept aside, never deleted
    assert sorted(p.name for p in (work / "checkpoints" / entries[0]).iterdir()) == ["ckpt-00000002", "ckpt-00000003"]

    kotlin(jar, "ckpt-save", work, fingerprint, 4, state)  # the next save clears the leftovers
    assert json.loads(kotlin(jar, "ckpt-list", work).stdout)["checkpoints"] == ["ckpt-00000004"]


def test_the_app_and_the_python_loop_resume_from_each_others_checkpoints(bundle, jar, tmp_path):
    fingerprint = _identity_file(bundle, tmp_path)
    python = train_python_loop(bundle, tmp_path / "python", 2)
    python.save_checkpoint()
    resumed = json.loads(kotlin(jar, "ckpt-resume", tmp_path / "python", fingerprint).stdout)
    assert resumed == {"folder": "ckpt-00000002", "step": 2, "skipped": []}

    trained = python.checkpoints()[0] / CHECKPOINT_FILE
    kotlin(jar, "ckpt-save", tmp_path / "app", fingerprint, 7, trained)
    loop = OrtLoop(bundle, tmp_path / "app")
    assert loop.step == 7
    for name, value in python.parameters().items():
        np.testing.assert_array_equal(loop.parameters()[name], value)


# ---- training data ------------------------------------------------------------------------------------------
def test_the_kotlin_csv_reader_reads_what_quic_edge_train_reads(jar, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(
        'Label,TEXT,note\r\npos," Great day, really ",x\nneg,"He said ""no""\nand left",\n\nneu,plain,"a,b"\n'
        'pos,caf\u00e9 \U0001F600 ok,\nneg,ab"c,\n', encoding="utf-8", newline="",
    )
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(LABELS))
    got = json.loads(kotlin(jar, "csv", path, labels).stdout)
    assert got == [[e.text, e.label] for e in read_examples(path, LABELS)]
    assert got[1] == ['He said "no"\nand left', "neg"]

    path.write_text("text,label\ngood day,pos\none,two,three\n")
    done = kotlin(jar, "csv", path, labels, check=False)
    assert done.returncode == 2 and "data.csv:3: expected 2 columns, got 3" in done.stderr
    path.write_text("text,label\ngood day,pos\nso-so,meh\n")
    assert "data.csv:3: label 'meh' is not one of" in kotlin(jar, "csv", path, labels, check=False).stderr


# ---- learning-rate schedule -----------------------------------------------------------------------------------
def test_the_app_trains_with_the_python_loops_schedule_step_for_step(jar):
    """Trainer.fit's default schedule is the one `make demo` and `bench compare --schedule linear` train with:
    the same multiplier at every step, to the last bit; "constant" is 1 throughout; a bad name is a clear error."""
    from quic_edge.bench.common import step_schedule

    for total in (1, 2, 8, 17, 25, 75, 375, 1000):  # 6 % of 25 and 75 is 1.5 and 4.5: Python rounds half to even
        python = step_schedule("linear", total)
        assert json.loads(kotlin(jar, "schedule", "linear", total).stdout) == [python(s) for s in range(total)], total
    total = 375  # bench compare's runs: 1000 // 8 x 3 epochs
    assert json.loads(kotlin(jar, "schedule", "constant", total).stdout) == [1.0] * total
    trainer = (SOURCES / "Trainer.kt").read_text()
    assert "schedule: String = LearningRateSchedule.LINEAR" in trainer  # what the app's fit uses unless told
    done = kotlin(jar, "schedule", "cosine", total, check=False)
    assert done.returncode == 2 and "learning-rate schedule 'cosine' is not one of constant, linear" in done.stderr

"""A model folder as a user holds it (save_pretrained output) through the command line: export, train, evaluate.
Text: the bundled MiniLM loaded by its path. Images: a small ViT built from a config, trained on scikit-learn's
digits from an .npz and from a folder of PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from quic_edge.cli import main
from quic_edge.data import DataError
from quic_edge.formats.bundle import BundleError, check_manifest
from quic_edge.images import ImageExample, encode_images, read_images
from quic_edge.models import minilm_path


def _last_json(text: str) -> dict:
    return json.loads(text[text.index("{"):])


def test_minilm_by_its_folder_exports_and_trains_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "data.csv"
    rows = ["text,label"] + [f"{'a lovely day' if i % 2 else 'a dreadful day'} number {i},{'pos' if i % 2 else 'neg'}"
                             for i in range(16)]
    data.write_text("\n".join(rows) + "\n")
    bundle = tmp_path / "bundle"
    assert main(["export", "--model", str(minilm_path()), "--labels", "neg,pos", "--out", str(bundle),
                 "--batch-size", "4", "--seq-len", "16", "--targets", "re:.*layer\\.5\\..*(query|value)"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["files"]["tokenizer"] == "tokenizer.json"  # the folder's tokenizer travels with the bundle
    assert (bundle / "tokenizer.json").read_bytes() == (minilm_path() / "tokenizer.json").read_bytes()
    angles = [n for n in manifest["trainable"] if n.endswith("angles")]
    assert sorted(angles) == ["bert.encoder.layer.5.attention.self.query.angles",
                              "bert.encoder.layer.5.attention.self.value.angles"]
    assert "classifier.weight" in manifest["trainable"]  # BertForSequenceClassification's head, found by the class
    capsys.readouterr()
    assert main(["train", "--bundle", str(bundle), "--data", str(data), "--out", str(tmp_path / "work"), "--epochs", "2",
                 "--no-progress"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["steps"] == 8 and (tmp_path / "work" / "delta.safetensors").is_file()

    # deploy: the trained delta merged into the folder's model, exported as optimum exports that class
    delta, deployed = tmp_path / "work" / "delta.safetensors", tmp_path / "deployed"
    assert main(["deploy", "--model", str(minilm_path()), "--delta", str(delta), "--labels", "neg,pos",
                 "--out", str(deployed)]) == 0
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from tokenizers import Tokenizer

    import quic_edge

    texts = ["a lovely day number 3", "a dreadful day number 8, and then some more"]
    tokenizer = Tokenizer.from_file(str(deployed / "tokenizer.json"))  # the folder's, written again by optimum
    original = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    assert [e.ids for e in tokenizer.encode_batch(texts)] == [e.ids for e in original.encode_batch(texts)]
    tokenizer.enable_padding(length=16)
    encoded = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encoded])
    mask = torch.tensor([e.attention_mask for e in encoded])
    served = ORTModelForSequenceClassification.from_pretrained(str(deployed))(input_ids=ids, attention_mask=mask).logits
    merged = quic_edge.merge(quic_edge.from_delta(delta, base=str(minilm_path())))
    with torch.no_grad():
        torch.testing.assert_close(served, merged(input_ids=ids, attention_mask=mask).logits, rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit") / "my-vit"
    ViTForImageClassification(ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=64, num_labels=3)).save_pretrained(folder)
    return folder


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = d.target < 3
    return (d.images[keep][:n] * 16).clip(0, 255).astype(np.uint8), d.target[keep][:n]


def test_a_vision_folder_carries_its_preprocessing_and_trains_on_images(vit_folder, tmp_path, capsys):
    images, labels = _digits(48)
    np.savez(tmp_path / "train.npz", images=images, labels=labels)
    bundle = tmp_path / "bundle"
    assert main(["export", "--model", str(vit_folder), "--labels", "0,1,2", "--out", str(bundle), "--batch-size", "8",
                 "--runtime", "ort"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["preprocessing"] == {"size": 8, "channels": 1, "mean": [0.5], "std": [0.5], "rescale": 1 / 255}
    assert manifest["inputs"][0]["name"] == "pixel_values" and manifest["inputs"][0]["shape"] == [8, 1, 8, 8]
    capsys.readouterr()
    assert main(["train", "--bundle", str(bundle), "--data", str(tmp_path / "train.npz"), "--out", str(tmp_path / "w"),
                 "--eval", str(tmp_path / "train.npz"), "--no-progress"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["steps"] == 6 and 0.0 <= summary["accuracy"] <= 1.0
    assert main(["deploy", "--model", str(vit_folder), "--delta", str(tmp_path / "w" / "delta.safetensors"),
                 "--runtime", "executorch", "--batch-size", "2", "--labels", "0,1,2", "--out", str(tmp_path / "d")]) == 0
    deployed = json.loads((tmp_path / "d" / "deploy.json").read_text())
    assert deployed["input_shape"] == [2, 1, 8, 8] and deployed["preprocessing"] == manifest["preprocessing"]

    folder = tmp_path / "pngs"  # the same images as a folder of per-label PNG files
    from PIL import Image

    for i, (image, label) in enumerate(zip(images[:16], labels[:16], strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i}.png")
    capsys.readouterr()
    assert main(["train", "--bundle", str(bundle), "--data", str(folder), "--out", str(tmp_path / "w2"),
                 "--no-progress"]) == 0
    assert _last_json(capsys.readouterr().out)["steps"] == 2


def test_images_are_encoded_as_the_manifest_says():
    pre = {"size": 4, "channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "rescale": 1 / 255}
    grey = ImageExample(np.full((2, 2), 255, dtype=np.uint8), "a")  # white, grey, 2 x 2 -> 3 x 4 x 4
    colour = ImageExample(np.zeros((8, 8, 4), dtype=np.uint8), "b")  # black with an alpha plane
    out = encode_images([grey, colour], pre)
    assert out.shape == (2, 3, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], (1.0 - 0.5) / 0.25)
    np.testing.assert_allclose(out[1], (0.0 - 0.5) / 0.25)
    as_floats = encode_images([ImageExample(np.full((2, 2), 1.0, dtype=np.float32), "a")], pre)  # already 0..1
    np.testing.assert_allclose(as_floats, out[:1])


def test_bad_image_data_is_refused_with_the_path(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(DataError, match="folder of per-label subfolders"):
        read_images(tmp_path / "x.npy")
    np.savez(tmp_path / "no_labels.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="needs arrays 'images' and 'labels'"):
        read_images(tmp_path / "no_labels.npz")
    np.savez(tmp_path / "pickled.npz", images=np.zeros((2, 4, 4)), labels=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="plain arrays"):
        read_images(tmp_path / "pickled.npz")
    np.savez(tmp_path / "nan.npz", images=np.full((2, 4, 4), np.nan), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="finite"):
        read_images(tmp_path / "nan.npz")
    np.savez(tmp_path / "huge.npz", images=np.full((2, 4, 4), 1e300), labels=np.array([0, 1]))  # inf as float32
    with pytest.raises(DataError, match="float32's range"):
        read_images(tmp_path / "huge.npz")
    np.savez(tmp_path / "ok.npz", images=np.zeros((2, 4, 4)), labels=np.array([0, 7]))
    with pytest.raises(DataError, match=r"labels \['7'\] are not in the bundle's label set"):
        read_images(tmp_path / "ok.npz", labels=["0", "1"])
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        read_images(tmp_path / "imgs")


def test_a_tampered_preprocessing_entry_is_refused(vit_folder, tmp_path):
    bundle = tmp_path / "bundle"
    assert main(["export", "--model", str(vit_folder), "--labels", "0,1,2", "--out", str(bundle), "--batch-size", "2"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    for bad in ({"size": 9}, {"std": [0.0]}, {"mean": [0.1, 0.2]}, {"rescale": float("nan")}):
        with pytest.raises(BundleError, match="preprocessing"):
            check_manifest(manifest | {"preprocessing": manifest["preprocessing"] | bad}, "manifest.json")


def test_a_folder_that_is_not_a_model_is_named(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        _load(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="no .safetensors weights"):
        _load(tmp_path)


def _load(folder):
    from quic_edge import models

    return models.load(str(folder), num_labels=2)

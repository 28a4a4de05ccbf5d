"""Image examples for vision bundles, torch-free (the device loops use it): read a folder or an .npz, and turn images
into the pixel values the bundle's manifest describes (`preprocessing`: size, channels, rescale, mean, std).

    examples = read_images("photos/")              # photos/<label>/*.png|jpg|...  (the usual image-folder layout)
    examples = read_images("digits.npz")           # arrays 'images' [n, H, W] or [n, H, W, C], 'labels' [n]
    pixels = encode_images(examples, manifest["preprocessing"])   # float32 [n, C, size, size]
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import DataError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageExample:
    image: np.ndarray  # [H, W] or [H, W, C], uint8 (0..255) or float (0..1 or 0..255)
    label: str


def read_images(path: str | os.PathLike, labels: list[str] | None = None) -> list[ImageExample]:
    """Labelled images from a folder of per-label subfolders or from an .npz file; `labels`, when given, is the
    bundle's label set (an image with another label is refused with its path)."""
    path = Path(path)
    if path.is_dir():
        examples = _read_folder(path)
    elif path.suffix.lower() == ".npz" and path.is_file():
        examples = _read_npz(path)
    else:
        raise DataError(f"{path}: give a folder of per-label subfolders of images, or an .npz with 'images' and "
                        "'labels' arrays")
    if not examples:
        raise DataError(f"{path}: no images found (expected <label>/<image>{SUFFIXES[0]} and similar)")
    if labels is not None:
        unknown = sorted({e.label for e in examples} - set(labels))
        if unknown:
            raise DataError(f"{path}: labels {unknown} are not in the bundle's label set {labels}")
    return examples


def _read_folder(folder: Path) -> list[ImageExample]:
    from PIL import Image, UnidentifiedImageError

    examples = []
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for file in sorted(p for p in label_dir.iterdir() if p.suffix.lower() in SUFFIXES):
            try:
                with Image.open(file) as image:
                    examples.append(ImageExample(np.asarray(image.convert("RGB")), label_dir.name))
            except (UnidentifiedImageError, OSError, ValueError) as err:
                raise DataError(f"{file}: not a readable image ({err}); remove it or replace it") from None
    return examples


def _read_npz(path: Path) -> list[ImageExample]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "images" not in data.files or "labels" not in data.files:
                raise DataError(f"{path}: needs arrays 'images' and 'labels', found {data.files}")
            images, labels = data["images"], data["labels"]
            names = [str(x) for x in np.ravel(data["label_names"])] if "label_names" in data.files else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:  # pickles refused: allow_pickle=False
        raise DataError(f"{path}: not a readable .npz of plain arrays ({err})") from None
    if labels.ndim != 1 or images.ndim not in (3, 4) or len(images) != len(labels) or min(images.shape[1:3]) < 1 \
            or (images.ndim == 4 and not 1 <= images.shape[3] <= 4):
        raise DataError(f"{path}: 'images' must be [n, H, W] or [n, H, W, C] (C 1 to 4) and 'labels' [n]; got "
                        f"{images.shape} and {labels.shape}")
    if not np.issubdtype(images.dtype, np.number) or np.iscomplexobj(images) or not np.isfinite(images).all() or (
            images.size and np.abs(images).max() > np.finfo(np.float32).max):
        raise DataError(f"{path}: 'images' must hold finite real numbers (within float32's range)")
    if names is not None:
        if not np.issubdtype(labels.dtype, np.integer) or len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
            raise DataError(f"{path}: with 'label_names', 'labels' must be integers in 0..{len(names) - 1}")
        text = [names[int(i)] for i in labels]
    else:
        text = [str(x) for x in labels]
    return [ImageExample(image, label) for image, label in zip(images, text, strict=True)]


def encode_images(examples: list[ImageExample], preprocessing: dict[str, Any]) -> np.ndarray:
    """float32 [n, C, size, size]: each image resized (bilinear), channels matched (grey repeated, alpha dropped),
    scaled to 0..1 (uint8 or values above 1 times `rescale`), then (x - mean) / std per channel."""
    from PIL import Image

    size, channels = int(preprocessing["size"]), int(preprocessing["channels"])
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(preprocessing["std"], dtype=np.float32)[:, None, None]
    out = np.empty((len(examples), channels, size, size), dtype=np.float32)
    for i, example in enumerate(examples):
        image = np.asarray(example.image)
        scale = float(preprocessing.get("rescale", 1 / 255)) if image.dtype == np.uint8 or image.max() > 1 else 1.0
        image = image.astype(np.float32) * scale
        if image.ndim == 2:
            image = image[:, :, None]
        planes = [np.asarray(Image.fromarray(image[:, :, c], mode="F").resize((size, size), Image.BILINEAR))
                  for c in range(image.shape[2])]
        stacked = np.stack(planes)
        if stacked.shape[0] != channels:
            if channels == 1:  # colour to grey: the mean of the colour planes
                stacked = stacked[:3].mean(axis=0, keepdims=True)
            else:  # grey repeated, or an alpha plane dropped
                stacked = np.repeat(stacked[:1], channels, axis=0) if stacked.shape[0] == 1 else stacked[:channels]
        out[i] = (stacked - mean) / std
    return out

"""Small real data files in the formats users bring: torchvision's idx and pickles, CSV, PNG folders.

The images are learnable on purpose: class k is a centred bright square of the k-th size,
plus noise, so a tiny model separates them in a few epochs.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def blob_images(count: int, classes: int, channels: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, size, size) uint8 images and their labels: class k is a centred bright square of the k-th size.

    Flips, small shifts and rotations keep the class, so augmentation has nothing to spoil.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(count, channels, size, size), dtype=np.uint8)
    for image, label in zip(images, labels):
        half = max(1, round(size * (label + 1) / (2 * (classes + 1))))
        image[:, size // 2 - half : size // 2 + half, size // 2 - half : size // 2 + half] = 230
    return images, labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file (MNIST's format: magic, big-endian dimensions, uint8 data), gzipped for .gz."""
    data = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def write_mnist(root: Path, folder: str = "MNIST", train: int = 300, test: int = 100) -> None:
    """torchvision's MNIST layout under `root/<folder>/raw/`: training files gzipped, test files plain."""
    raw = root / folder / "raw"
    for prefix, count, suffix, seed in (("train", train, ".gz", 0), ("t10k", test, "", 1)):
        images, labels = blob_images(count, 4, 1, 28, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", images[:, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


def write_cifar10(root: Path, per_batch: int = 60, test: int = 100) -> None:
    """torchvision's CIFAR-10 layout: python pickles under `root/cifar-10-batches-py/`."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        images, labels = blob_images(test if name == "test_batch" else per_batch, 4, 3, 32, seed)
        entry = {"data": images.reshape(len(images), -1), "labels": [int(v) for v in labels]}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)


def write_image_folder(root: Path, names: tuple[str, ...], per_class: dict[str, int], size: int = 16) -> Path:
    """`root/<split>/<class name>/<n>.png` RGB images, `per_class` images per class in each split."""
    for split, count in per_class.items():
        images, labels = blob_images(count * len(names), len(names), 3, size, seed=len(split))
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{index}.png")
    return root


def write_table(path: Path, count: int = 300, seed: int = 0) -> Path:
    """A CSV of flowers: two numeric features, a categorical 'soil', a string 'species' and a numeric 'height'."""
    rng = np.random.default_rng(seed)
    species = ["setosa", "versicolor", "virginica"]
    rows = ["petal_length,petal_width,soil,species,height"]
    for _ in range(count):
        kind = int(rng.integers(0, 3))
        soil = ["clay", "sand", "loam"][kind] if rng.random() < 0.8 else str(rng.choice(["clay", "sand", "loam"]))
        length = 1.5 + 2.0 * kind + rng.normal(0, 0.4)
        width = 0.3 + 0.8 * kind + rng.normal(0, 0.2)
        height = 10 + 3 * length + 2 * width + rng.normal(0, 0.1)
        rows.append(f"{length:.3f},{width:.3f},{soil},{species[kind]},{height:.3f}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_series(path: Path, steps: int = 400) -> Path:
    """A CSV time series: a date column, a sine 'load' with a slow trend, and 'temp' that leads it."""
    rows = ["date,temp,load"]
    for t in range(steps):
        temp = math.sin(t / 6)
        load = math.sin((t - 2) / 6) + t / steps
        rows.append(f"day{t},{temp:.5f},{load:.5f}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_png(path: Path, image: np.ndarray) -> Path:
    """A (C, H, W) uint8 image as a PNG file."""
    Image.fromarray(image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0]).save(path)
    return path

"""`mnist`, `fashion_mnist`, `cifar10`: torchvision's data sets, read from `root` (or downloaded).

The files are torchvision's own layout: MNIST and Fashion-MNIST as idx files under
`root/MNIST/raw/` and `root/FashionMNIST/raw/` (gzipped or not), CIFAR-10 as the python
batches under `root/cifar-10-batches-py/`. Offline, the files must be there already;
when they are not, the error names the folder and the files.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torchvision import datasets

from .._files import atomic_path
from ..errors import DataError
from ..schema.data import Cifar10Params, FashionMnistParams, MnistParams, TorchvisionParams
from .base import RawData, register_source

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _CIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR-10 reader, checking that the batch files exist instead of their MD5 sums.

    The checksums only match the full download; this way a subset re-packed in the same
    format (as the tests write) loads too. The class names are fixed, so the meta file
    is not needed.
    """

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        self.classes = CIFAR10_CLASSES


@dataclass(frozen=True)
class Family:
    """How to read one torchvision data set and where its files go."""

    reader: Callable[..., Any]
    folder: str  # under root
    files: tuple[str, ...]
    gzipped: bool  # the files may be given as .gz


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FAMILIES = {
    "mnist": Family(datasets.MNIST, "MNIST/raw", MNIST_FILES, True),
    "fashion_mnist": Family(datasets.FashionMNIST, "FashionMNIST/raw", MNIST_FILES, True),
    "cifar10": Family(
        _CIFAR10, "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",), False
    ),
}


def _gunzip_missing(folder: Path, files: tuple[str, ...]) -> None:
    """Unpack `name.gz` beside itself where `name` is missing: torchvision reads plain idx files."""
    for name in files:
        packed, plain = folder / f"{name}.gz", folder / name
        if packed.is_file() and not plain.is_file():
            with atomic_path(plain) as tmp, gzip.open(packed, "rb") as source, open(tmp, "wb") as target:
                shutil.copyfileobj(source, target)


def _missing_message(name: str, p: TorchvisionParams, family: Family) -> str:
    folder = p.root / family.folder
    also = " (or the same with .gz)" if family.gzipped else ""
    return (
        f"data.root: the {name} files are not in '{folder}'. Expected there: {', '.join(family.files)}{also}. "
        f"Put them there, or set `download: true` (needs network) to fetch them into '{p.root}'"
    )


def load_torchvision(name: str, p: TorchvisionParams) -> RawData:
    """Read a torchvision data set's train and test parts as `[C, H, W]` uint8 images."""
    family = FAMILIES[name]
    folder = p.root / family.folder
    if family.gzipped and folder.is_dir():
        _gunzip_missing(folder, family.files)
    try:
        train = family.reader(str(p.root), train=True, download=p.download)
        test = family.reader(str(p.root), train=False, download=False)
    except (
        RuntimeError,
        OSError,
        EOFError,
        ValueError,
        AssertionError,
        pickle.UnpicklingError,
    ) as exc:  # torchvision asserts formats
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if all((folder / f).is_file() for f in family.files):
            raise DataError(
                f"data.root: the {name} files in '{folder}' could not be read ({reason}); "
                f"replace them with torchvision's files"
            ) from None
        if not p.download:
            raise DataError(_missing_message(name, p, family)) from None
        raise DataError(
            f"data.download: could not download {name} into '{p.root}' ({reason}). "
            f"Downloading needs network; or put the files in '{folder}' yourself: "
            f"{', '.join(family.files)}"
        ) from None
    return RawData(
        _images(train.data),
        np.asarray(train.targets, dtype=np.int64),
        _images(test.data),
        np.asarray(test.targets, dtype=np.int64),
        class_names=list(train.classes),
        value_range=255.0,
    )


def _images(data: Any) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) → (N, C, H, W) uint8."""
    array = np.asarray(data, dtype=np.uint8)
    return array[:, None] if array.ndim == 3 else np.ascontiguousarray(array.transpose(0, 3, 1, 2))


@register_source(MnistParams)
def mnist(p: MnistParams) -> RawData:
    """MNIST handwritten digits (torchvision): 60,000 + 10,000 images [1, 28, 28] (values 0-255)."""
    return load_torchvision("mnist", p)


@register_source(FashionMnistParams)
def fashion_mnist(p: FashionMnistParams) -> RawData:
    """Fashion-MNIST clothing (torchvision): 60,000 + 10,000 images [1, 28, 28] (values 0-255)."""
    return load_torchvision("fashion_mnist", p)


@register_source(Cifar10Params)
def cifar10(p: Cifar10Params) -> RawData:
    """CIFAR-10 (torchvision): 50,000 + 10,000 colour images [3, 32, 32] in 10 classes (values 0-255)."""
    return load_torchvision("cifar10", p)

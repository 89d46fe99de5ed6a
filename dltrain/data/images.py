"""`image_folder`: one subfolder per class (as torchvision's ImageFolder), decoded batch by batch.

The folder holds `train/` and optionally `val/` and `test/`, each with one subfolder per
class. Images are decoded and resized in DataLoader workers (they need not fit in
memory); the same `read_image` reads files for `dltrain predict`, so a model sees new
images exactly as it saw its training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import DataError
from ..inference import decode_image
from ..schema.data import ImageFolderParams
from .base import LazyInputs, Preprocessing, RawData, register_source

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_image(path: str | Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """An image file as a uint8 `[channels, height, width]` tensor (bilinear resize)."""
    return torch.from_numpy(decode_image(path, channels, size))


class ImageDataset(Dataset):
    """Decodes one file per index: what the DataLoader's workers run."""

    def __init__(self, paths: np.ndarray, targets: torch.Tensor, channels: int, size: tuple[int, int]) -> None:
        self.paths, self.targets, self.channels, self.size = paths, targets, channels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return read_image(self.paths[index], self.channels, self.size), self.targets[index]


JPEG_SUFFIXES = (".jpg", ".jpeg")


def gpu_decoding(device: torch.device) -> bool:
    """Whether batches of JPEGs are decoded on `device` (CUDA, with nvjpeg); CPU training decodes with PIL, as before."""
    return device.type == "cuda"


class FileBytesDataset(ImageDataset):
    """For decoding on the GPU: a JPEG file's bytes, or (other formats) the decoded, not yet resized image."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.io import ImageReadMode, decode_image, read_file

        path = str(self.paths[index])
        data = read_file(path)  # uint8 [bytes]
        if path.lower().endswith(JPEG_SUFFIXES):
            return data, self.targets[index]
        try:
            mode = ImageReadMode.RGB if self.channels == 3 else ImageReadMode.GRAY
            return decode_image(data, mode=mode), self.targets[index]  # [C, H, W] uint8
        except RuntimeError:  # a format torchvision.io does not read (bmp, tiff): PIL, resized already
            return read_image(path, self.channels, self.size), self.targets[index]


def collate_files(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Samples of different sizes (file bytes, images before resizing) as a list, targets stacked."""
    return [x for x, _ in batch], torch.stack([y for _, y in batch])


def decode_on_device(
    items: list[torch.Tensor], channels: int, size: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """A batch of `FileBytesDataset` samples as uint8 `[B, C, H, W]` on `device`: JPEGs decoded there by
    nvjpeg (`torchvision.io.decode_jpeg(device=...)`), every image resized there (bilinear, antialiased
    as PIL's resize is)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    jpegs = [i for i, item in enumerate(items) if item.dim() == 1]
    images = [item.to(device, non_blocking=True) for item in items]
    if jpegs:
        decoded = decode_jpeg([items[i] for i in jpegs], mode=mode, device=device)
        for i, image in zip(jpegs, decoded):
            images[i] = image
    out = torch.empty((len(items), channels, *size), dtype=torch.uint8, device=device)
    for i, image in enumerate(images):
        if tuple(image.shape[-2:]) == tuple(size):
            out[i] = image
        else:
            resized = torch.nn.functional.interpolate(
                image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
            )
            out[i] = resized[0].round_().clamp_(0, 255).to(torch.uint8)
    return out


@dataclass
class FileSplit:
    """A split of image files: the DataLoader path of `batches.make_batches`."""

    x: "ImageFiles"
    y: torch.Tensor
    prep: Preprocessing
    dataset: ImageDataset

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device) -> "FileSplit":
        """Files stay on the host; batches move to the device as they are decoded."""
        return self

    def on_device(self, device: torch.device) -> "FileSplit":
        """This split as batches for `device` decode it: file bytes for the GPU (`gpu_decoding`), else itself."""
        if not gpu_decoding(device):
            return self
        data = self.dataset
        return FileSplit(
            self.x, self.y, self.prep, FileBytesDataset(data.paths, data.targets, data.channels, data.size)
        )

    @property
    def collate(self) -> Any:
        """The DataLoader's collate_fn: a list for samples of different sizes (None: PyTorch's default)."""
        return collate_files if isinstance(self.dataset, FileBytesDataset) else None

    def decode(self, x: Any, device: torch.device) -> torch.Tensor:
        """A collated batch as uint8 images on `device` (what the DataLoader gave, moved; or decoded there)."""
        if isinstance(self.dataset, FileBytesDataset):
            return decode_on_device(x, self.dataset.channels, self.dataset.size, device)
        return x.to(device, non_blocking=True)


class ImageFiles(LazyInputs):
    """Image paths that index like an array of `[C, H, W]` images."""

    def __init__(self, paths: np.ndarray, channels: int, size: tuple[int, int]) -> None:
        self.paths, self.channels, self.size = paths, channels, size
        self.shape = (len(paths), channels, *size)

    def __getitem__(self, index: Any) -> "ImageFiles":
        return ImageFiles(self.paths[index], self.channels, self.size)

    def split(self, y: torch.Tensor, prep: Preprocessing) -> FileSplit:
        return FileSplit(self, y, prep, ImageDataset(self.paths, y, self.channels, self.size))


def _scan(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(paths, labels) of the images under `folder/<class>/`, checking each file opens as an image."""
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise DataError(
            f"'{folder}' has class folders that train/ lacks: {', '.join(unknown)}. "
            f"Every class needs a folder under train/ (classes there: {', '.join(classes)})"
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                Image.open(file).close()  # reads the header only
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"'{file}' is not a readable image ({exc}); remove it or replace it") from None
            paths.append(str(file))
            labels.append(label)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under '{folder}/<class>/'")
    return np.array(paths), np.array(labels, dtype=np.int64)


@register_source(ImageFolderParams)
def image_folder(p: ImageFolderParams) -> RawData:
    """Images in `path/train/<class>/` (and optional val/, test/), resized to `image_size`."""
    train = p.path / "train"
    if not train.is_dir():
        raise DataError(
            f"data.path: no folder '{train}'. Expected {p.path}/train/<class>/<image files> "
            f"(and optionally {p.path}/val/<class>/..., {p.path}/test/<class>/...)"
        )
    classes = sorted(d.name for d in train.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"'{train}' has no class folders: put each class's images in {train}/<class name>/")
    channels = p.channels or 3
    files = lambda paths: ImageFiles(paths, channels, p.size)  # noqa: E731
    x, y = _scan(train, classes)
    raw = RawData(files(x), y, class_names=classes, value_range=255.0)  # type: ignore[arg-type]
    for name in ("val", "test"):
        if (p.path / name).is_dir():
            xs, ys = _scan(p.path / name, classes)
            setattr(raw, f"x_{name}", files(xs))
            setattr(raw, f"y_{name}", ys)
    return raw

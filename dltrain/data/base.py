"""What every data source shares: the parameters, the splits, and the preprocessing.

A source only reads arrays (`RawData`). Everything after that is one path for all
sources: targets shaped for the task, the test and validation splits, preprocessing
statistics from the training split only, and tensors ready for the device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

import numpy as np
import torch

from .._registry import tag_value
from ..errors import DataError
from ..schema.data import SOURCES, DataParams
from ..schema.losses import Task

Shape = tuple[int, ...]

# Independent of the run's seed, so every run (and `evaluate`) sees the same test set.
SPLIT_SEED = 20240101


@dataclass
class RawData:
    """Arrays as a source reads them (samples first); `x_test` None when it has none."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    class_names: list[str] | None = None
    value_range: float | None = None  # the known maximum of the inputs (255, 16, ...)
    x_val: np.ndarray | None = None  # the source's own validation set, when it has one
    y_val: np.ndarray | None = None
    encoder: "FeatureEncoder | None" = None  # turns raw table cells into numbers, fitted on train


class FeatureEncoder(Protocol):
    """Encodes raw feature cells (e.g. categorical columns) with state fitted on the training split."""

    def fit(self, x_train: np.ndarray) -> dict[str, Any]: ...

    def transform(self, x: np.ndarray, state: dict[str, Any]) -> np.ndarray: ...


class LazyInputs:
    """Inputs read on demand (image files): indexable like an array, shaped `(N, *sample)`."""

    shape: Shape

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> "LazyInputs":
        raise NotImplementedError

    def split(self, y: torch.Tensor, prep: "Preprocessing") -> Any:
        """The split these inputs make with targets `y` (read batch by batch, not held as a tensor)."""
        raise NotImplementedError


Loader = Callable[[Any], RawData]


def register_source(params: type[DataParams]) -> Callable[[Loader], Loader]:
    """Attach a loader to the name in its params' `source` literal."""
    return SOURCES.implement(tag_value(params, "source"))


@dataclass
class Split:
    """Inputs and targets of one split, as tensors."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Preprocessing:
    """Input transforms fitted on the training split, stored in the checkpoint."""

    flatten: bool = False
    scale: float | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    value_range: float | None = None  # the inputs' known maximum, to read new files (predict) the same way
    table: dict[str, Any] | None = None  # a FeatureEncoder's fitted state (tabular data)
    raw_shape: list[int] | None = None  # one sample as the source reads it, before `apply`

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten:
            x = x.reshape(x.shape[0], -1)
        if self.scale is not None:
            x = x / self.scale
        if self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        return x

    def state(self) -> dict[str, Any]:
        return {"flatten": self.flatten, "scale": self.scale, "mean": self.mean, "std": self.std,
                "value_range": self.value_range, "table": self.table, "raw_shape": self.raw_shape}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Preprocessing":
        return cls(**state)


@dataclass
class DataBundle:
    """Every split of a data set, ready for the model."""

    train: Split
    val: Split | None
    test: Split | None
    task: Task
    input_shape: Shape
    num_classes: int | None
    class_names: list[str] | None
    preprocessing: Preprocessing

    def split(self, name: str) -> Split:
        chosen = {"train": self.train, "val": self.val, "test": self.test}[name]
        if chosen is None:
            raise DataError(
                f"this data has no '{name}' split: "
                + ("set fit.validation_split (e.g. 0.2)" if name == "val" else "it was not configured")
            )
        return chosen

    @property
    def target_width(self) -> int:
        """Classes for classification, outputs per sample otherwise."""
        if self.task == "classification":
            return self.num_classes or 0
        return self.train.y.shape[1]


def _targets(y: np.ndarray, task: Task, where: str) -> torch.Tensor:
    """Targets shaped for the loss: class indices, or float columns `(N, k)`."""
    if task == "classification":
        if y.ndim == 2 and y.shape[1] > 1:  # one-hot, as Keras's categorical labels
            y = y.argmax(axis=1)
        y = y.reshape(-1)
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.mod(y, 1) == 0):
                raise DataError(f"{where}: class labels must be integers (or one-hot rows); received {y.dtype} values")
            y = y.astype(np.int64)
        if y.min() < 0:
            raise DataError(f"{where}: class labels must be 0 or more; received {int(y.min())}")
        return torch.from_numpy(y.astype(np.int64))
    y = y.astype(np.float32)
    return torch.from_numpy(y.reshape(len(y), -1))


def _permuted_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held out) indices: a fixed shuffle, so the held-out set never changes."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    held = max(1, int(round(n * fraction)))
    return np.sort(order[held:]), np.sort(order[:held])


def _stat_axes(shape: Shape) -> tuple[int, ...]:
    """Axes to average over for standardization: all but features (or channels)."""
    if len(shape) == 3:  # [C, H, W]: per channel
        return (0, 2, 3)
    return tuple(range(len(shape)))  # [F] or [T, F]: per feature (last axis)


def fit_preprocessing(params: DataParams, x_train: torch.Tensor, value_range: float | None) -> Preprocessing:
    """Statistics from the training split only (no leak from validation or test)."""
    prep = Preprocessing(flatten=params.flatten)
    if params.normalize in ("scale", "imagenet"):  # ImageNet statistics are for [0, 1] inputs
        prep.scale = float(value_range if value_range else x_train.abs().max().clamp_min(1e-12))
    elif params.normalize == "standardize":
        x = prep.apply(x_train).double()
        axes = _stat_axes(tuple(x.shape[1:]))
        mean = x.mean(dim=axes, keepdim=True)[0]
        std = x.std(dim=axes, keepdim=True)[0]
        prep.mean = mean.float()
        prep.std = std.clamp_min(1e-7).float().where(std > 1e-7, torch.ones_like(std).float())
    return prep


def _named_labels(raw: RawData, task: Task) -> RawData:
    """String class labels (`'cat'`, `'setosa'`) → class indices, the names sorted, over every split."""
    if raw.y_train.dtype.kind not in "USO":
        return raw
    labels = [y for y in (raw.y_train, raw.y_val, raw.y_test) if y is not None]
    names = sorted({str(v) for y in labels for v in y.reshape(-1)})
    if task == "regression":
        raise DataError(f"the targets are class names (e.g. {names[0]!r}), but the loss is for regression: "
                        f"use a classification loss (categorical_crossentropy) or a numeric target")
    index = {name: i for i, name in enumerate(names)}

    def encode(y: np.ndarray) -> np.ndarray:
        return np.array([index[str(v)] for v in y.reshape(-1)], dtype=np.int64)

    return replace(raw, y_train=encode(raw.y_train), y_val=None if raw.y_val is None else encode(raw.y_val),
                   y_test=None if raw.y_test is None else encode(raw.y_test), class_names=names)


def assemble(
    raw: RawData,
    params: DataParams,
    task: Task,
    validation_split: float,
    preprocessing: Preprocessing | None = None,
) -> DataBundle:
    """Split, shape the targets and preprocess: the path every source shares.

    The test split (for sources without one) is a fixed shuffle; the validation split
    is the source's own, else Keras's: the last `validation_split` of the training
    samples, before shuffling. Pass `preprocessing` (from a checkpoint) to reuse fitted
    statistics.
    """
    raw = _named_labels(raw, task)
    x_train, y_train = raw.x_train, raw.y_train
    if len(x_train) != len(y_train):
        raise DataError(f"{len(x_train)} inputs but {len(y_train)} targets: they must match")
    x_test, y_test = raw.x_test, raw.y_test
    if x_test is None:
        keep, held = _permuted_split(len(x_train), params.test_split)
        x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]
    x_val, y_val = raw.x_val, raw.y_val
    if x_val is None and validation_split > 0:
        cut = len(x_train) - max(1, int(round(len(x_train) * validation_split)))
        x_val, y_val = x_train[cut:], y_train[cut:]
        x_train, y_train = x_train[:cut], y_train[:cut]

    table = preprocessing.table if preprocessing else None
    if raw.encoder is not None:
        table = table or raw.encoder.fit(x_train)
        encoder = raw.encoder
        x_train = encoder.transform(x_train, table)
        x_val, x_test = (None if x is None else encoder.transform(x, table) for x in (x_val, x_test))

    if isinstance(x_train, LazyInputs):
        if params.normalize == "standardize":
            raise DataError("data.normalize: 'standardize' needs every training image in memory; "
                            "use normalize: scale (or imagenet) for image folders")
        # Image files have a known range (255), so fitting reads no pixels.
        prep = preprocessing or fit_preprocessing(params, torch.ones(1), raw.value_range)
        make: Callable[[Any, Any, str], Any] = lambda x, y, where: x.split(_targets(np.asarray(y), task, where), prep)  # noqa: E731
    else:
        xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
        prep = preprocessing or fit_preprocessing(params, xt, raw.value_range)

        def make(x: np.ndarray, y: np.ndarray, where: str) -> Split:
            tensor = xt if x is x_train else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            return Split(prep.apply(tensor).contiguous(), _targets(np.asarray(y), task, where))

    prep.value_range, prep.table, prep.raw_shape = raw.value_range, table, list(x_train.shape[1:])
    train = make(x_train, y_train, "training targets")
    val = make(x_val, y_val, "validation targets") if x_val is not None else None
    test = make(x_test, y_test, "test targets") if x_test is not None else None

    num_classes = None
    class_names = raw.class_names
    if task == "classification":
        seen = max(int(s.y.max()) for s in (train, val, test) if s is not None and len(s)) + 1
        num_classes = max(seen, len(class_names or []))
        class_names = class_names or [str(i) for i in range(num_classes)]
    input_shape = tuple(train.x.shape[1:])
    if params.augment is not None and len(input_shape) != 3:
        raise DataError(f"data.augment applies to images [C, H, W]; this data's samples are {list(input_shape)}")
    return DataBundle(train, val, test, task, input_shape, num_classes, class_names, prep)

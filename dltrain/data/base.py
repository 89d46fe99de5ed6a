"""What every data source shares: the parameters, the splits, and the preprocessing.

A source only reads arrays (`RawData`). Everything after that is one path for all
sources: targets shaped for the task, the test and validation splits, preprocessing
statistics from the training split only, and tensors ready for the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch

from .._registry import tag_value
from ..errors import DataError
from ..schema.data import SOURCES, DataParams
from ..schema.inputs import InputPlan
from ..schema.losses import Task
from .splits import ValidationMode, random_split, validation_indices

Shape = tuple[int, ...]


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
    chronological: bool = False  # samples in time order: validation is the last fraction, never a random draw
    token_ids: bool = False  # the inputs are token ids (text): kept as int64, never made floats
    named_classes: bool = False  # y holds indices into class_names, which the source read as text labels


class FeatureEncoder(Protocol):
    """Encodes raw feature cells (e.g. categorical columns) with state fitted on the training split."""

    def fit(self, x_train: np.ndarray) -> dict[str, Any]: ...

    def transform(self, x: np.ndarray, state: dict[str, Any]) -> np.ndarray: ...


class LazyInputs:
    """Inputs read on demand (image files): indexable like an array, shaped `(N, *sample)`."""

    shape: Shape
    decoded = True  # samples come out channels-first already (image files); False: as stored

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> "LazyInputs":
        raise NotImplementedError

    def split(self, y: torch.Tensor, prep: "Preprocessing") -> Any:
        """The split these inputs make with targets `y` (read batch by batch, not held as a tensor)."""
        raise NotImplementedError

    def fit_preprocessing(self, params: DataParams, value_range: float | None) -> "Preprocessing":
        """Statistics of these (training) inputs; image files have a known range (255), so fitting reads no pixels."""
        if params.normalize == "standardize":
            raise DataError(
                "data.normalize: 'standardize' needs every training image in memory; "
                "use normalize: scale (or imagenet) for image folders"
            )
        return fit_preprocessing(params, torch.ones(1), value_range)


Loader = Callable[[Any], Any]  # params -> RawData (arrays), or the strings a text source reads (`text.RawText`)


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

    channels_last: bool = False  # samples arrive [H, W, C]: transposed to [C, H, W] first
    flatten: bool = False
    scale: float | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    value_range: float | None = None  # the inputs' known maximum, to read new files (predict) the same way
    table: dict[str, Any] | None = None  # a FeatureEncoder's fitted state (tabular data)
    raw_shape: list[int] | None = None  # one sample as the source reads it, before `apply`
    tokenizer: str | None = None  # the fitted tokenizer's JSON text (stored as `Checkpoint.tokenizer`, not in `state`)

    def apply(self, x: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """The transforms, on a batch or a whole split; `in_place`: `x` is a float tensor nothing else holds, so it is
        scaled in its own memory (a split's inputs are then held once, not twice)."""
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        if self.flatten:
            x = x.reshape(x.shape[0], -1)
        if self.scale is not None:
            x, in_place = (x.div_(self.scale) if in_place else x / self.scale), True
        if self.mean is not None and self.std is not None:
            x = (x.sub_(self.mean) if in_place else x - self.mean).div_(self.std)
        return x

    def state(self) -> dict[str, Any]:
        return {
            "channels_last": self.channels_last,
            "flatten": self.flatten,
            "scale": self.scale,
            "mean": self.mean,
            "std": self.std,
            "value_range": self.value_range,
            "table": self.table,
            "raw_shape": self.raw_shape,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], tokenizer: str | None = None) -> "Preprocessing":
        return cls(**state, tokenizer=tokenizer)


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
    plan: InputPlan | None = None  # how the samples became model inputs (`dltrain.data.plan`)
    vocab_size: int | None = None  # text: the tokenizer's vocabulary (the default `input_dim` of an Embedding)

    @property
    def per_token(self) -> bool:
        """A language model's targets: one class (the next token) per input position, `[N, T]`."""
        return self.task == "classification" and self.train.y.ndim == 2

    def split(self, name: str) -> Split:
        chosen = {"train": self.train, "val": self.val, "test": self.test}[name]
        if chosen is None:
            raise DataError(
                f"this data has no '{name}' split: "
                + ("set fit.validation_split (e.g. 0.2)" if name == "val" else "it was not configured")
            )
        return chosen

    @property
    def confusion_classes(self) -> int:
        """Rows of a confusion matrix: the classes, 2 for one binary output, 0 when there is none."""
        if self.task == "classification":
            return 0 if self.per_token else self.num_classes or 0  # no vocabulary-sized matrix
        return 2 if self.task == "binary" and self.target_width == 1 else 0

    @property
    def target_width(self) -> int:
        """Classes for classification, outputs per sample otherwise."""
        if self.task == "classification":
            return self.num_classes or 0
        return self.train.y.shape[1]


def _targets(y: np.ndarray, task: Task, where: str, per_token: bool = False) -> torch.Tensor:
    """Targets shaped for the loss: class indices (`(N,)`, or `(N, T)` per token), or float columns `(N, k)`."""
    if task == "classification":
        if y.ndim == 2 and y.shape[1] > 1 and not per_token:  # one-hot, as Keras's categorical labels
            y = y.argmax(axis=1)
        y = y if per_token else y.reshape(-1)
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.mod(y, 1) == 0):
                raise DataError(f"{where}: class labels must be integers (or one-hot rows); received {y.dtype} values")
            y = y.astype(np.int64)
        if y.min() < 0:
            raise DataError(f"{where}: class labels must be 0 or more; received {int(y.min())}")
        return torch.from_numpy(y.astype(np.int64))
    y = y.astype(np.float32)
    return torch.from_numpy(y.reshape(len(y), -1))


def stat_axes(shape: Shape) -> tuple[int, ...]:
    """Axes to average over for standardization: all but features (or channels)."""
    if len(shape) == 3:  # [C, H, W]: per channel
        return (0, 2, 3)
    return tuple(range(len(shape)))  # [F] or [T, F]: per feature (last axis)


def fit_preprocessing(params: DataParams, x_train: torch.Tensor, value_range: float | None) -> Preprocessing:
    """Statistics from the training split only (no leak from validation or test)."""
    prep = Preprocessing(channels_last=bool(params.channels_last), flatten=params.flatten)
    if params.normalize in ("scale", "imagenet"):  # ImageNet statistics are for [0, 1] inputs
        prep.scale = float(value_range if value_range else x_train.abs().max().clamp_min(1e-12))
    elif params.normalize == "standardize":
        set_statistics(
            prep, *moments(prep.apply(x_train[i : i + STAT_ROWS]) for i in range(0, len(x_train), STAT_ROWS))
        )
    return prep


STAT_ROWS = 8192  # samples converted to float64 at a time for statistics (not the whole split at once)


def moments(chunks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) std over `stat_axes` of samples given in chunks, in float64 (Chan's merge of each
    chunk's mean and sum of squared deviations): the whole split's numbers, without a float64 copy of it."""
    count, mean, m2 = 0, torch.zeros(()), torch.zeros(())
    for chunk in chunks:
        x = chunk.to(torch.float64, copy=True)  # ours: the deviations are computed in its memory
        axes = stat_axes(tuple(x.shape[1:]))
        n = x.numel() // math.prod(x.shape[a] for a in range(1, x.ndim) if a not in axes)
        part_mean = x.mean(dim=axes, keepdim=True)[0]
        part_m2 = x.sub_(part_mean).square_().sum(dim=axes, keepdim=True)[0]
        delta, total = part_mean - mean, count + n
        mean, m2, count = mean + delta * (n / total), m2 + part_m2 + delta**2 * (count * n / total), total
    return mean, (m2 / max(count - 1, 1)).sqrt()


def set_statistics(prep: Preprocessing, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Store standardization statistics (float64 in): a constant feature is divided by 1, not by ~0."""
    prep.mean = mean.float()
    prep.std = std.clamp_min(1e-7).float().where(std > 1e-7, torch.ones_like(std).float())


def _named_labels(raw: RawData, task: Task) -> RawData:
    """String class labels (`'cat'`, `'setosa'`) → class indices, the names sorted, over every split (a streamed
    source encodes them itself, in one pass over its target column: `named_classes`)."""
    if raw.named_classes and task == "regression":
        _refuse_names(raw.class_names or [""])
    (y_train, y_val, y_test), names = class_indices([raw.y_train, raw.y_val, raw.y_test], task)
    if names is None:
        return raw
    return replace(raw, y_train=y_train, y_val=y_val, y_test=y_test, class_names=names)


def class_indices(
    ys: list[np.ndarray | None], task: Task, output: str | None = None
) -> tuple[list[Any], list[str] | None]:
    """Targets of every split (the first: training's) as class indices when they are class names,
    the names sorted over all of them; numbers are returned as they are, with no names."""
    if ys[0] is None or ys[0].dtype.kind not in "USO":
        return ys, None
    names = sorted({v for y in ys if y is not None for v in set(_strings(y).tolist())})
    if task == "regression":
        _refuse_names(names, output)
    sorted_names = np.asarray(names, dtype=str)
    return [None if y is None else np.searchsorted(sorted_names, _strings(y)).astype(np.int64) for y in ys], names


def _refuse_names(names: list[str], output: str | None = None) -> None:
    whose = f"output '{output}': " if output else ""
    raise DataError(
        f"{whose}the targets are class names (e.g. {names[0]!r}), but the loss is for regression: "
        f"use a classification loss (categorical_crossentropy) or a numeric target"
    )


def _strings(y: np.ndarray) -> np.ndarray:
    """(N,) str array of labels (no copy when they are strings already)."""
    y = np.asarray(y).reshape(-1)
    return y if y.dtype.kind == "U" else y.astype(str)


def _binary_names(names: list[str] | None, outputs: int) -> list[str] | None:
    """The two classes of a one-output binary task (label 0, label 1); None for multi-label outputs."""
    if names is not None and len(names) != 2:
        raise DataError(
            f"binary_crossentropy needs two classes; the targets hold {len(names)} "
            f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}): use categorical_crossentropy"
        )
    if outputs != 1:
        return names
    return names or ["0", "1"]


def check_arrays(raw: RawData) -> None:
    """Inputs and targets must be finite real numbers: a complex, text or NaN cell would train silently wrong."""
    for split in ("train", "val", "test"):
        for kind in ("x", "y"):
            array = getattr(raw, f"{kind}_{split}")
            if array is None or isinstance(array, LazyInputs):
                continue
            check_values(array, f"the {'inputs' if kind == 'x' else 'targets'} of the {split} split")


def check_training_left(training: int, total: int) -> None:
    """Held-out splits drawn from few samples can take them all; training on none is no run."""
    if not training:
        raise DataError(
            f"no training sample is left after holding out the test and validation samples ({total} in "
            f"all): give more data, or lower data.test_split and fit.validation_split"
        )


def check_sample_shapes(raw: RawData) -> None:
    """Held-out inputs (test, validation) are samples of the training inputs' shape, or the model cannot take them."""
    shape = list(raw.x_train.shape[1:])
    for split in ("val", "test"):
        x = getattr(raw, f"x_{split}")
        if x is not None and list(x.shape[1:]) != shape:
            raise DataError(
                f"the inputs of the {split} split are samples of {list(x.shape[1:])}, the training inputs of "
                f"{shape}: give held-out samples of the training shape"
            )


def check_values(array: np.ndarray, what: str) -> None:
    """One array (`what` names it in the message) holds finite real numbers, or one DataError saying where not."""
    if array.dtype.kind not in "biuf":
        received = {"c": "complex numbers", "U": "text", "S": "bytes", "O": "Python objects"}.get(
            array.dtype.kind, f"{array.dtype} values"
        )
        raise DataError(
            f"{what} hold {received}; dltrain needs real numbers (convert them, e.g. np.abs or .real for complex values)"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        count = int((~np.isfinite(array)).sum())
        raise DataError(
            f"{what} hold {count:,} missing or infinite value(s) (NaN/inf), the first at index "
            f"{tuple(int(i) for i in bad)}; fill them in or drop those samples"
        )


def looks_channels_last(shape: Shape) -> bool:
    """Keras's image layout `[H, W, C]`: a last axis of 1, 3 or 4 channels after two larger ones."""
    return len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] > 4 and shape[1] > 4


def check_layout(params: DataParams, sample: Shape, decoded: bool) -> None:
    """Refuse channels-last samples unless `data.channels_last` says what to do with them."""
    if params.channels_last and (decoded or len(sample) != 3):
        what = "image files are decoded channels-first already" if decoded else f"the samples are {list(sample)}"
        raise DataError(
            f"data.channels_last: true transposes [H, W, C] samples to [C, H, W]; {what}. Remove channels_last"
        )
    if params.channels_last is None and not decoded and looks_channels_last(sample):
        h, w, c = sample
        raise DataError(
            f"the samples are {list(sample)}, which looks channels-last ([height, width, channels], "
            f"Keras's layout); dltrain's images are channels-first [C, H, W]. Set data.channels_last: true "
            f"to transpose them to {[c, h, w]} (or data.channels_last: false if {list(sample)} is "
            f"already [C, H, W])"
        )


def _shares(array: np.ndarray, raw: RawData) -> bool:
    """Whether `array` may be (part of) an array the source gave, which must not be written to."""
    given = (raw.x_train, raw.x_val, raw.x_test)
    return any(isinstance(source, np.ndarray) and np.may_share_memory(array, source) for source in given)


def assemble(
    raw: RawData,
    params: DataParams,
    task: Task,
    validation_split: float,
    preprocessing: Preprocessing | None = None,
    validation_mode: ValidationMode = "auto",
) -> DataBundle:
    """Split, shape the targets and preprocess: the path every source shares.

    The test split (for sources without one) is a fixed shuffle; the validation split
    is the source's own (a `val/` folder, validation arrays or file), else a fixed
    draw of `validation_split` of the training samples (stratified for
    classification; see `splits`). Pass `preprocessing` (from a checkpoint) to reuse
    fitted statistics.
    """
    raw = _named_labels(raw, task)
    if raw.encoder is None:
        check_arrays(raw)
    x_train, y_train = raw.x_train, raw.y_train
    if len(x_train) != len(y_train):
        raise DataError(f"{len(x_train)} inputs but {len(y_train)} targets: they must match")
    if not len(x_train):
        raise DataError("the training data hold no samples; give at least one")
    if raw.encoder is None and not raw.token_ids:  # text is padded per split, tables are cells
        check_sample_shapes(raw)
    # The splits are drawn as row indices first and the inputs gathered once at the end, so the source's inputs
    # are copied once (not once for the test split and again for the validation split).
    rows: np.ndarray | None = None  # the training rows among the source's (None: all of them)
    x_test, y_test, test_rows = raw.x_test, raw.y_test, None
    if x_test is None:
        rows, test_rows = random_split(len(x_train), params.test_split)
        y_test, y_train = y_train[test_rows], y_train[rows]
    x_val, y_val, val_rows = raw.x_val, raw.y_val, None
    if x_val is None and validation_split > 0:
        keep, held = validation_indices(
            np.asarray(y_train), validation_split, validation_mode, task == "classification", raw.chronological
        )
        everything = np.arange(len(x_train)) if rows is None else rows
        val_rows, rows = everything[held], everything[keep]
        y_val, y_train = y_train[held], y_train[keep]
    x_test = x_test if test_rows is None else x_train[test_rows]
    x_val = x_val if val_rows is None else x_train[val_rows]
    x_train = x_train if rows is None else x_train[rows]
    check_training_left(len(x_train), len(raw.x_train))

    table = preprocessing.table if preprocessing else None
    if raw.encoder is not None:
        table = table or raw.encoder.fit(x_train)
        encoder = raw.encoder
        x_train = encoder.transform(x_train, table)
        x_val, x_test = (None if x is None else encoder.transform(x, table) for x in (x_val, x_test))

    lazy = x_train if isinstance(x_train, LazyInputs) else None
    check_layout(params, tuple(x_train.shape[1:]), lazy is not None and lazy.decoded)
    if lazy is not None:
        prep = preprocessing or lazy.fit_preprocessing(params, raw.value_range)
        make: Callable[[Any, Any, str], Any] = lambda x, y, where: x.split(_targets(np.asarray(y), task, where), prep)  # noqa: E731
    else:
        dtype = np.int64 if raw.token_ids else np.float32  # token ids stay integers
        xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=dtype))
        prep = preprocessing or fit_preprocessing(params, xt, raw.value_range)

        def make(x: np.ndarray, y: np.ndarray, where: str) -> Split:
            tensor = xt if x is x_train else torch.from_numpy(np.ascontiguousarray(x, dtype=dtype))
            own = tensor.is_floating_point() and not _shares(tensor.numpy(), raw)  # a copy made here: scaled in place
            return Split(prep.apply(tensor, own).contiguous(), _targets(np.asarray(y), task, where, params.per_token))

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
    elif task == "binary":
        class_names = _binary_names(class_names, train.y.shape[1])
        for split in (s for s in (train, val, test) if s is not None and len(s)):
            if split.y.min() < 0 or split.y.max() > 1:
                raise DataError(
                    f"binary_crossentropy needs targets between 0 and 1; these hold values from "
                    f"{split.y.min().item():g} to {split.y.max().item():g}: use categorical_crossentropy "
                    f"for class indices"
                )
    input_shape = tuple(train.x.shape[1:])
    if params.augment is not None and len(input_shape) != 3:
        raise DataError(f"data.augment applies to images [C, H, W]; this data's samples are {list(input_shape)}")
    return DataBundle(train, val, test, task, input_shape, num_classes, class_names, prep)

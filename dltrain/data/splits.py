"""How held-out samples are chosen: the test split and the validation split.

Both are fixed, seeded random draws, independent of the run's `seed`, so every run of a
config (and `evaluate --split val|test`) sees the same samples. The validation split
of a classification task is stratified: each class gives its share, so a source whose
rows are sorted by class (an image folder, a sorted CSV) still validates on every
class. Keras's `validation_split` (the *last* fraction, before shuffling) is only used
when asked for (`fit.validation_mode: last`) or for chronological data (time series),
where a random draw would let the model train on the future.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..schema.config import ValidationMode

# Independent of the run's seed, so every run (and `evaluate`) sees the same held-out sets.
SPLIT_SEED = 20240101
VALIDATION_SEED = 20240102


def distinct_files(files: dict[str, Path | None]) -> None:
    """Refuse held-out files that are the training file or each other (`files`: config key -> path, the
    training file first): validation or test numbers measured on the rows trained on, or a test set
    that also chose the best epoch, would look right and be wrong."""
    given = [(key, path) for key, path in files.items() if path is not None and Path(path).is_file()]
    for i, (key, path) in enumerate(given):
        for other, other_path in given[:i]:
            if os.path.samefile(path, other_path):
                raise DataError(
                    f"data.{key} and data.{other} name the same file '{path}': the {_role(key)} numbers would be "
                    f"measured on the {_role(other)} rows. Give a separate file, or leave data.{key} out "
                    f"to hold out a share of data.{next(iter(files))} instead"
                )


def _role(key: str) -> str:
    return "validation" if "val" in key else "test" if "test" in key else "training"


def held_count(n: int, fraction: float) -> int:
    """How many of `n` samples a `fraction` holds out: at least one, never all."""
    return min(max(1, int(round(n * fraction))), max(n - 1, 1))


def random_split(n: int, fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices, each in source order: a fixed shuffle, so the held-out set never changes."""
    order = np.random.default_rng(seed).permutation(n)
    held = held_count(n, fraction)
    return np.sort(order[held:]), np.sort(order[:held])


def last_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): the last `fraction` of the samples (Keras's `validation_split`)."""
    cut = n - held_count(n, fraction)
    return np.arange(cut), np.arange(cut, n)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) with each class held out in proportion to its size (largest remainders)."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    total = held_count(len(labels), fraction)
    quota = counts * total / len(labels)
    share = np.floor(quota).astype(np.int64)
    remainder = np.argsort(-(quota - share), kind="stable")[: total - int(share.sum())]
    share[remainder] += 1
    order = np.random.default_rng(seed).permutation(len(labels))
    held = np.concatenate([order[inverse[order] == c][: share[c]] for c in range(len(classes))])
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def class_labels(y: np.ndarray) -> np.ndarray:
    """One label per sample to stratify on: the class index (one-hot rows read by their argmax)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(len(y), -1)[:, 0]


def validation_indices(
    y: np.ndarray, fraction: float, mode: ValidationMode, classification: bool, chronological: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of the training samples for `fit.validation_split`."""
    if mode == "last" or (mode == "auto" and chronological):
        return last_split(len(y), fraction)
    if classification:
        return stratified_split(class_labels(y), fraction, VALIDATION_SEED)
    return random_split(len(y), fraction, VALIDATION_SEED)

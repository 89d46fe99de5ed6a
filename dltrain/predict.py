"""`dltrain predict`: a trained model on new files, through the preprocessing stored at training time.

Each input kind has a reader (by file suffix) that turns a file into samples in the
source's raw units (what the data source would have produced); a CSV is read the way
the run's input plan says its source read rows (a table, a time series, or numbers).
From there the path is the training path: the stored `Preprocessing`, then the network
(its input adapter included), then the final activation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data import Preprocessing
from .data.base import check_values
from .data.images import IMAGE_SUFFIXES, read_image
from .data.tabular import numeric_rows, read_features, with_table
from .data.timeseries import read_series, windows
from .data.tokenize import encode_texts, fixed_length, from_json
from .errors import DataError
from .inference import describe_rows, image_values, text_problem
from .schema.inputs import InputPlan

CHUNK = 1024  # samples per forward pass


@dataclass
class Samples:
    """The samples read from one file, and how each is named in the output."""

    x: torch.Tensor  # (N, *raw_shape), float32, in the source's raw units
    names: list[str | int]


Reader = Callable[[Path, Preprocessing, InputPlan], Samples]


def _shape_text(shape: list[int] | None) -> str:
    return str(list(shape or []))


def _as_samples(array: np.ndarray, path: Path, prep: Preprocessing) -> Samples:
    """One sample (the file's name) or a stack of samples (their row indices), checked against the model."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"'{path}' holds {array.dtype} values; the model needs numbers")
    check_values(array, f"the values in '{path}'")
    if array.ndim and not len(array) and tuple(array.shape[1:]) == tuple(prep.raw_shape or ()):
        raise DataError(f"'{path}' holds no samples; give at least one")
    shape = tuple(prep.raw_shape or ())
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tuple(array.shape) == shape:
        return Samples(x[None], [path.name])
    if tuple(array.shape[1:]) == shape:
        return Samples(x, list(range(len(x))))
    raise DataError(
        f"'{path}' holds an array of shape {list(array.shape)}; this model takes samples of shape "
        f"{_shape_text(prep.raw_shape)} (one sample, or a stack [N, {', '.join(map(str, shape))}])"
    )


def read_image_file(path: Path, prep: Preprocessing, plan: InputPlan) -> Samples:
    """An image decoded to the model's `[C, H, W]`, in the training data's value range."""
    shape = prep.raw_shape or []
    if prep.channels_last and len(shape) == 3:  # the source read [H, W, C]
        shape = [shape[2], shape[0], shape[1]]
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DataError(
            f"'{path}' is an image, but this model takes samples of shape {_shape_text(shape)}, "
            f"not images [C, H, W]; give .npy/.npz arrays or a .csv instead"
        )
    x = torch.from_numpy(image_values(read_image(path, shape[0], (shape[1], shape[2])).numpy(), prep.value_range))
    if prep.channels_last:
        x = x.permute(1, 2, 0)  # back to the source's [H, W, C]: `Preprocessing.apply` transposes
    return Samples(x[None], [path.name])


def read_npy(path: Path, prep: Preprocessing, plan: InputPlan) -> Samples:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"'{path}' is not a readable .npy array ({str(exc).splitlines()[0]})") from None
    return _as_samples(array, path, prep)


NPZ_KEYS = ("x", "x_test", "x_train")


def read_npz(path: Path, prep: Preprocessing, plan: InputPlan) -> Samples:
    """The archive's only array, else its `x` (or `x_test`, `x_train`)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            chosen = keys if len(keys) == 1 else [k for k in NPZ_KEYS if k in keys][:1]
            if not chosen:
                raise DataError(f"'{path}' holds {', '.join(keys)}; name the inputs 'x' (or keep one array)")
            array = archive[chosen[0]]
    except (OSError, ValueError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file ({str(exc).splitlines()[0]})") from None
    return _as_samples(array, path, prep)


def read_csv(path: Path, prep: Preprocessing, plan: InputPlan) -> Samples:
    """Rows of a CSV, as the plan's source read them: a table (named feature columns, categories
    one-hot), a time series (one sample per full window, named by its last row), else numbers by position.

    Only the last kind may come without a header row (its columns have no names to match).
    """
    state = prep.table or {}
    if plan.kind == "table":
        x = torch.from_numpy(read_features(path, state))
        return Samples(x, list(range(len(x))))
    if plan.kind == "series":  # a time series: one sample per full window, named by its last row
        series = with_table(path, lambda table: read_series(table, state["columns"]))
        x = torch.from_numpy(windows(series, state["window"]))
        return Samples(x, list(range(state["window"] - 1, state["window"] - 1 + len(x))))
    return _as_samples(numeric_rows(path).astype(np.float32), path, prep)


def text_samples(texts: list[str], prep: Preprocessing, names: list[str] | None = None) -> torch.Tensor:
    """(N, T) int64 ids of raw texts, tokenized, truncated and padded as the training texts were.

    `names` say where each text came from, for the message about one that cannot be read (default: --text)."""
    for i, text in enumerate(texts):
        if problem := text_problem(text):
            raise DataError(f"{names[i] if names else f'--text #{i + 1}'} {problem}")
    if prep.tokenizer is None:
        raise DataError("this model was not trained on text; give it the kind of files it was trained on")
    return torch.from_numpy(encode_texts(from_json(prep.tokenizer), texts))


def check_not_language_model(prep: Preprocessing) -> None:
    """A language model scores every position of running text: `generate` uses it, not `predict`."""
    if prep.tokenizer is not None and fixed_length(from_json(prep.tokenizer)) is None:
        raise DataError("this model is a language model: continue text with `dltrain generate CHECKPOINT --prompt ...`")


def read_text_file(path: Path, prep: Preprocessing, plan: InputPlan) -> Samples:
    """A .txt file is one text (as `text_folder` reads its files)."""
    from .data.text import read_utf8

    return Samples(text_samples([read_utf8(path)], prep, [f"'{path}'"]), [path.name])


def read_parquet_rows(path: Path, prep: Preprocessing, plan: InputPlan) -> Samples:
    """Rows of a Parquet file, by column name: encoded as the `parquet` (or `csv`) source did."""
    from .data.parquet import read_features as parquet_features

    state = prep.table or {}
    if "categories" not in state:
        raise DataError(
            f"'{path}': this model was not trained on table columns, so a Parquet file has nothing to give it"
        )
    x = torch.from_numpy(parquet_features(path, state))
    return Samples(x, list(range(len(x))))


READERS: dict[str, Reader] = {
    ".txt": read_text_file,
    **{suffix: read_image_file for suffix in IMAGE_SUFFIXES},
    ".npy": read_npy,
    ".npz": read_npz,
    ".csv": read_csv,
    ".parquet": read_parquet_rows,
}


def read_input(path: Path, prep: Preprocessing, plan: InputPlan) -> Samples:
    """The samples in one input file, by its suffix."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(
            f"'{path}': unknown input type '{path.suffix}'. Give image files "
            f"({', '.join(IMAGE_SUFFIXES)}), .npy/.npz arrays, a .csv with a header row or .txt texts"
        )
    if not path.is_file():
        raise DataError(f"no file at '{path}'")
    return reader(path, prep, plan)


def scores(outputs: torch.Tensor, task: str) -> np.ndarray:
    """Network outputs → probabilities (softmax for classes, sigmoid for binary) or values, in NumPy."""
    if task == "classification":
        outputs = outputs.float().softmax(dim=-1)
    elif task == "binary":
        outputs = outputs.float().sigmoid()
    return outputs.float().numpy()


@torch.inference_mode()
def predict_scores(
    network: torch.nn.Module, prep: Preprocessing, x: torch.Tensor, task: str, device: torch.device
) -> np.ndarray:
    """Scores for raw samples `(N, *raw_shape)`, CHUNK per forward pass (`predict` and `serve` both run this)."""
    network.eval()
    parts = [
        scores(network(prep.apply(x[start : start + CHUNK]).to(device)).cpu(), task)
        for start in range(0, len(x), CHUNK)
    ]
    return np.concatenate(parts)


def predict_files(
    network: torch.nn.Module,
    prep: Preprocessing,
    plan: InputPlan,
    inputs: list[Path],
    task: str,
    class_names: list[str],
    top_k: int,
    device: torch.device,
    texts: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Predictions for every sample of every input file, then for every text of `texts`, in order."""
    check_not_language_model(prep)
    predictions: list[dict[str, Any]] = []
    read = (read_input(Path(path), prep, plan) for path in inputs)  # one file at a time, as it is predicted
    extra = [Samples(text_samples(texts, prep), list(texts))] if texts else []
    for samples in itertools.chain(read, extra):
        rows = describe_rows(predict_scores(network, prep, samples.x, task, device), task, class_names, top_k)
        predictions += [{"input": name, **row} for name, row in zip(samples.names, rows)]
    return predictions

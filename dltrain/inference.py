"""The torch-free half of inference: raw inputs in, prediction rows out.

`predict` (files), `serve` (JSON and uploads) and the ONNX server (which must not import
torch) all go through these functions, so an image is decoded, a table row encoded and
an output described the same way whichever path a sample takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import DataError

PIL_MODES = {1: "L", 3: "RGB"}
TEXT_EXTRA = "pip install 'dltrain[text]'"


def decode_image(source: str | Path | IO[bytes], channels: int, size: tuple[int, int]) -> np.ndarray:
    """An image file (a path or bytes) as uint8 `(C, H, W)`, resized bilinearly to `size` (height, width).

    Raises DataError naming `source` when it is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as file:
            image = file.convert(PIL_MODES[channels]).resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        name = f"'{source}'" if isinstance(source, (str, Path)) else "the data"
        raise DataError(f"{name} is not a readable image ({exc})") from None
    array = array[:, :, None] if array.ndim == 2 else array  # (H, W, C)
    return array.transpose(2, 0, 1).copy()  # (C, H, W), contiguous and writable


def image_values(pixels: np.ndarray, value_range: float | None) -> np.ndarray:
    """uint8 pixels as float32 in the training data's units (0..value_range, e.g. 0..16 for digits)."""
    x = pixels.astype(np.float32)
    if value_range and value_range != 255.0:
        x = x * np.float32(value_range / 255.0)
    return x


def encode_table(x: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """(N, F) cells → (N, F') float32, categories one-hot (an unseen category: all zeros)."""
    parts = []
    for i, name in enumerate(state["features"]):
        if name in state["categories"]:
            parts.append(_one_hot(x[:, i], state["categories"][name]))
        else:
            parts.append(x[:, i : i + 1].astype(np.float32))
    return np.concatenate(parts, axis=1)


def tokenizers_package() -> Any:
    """Hugging Face `tokenizers` (an optional extra), or a DataError saying how to install it."""
    try:
        import tokenizers
    except ImportError:
        raise DataError(f"text models need the 'tokenizers' package (not installed here): {TEXT_EXTRA}") from None
    return tokenizers


def tokenizer_from_json(text: str) -> Any:
    """A fitted tokenizer from its JSON text (as a checkpoint stores it, or the file beside an export)."""
    return tokenizers_package().Tokenizer.from_str(text)


def encode_texts(tokenizer: Any, texts: list[str]) -> np.ndarray:
    """(N, T) int64 ids of texts, truncated and padded (id 0) to the tokenizer's fixed length."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    return np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), -1)


def _one_hot(cells: np.ndarray, categories: list[str]) -> np.ndarray:
    """(N,) cells → (N, len(categories)) float32 by a binary search in the sorted categories (unseen: zeros)."""
    values = cells.astype(str)
    known = np.asarray(categories, dtype=str)
    onehot = np.zeros((len(values), len(known)), dtype=np.float32)
    if len(known) == 0:
        return onehot
    order = np.argsort(known, kind="stable")  # the stored categories are sorted already; older checkpoints too
    position = np.minimum(np.searchsorted(known[order], values), len(known) - 1)
    hit = known[order][position] == values
    onehot[np.flatnonzero(hit), order[position[hit]]] = 1.0
    return onehot


def probabilities(outputs: np.ndarray, task: str) -> np.ndarray:
    """Logits → probabilities (softmax for classes, sigmoid for binary); regression values unchanged."""
    outputs = outputs.astype(np.float32)
    if task == "classification":
        shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if task == "binary":
        return 1.0 / (1.0 + np.exp(-outputs))
    return outputs


def describe_rows(values: np.ndarray, task: str, class_names: list[str], top_k: int) -> list[dict[str, Any]]:
    """One `{prediction, top_k}` (classification), `{prediction, probability}` (binary) or `{prediction}` per row.

    `values` are probabilities for classification and binary tasks, outputs for regression.
    """
    if task == "classification":
        k = min(top_k, values.shape[1])
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        return [
            {
                "prediction": class_names[int(idx[0])],
                "top_k": [[class_names[int(i)], round(float(row[i]), 6)] for i in idx],
            }
            for row, idx in zip(values, order)
        ]
    if task == "binary":
        named = len(class_names) == 2 and values.shape[-1] == 1  # one output: the probability of class_names[1]
        return [
            {
                "prediction": class_names[int(p.reshape(-1)[0] > 0.5)] if named else _plain((p > 0.5).astype(np.int64)),
                "probability": _plain(p, 6),
            }
            for p in values
        ]
    return [{"prediction": _plain(row.astype(np.float32), 6)} for row in values]


def describe_named(values: dict[str, np.ndarray], heads: list[dict[str, Any]], top_k: int) -> list[dict[str, Any]]:
    """One row per sample of a model with named outputs: `prediction` by output name, and under `outputs`
    each output's own row (`describe_rows` with its task and classes). `heads` are the outputs in order,
    each `{name, task, class_names}`."""
    described = {
        head["name"]: describe_rows(values[head["name"]], head["task"], head.get("class_names") or [], top_k)
        for head in heads
    }
    count = len(next(iter(described.values())))
    return [
        {
            "prediction": {name: rows[i]["prediction"] for name, rows in described.items()},
            "outputs": {name: rows[i] for name, rows in described.items()},
        }
        for i in range(count)
    ]


def _plain(row: np.ndarray, digits: int | None = None) -> Any:
    """A row as a number when it holds one value, else a list."""
    values = [round(float(v), digits) if digits else int(v) for v in row.reshape(-1)]
    return values[0] if len(values) == 1 else values


def apply_steps(x: np.ndarray, steps: list[dict[str, Any]]) -> np.ndarray:
    """An export's `preprocessing` steps (`export.preprocessing_steps`) run in NumPy, as `Preprocessing.apply` runs them."""
    for step in steps:
        x = STEPS[step["op"]](x, step)
    return x


STEPS = {
    "tokenize": lambda x, step: x,  # text instances are tokenized when read (`serve.spec`)
    "flatten": lambda x, step: x.reshape(len(x), -1),
    "divide": lambda x, step: x / np.float32(step["value"]),
    "standardize": lambda x, step: (
        (x - np.asarray(step["mean"], dtype=np.float32)) / np.asarray(step["std"], dtype=np.float32)
    ),
}

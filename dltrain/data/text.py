"""Text sources: `text_csv`, `text_folder` (classification) and `text_file` (language modelling).

A text source reads strings (`RawText`); `assemble_text` splits them first, fits the
tokenizer on the training split only, turns every split into int64 ids, and hands the
ids to the shared `assemble` (targets, class names, tensors).

- Classification: each text becomes `[max_length]` ids (truncated, padded with 0).
  The test and validation splits are drawn as for every source (validation stratified).
- Language modelling: the running text is split in order (the test set is its last
  `test_split`, validation the last `validation_split` of the rest, cut at line ends),
  each part is tokenized and cut into windows: x = ids[i : i + T], y = ids[i + 1 : i + T + 1],
  a next-token target at every position.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._registry import did_you_mean
from ..errors import DataError
from ..schema.data import (
    ClassifiedTextParams,
    RunningTextParams,
    TextCsvParams,
    TextFileParams,
    TextFolderParams,
    TextParams,
    TokenizerParams,
)
from ..schema.losses import Task
from . import tokenize
from .base import DataBundle, Preprocessing, RawData, assemble, register_source
from .splits import ValidationMode, held_count, random_split, validation_indices


@dataclass
class RawText:
    """Texts as a source reads them: labelled texts (classification) or running text (language modelling)."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # each text's origin (file, line), for messages
    val: "RawText | None" = None  # the source's own splits (train/ val/ test/ folders)
    test: "RawText | None" = None
    running: str | None = None  # language modelling: the whole text, in order
    class_names: list[str] | None = None  # the classes of integer labels, when the source names them (hf ClassLabel)


def read_utf8(path: Path) -> str:
    """A file's text; bytes that are not UTF-8 are an error naming the file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"'{path}' line {line}: bytes that are not UTF-8 ({data[exc.start : exc.start + 4]!r}); "
            f"save the file as UTF-8"
        ) from None


def check_not_empty(raw: RawText) -> None:
    """Every text must hold something: an empty one would train on padding alone."""
    for text, where in zip(raw.texts, raw.where):
        if not text.strip():
            raise DataError(f"{where}: empty text; remove it or fill it in")
    if not raw.texts:
        raise DataError("the data holds no texts")


# --- sources --------------------------------------------------------------------------


@register_source(TextCsvParams)
def text_csv(p: TextCsvParams) -> RawText:
    """Texts and their classes from a CSV file: one `text` column, one `target` column."""
    if not p.path.is_file():
        raise DataError(f"data.path: no file at '{p.path}'. Give a CSV file with a header row.")
    rows = list(csv.reader(io.StringIO(read_utf8(p.path), newline="")))
    if not rows:
        raise DataError(f"'{p.path}' is empty; it needs a header row and one row per text")
    header = [name.strip() for name in rows[0]]
    columns = []
    for key, name in (("text", p.text), ("target", p.target)):
        if name not in header:
            raise DataError(
                f"data.{key}: '{p.path}' has no column '{name}'.{did_you_mean(name, header)} "
                f"Columns: {', '.join(header)}"
            )
        columns.append(header.index(name))
    raw = RawText()
    next_line = 2 + sum(cell.count("\n") for cell in rows[0])
    for row in rows[1:]:
        line, next_line = next_line, next_line + 1 + sum(cell.count("\n") for cell in row)  # quoted cells span lines
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"'{p.path}' line {line}: {len(row)} cells, but the header has {len(header)}")
        label = row[columns[1]].strip()
        if not label:
            raise DataError(f"'{p.path}' line {line}, column '{p.target}': missing class; fill it in or drop the row")
        raw.texts.append(row[columns[0]])
        raw.labels.append(label)
        raw.where.append(f"'{p.path}' line {line}, column '{p.text}'")
    check_not_empty(raw)
    return raw


def _class_folder(folder: Path, names: list[str] | None = None) -> RawText:
    """The .txt files of `folder/<class>/`, classes in sorted order (or `names`)."""
    classes = names or sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    raw = RawText()
    for name in classes:
        sub = folder / name
        files = sorted(sub.glob("*.txt")) if sub.is_dir() else []
        for file in files:
            raw.texts.append(read_utf8(file))
            raw.labels.append(name)
            raw.where.append(f"'{file}'")
    return raw


@register_source(TextFolderParams)
def text_folder(p: TextFolderParams) -> RawText:
    """`.txt` files in one subfolder per class; `train/` (and optional `val/`, `test/`) when present."""
    if not p.path.is_dir():
        raise DataError(f"data.path: no folder at '{p.path}'. Give a folder holding one subfolder of .txt per class")
    root = p.path / "train" if (p.path / "train").is_dir() else p.path
    raw = _class_folder(root)
    if not raw.texts:
        raise DataError(f"data.path: '{root}' holds no <class>/*.txt files; put each class's .txt files in a subfolder")
    for split in ("val", "test"):
        if root != p.path and (p.path / split).is_dir():
            held = _class_folder(p.path / split)
            unknown = sorted(set(held.labels) - set(raw.labels))
            if unknown:
                raise DataError(f"'{p.path / split}' has classes that train/ has not: {', '.join(unknown)}")
            check_not_empty(held)
            setattr(raw, split, held)
    check_not_empty(raw)
    return raw


def text_files(path: Path | list[Path]) -> list[Path]:
    """The files of `data.path`: one file, a list, or a folder's .txt files (sorted)."""
    paths = path if isinstance(path, list) else [path]
    files: list[Path] = []
    for item in paths:
        if item.is_dir():
            found = sorted(item.rglob("*.txt"))
            if not found:
                raise DataError(f"data.path: the folder '{item}' holds no .txt files")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"data.path: no file or folder at '{item}'")
    return files


@register_source(TextFileParams)
def text_file(p: TextFileParams) -> RawText:
    """Running text for a language model: the files' text, joined in order."""
    return running_text([(f"'{f}'", read_utf8(f)) for f in text_files(p.path)])


def running_text(parts: list[tuple[str, str]]) -> RawText:
    """One running text from (origin, text) parts; an empty part is an error naming it."""
    for where, text in parts:
        if not text.strip():
            raise DataError(f"{where}: empty text; remove it or fill it in")
    if not parts:
        raise DataError("the data holds no text")
    return RawText(running="\n".join(text.rstrip("\n") for _, text in parts) + "\n")


# --- from strings to ids ----------------------------------------------------------------


def make_tokenizer(p: TokenizerParams, texts: list[str], classify: bool) -> Any:
    """The tokenizer of `data.tokenizer`: loaded from `path`, or fitted on `texts` (the training split's)."""
    tokenizer = tokenize.load_tokenizer_file(p.path) if p.path is not None else tokenize.fit_tokenizer(p, texts)
    if classify:
        length = p.max_length
        if p.padding == "longest":
            length = min(p.max_length, max(tokenize.token_counts(tokenizer, texts)))
        tokenize.set_length(tokenizer, max(length, 1))
    return tokenizer


def _check_lengths(tokenizer: Any, raw: RawText, p: TokenizerParams) -> None:
    """With `truncation: false`, a text longer than max_length is an error naming it."""
    if p.truncation:
        return
    length = tokenize.fixed_length(tokenizer) or p.max_length
    for count, where in zip(tokenize.token_counts(tokenizer, raw.texts), raw.where):
        if count > length:
            raise DataError(
                f"{where}: {count} tokens, more than data.tokenizer.max_length={length} "
                f"(truncation: false); raise max_length or set truncation: true"
            )


def _pick(raw: RawText, index: np.ndarray) -> RawText:
    return RawText([raw.texts[i] for i in index], [raw.labels[i] for i in index], [raw.where[i] for i in index])


def classified_splits(
    raw: RawText, params: ClassifiedTextParams, validation_split: float, mode: ValidationMode
) -> tuple[RawText, RawText | None, RawText]:
    """(train, val, test) texts: the source's own splits, else the fixed draws every source uses."""
    train, val, test = raw, raw.val, raw.test
    if test is None:
        keep, held = random_split(len(train.texts), params.test_split)
        train, test = _pick(train, keep), _pick(train, held)
    if val is None and validation_split > 0:
        keep, held = validation_indices(np.array(train.labels), validation_split, mode, True, False)
        train, val = _pick(train, keep), _pick(train, held)
    return train, val, test


def _line_cut(text: str, at: int) -> int:
    """The position just after the line end nearest `at` (so no line is split between two sets)."""
    end = text.find("\n", at)
    return len(text) if end < 0 else end + 1


def running_splits(text: str, params: TextParams, validation_split: float) -> tuple[str, str | None, str]:
    """(train, val, test) parts of running text, in order: test is the last `test_split`, val the last of the rest."""
    test_at = _line_cut(text, len(text) - held_count(len(text), params.test_split))
    train, test = text[:test_at], text[test_at:]
    val = None
    if validation_split > 0:
        val_at = _line_cut(train, len(train) - held_count(len(train), validation_split))
        train, val = train[:val_at], train[val_at:]
    return train, val, test


def windows(ids: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each (N, length): x = ids[i : i + length], y = the same window one token on."""
    starts = np.arange(0, len(ids) - length, stride)
    if len(starts) == 0:
        return np.zeros((0, length), dtype=np.int64), np.zeros((0, length), dtype=np.int64)
    index = starts[:, None] + np.arange(length)[None, :]  # (N, length)
    return ids[index], ids[index + 1]


def _language_model(
    raw: RawText, params: RunningTextParams, validation_split: float, tokenizer_json: str | None
) -> tuple[RawData, Any]:
    """Windows of every split of running text, with the tokenizer fitted on the training part."""
    assert raw.running is not None
    train, val, test = running_splits(raw.running, params, validation_split)
    tokenizer = (
        tokenize.from_json(tokenizer_json) if tokenizer_json else make_tokenizer(params.tokenizer, [train], False)
    )
    length, stride = params.sequence_length, params.stride or params.sequence_length
    parts: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for name, text in (("train", train), ("val", val), ("test", test)):
        parts[name] = None if text is None else windows(tokenize.encode_running(tokenizer, text), length, stride)
    for name, part in parts.items():
        if part is not None and len(part[0]) == 0:
            raise DataError(
                f"the {name} part of the text holds fewer than sequence_length + 1 = {length + 1} tokens; "
                f"give more text or a shorter data.sequence_length"
            )
    x_train, y_train = parts["train"]  # type: ignore[misc]
    x_test, y_test = parts["test"]  # type: ignore[misc]
    rawdata = RawData(x_train, y_train, x_test, y_test, chronological=True, token_ids=True)
    if parts["val"] is not None:
        rawdata.x_val, rawdata.y_val = parts["val"]
    return rawdata, tokenizer


def _classification(
    raw: RawText,
    params: ClassifiedTextParams,
    validation_split: float,
    mode: ValidationMode,
    tokenizer_json: str | None,
) -> tuple[RawData, Any]:
    """Ids `[max_length]` of every split's texts, with the tokenizer fitted on the training texts."""
    train, val, test = classified_splits(raw, params, validation_split, mode)
    if tokenizer_json:
        tokenizer = tokenize.from_json(tokenizer_json)
    else:
        tokenizer = make_tokenizer(params.tokenizer, train.texts, True)
    for split in (train, val, test):
        if split is not None:
            _check_lengths(tokenizer, split, params.tokenizer)

    def ids(split: RawText) -> np.ndarray:
        return tokenize.encode_texts(tokenizer, split.texts)

    def labels(split: RawText) -> np.ndarray:
        return _labels(split.labels)

    rawdata = RawData(ids(train), labels(train), ids(test), labels(test), raw.class_names, token_ids=True)
    if val is not None:
        rawdata.x_val, rawdata.y_val = ids(val), labels(val)
    return rawdata, tokenizer


def _labels(labels: list[str]) -> np.ndarray:
    """Class labels as strings (names, sorted into indices by `assemble`), or integers when every one is a number."""
    if labels and all(label.lstrip("-").isdigit() for label in labels):
        return np.array([int(label) for label in labels], dtype=np.int64)
    return np.array(labels, dtype=str)


def assemble_text(
    raw: RawText,
    params: TextParams,
    task: Task,
    validation_split: float,
    preprocessing: Preprocessing | None = None,
    validation_mode: ValidationMode = "auto",
) -> DataBundle:
    """Split the texts, fit the tokenizer on the training split, turn text into ids, then the shared path."""
    stored = preprocessing.tokenizer if preprocessing is not None else None
    if isinstance(params, RunningTextParams):
        if raw.running is None:
            raise DataError("a language model needs running text (data.source: text_file)")
        if task != "classification":
            raise DataError(
                f"a language model predicts the next token among the vocabulary: use "
                f"compile.loss: sparse_categorical_crossentropy (received a {task} loss)"
            )
        rawdata, tokenizer = _language_model(raw, params, validation_split, stored)
    elif isinstance(params, ClassifiedTextParams):
        rawdata, tokenizer = _classification(raw, params, validation_split, validation_mode, stored)
    else:
        raise TypeError(f"{type(params).__name__} is neither running text nor classified texts")
    bundle = assemble(rawdata, params, task, 0.0, preprocessing, validation_mode)
    bundle.preprocessing.tokenizer = tokenizer.to_str()
    vocab = int(tokenizer.get_vocab_size())
    if params.per_token:  # every token is a class; the classes have no names to list
        return replace(bundle, num_classes=vocab, class_names=None, vocab_size=vocab)
    return replace(bundle, vocab_size=vocab)

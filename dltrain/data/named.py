"""Several named inputs and targets: `x_train_<input>` / `y_train_<output>` arrays, split and preprocessed together.

A model with named inputs or several outputs takes a dict of tensors per batch. `Named`
is that dict, indexed like one tensor (a slice or an index tensor takes the same
samples from every array), so the batching, the trainer's loop and DDP handle it as
they handle one tensor. Splits, targets and preprocessing follow the one-array path
(`base.assemble`) per array: the same test and validation draws for every array, each
input's statistics from the training split only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DataError
from ..schema.losses import Task
from .base import (
    DataBundle,
    FeatureEncoder,
    Preprocessing,
    _binary_names,
    _targets,
    check_layout,
    class_indices,
    fit_preprocessing,
)
from .splits import ValidationMode, random_split, validation_indices

Shape = tuple[int, ...]


class Named(dict):
    """Tensors by name, all with the same samples: indexed, moved and measured like one tensor."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return dict.__getitem__(self, key)
        return Named({name: value[key] for name, value in self.items()})

    @property
    def shape(self) -> tuple[int]:
        return (len(next(iter(self.values()))),)

    @property
    def device(self) -> torch.device:
        return next(iter(self.values())).device

    def to(self, device: torch.device, non_blocking: bool = False) -> "Named":
        return Named({name: value.to(device, non_blocking=non_blocking) for name, value in self.items()})

    def cpu(self) -> "Named":
        return Named({name: value.cpu() for name, value in self.items()})

    def float(self) -> "Named":
        return Named({name: value.float() for name, value in self.items()})

    def contiguous(self) -> "Named":
        return Named({name: value.contiguous() for name, value in self.items()})


Arrays = dict[str, np.ndarray]


@dataclass
class NamedRaw:
    """Named arrays as a source reads them; test (and validation) arrays None when it has none."""

    x_train: Arrays
    y_train: Arrays
    x_test: Arrays | None = None
    y_test: Arrays | None = None
    x_val: Arrays | None = None
    y_val: Arrays | None = None
    value_range: dict[str, float | None] = field(default_factory=dict)
    class_names: dict[str, list[str] | None] = field(default_factory=dict)
    encoders: dict[str, FeatureEncoder] = field(default_factory=dict)  # by input: table cells -> numbers


@dataclass
class Head:
    """One model output: its task and how wide its targets are."""

    name: str
    task: Task
    num_classes: int | None
    class_names: list[str] | None
    width: int  # classes for classification, values per sample otherwise


@dataclass
class NamedPreprocessing:
    """One `Preprocessing` per input, fitted on its training array."""

    inputs: dict[str, Preprocessing]
    tokenizer = None  # named inputs are arrays; text comes through one input (`Preprocessing.tokenizer`)

    def apply(self, x: Named) -> Named:
        return Named({name: self.inputs[name].apply(value) for name, value in x.items()})

    def state(self) -> dict[str, Any]:
        return {"inputs": {name: prep.state() for name, prep in self.inputs.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "NamedPreprocessing":
        return cls({name: Preprocessing.from_state(s) for name, s in state["inputs"].items()})


def preprocessing_from_state(state: dict[str, Any], tokenizer: str | None = None) -> Any:
    """A stored preprocessing state: one input's (with a text model's tokenizer), or every named input's."""
    return NamedPreprocessing.from_state(state) if "inputs" in state else Preprocessing.from_state(state, tokenizer)


@dataclass
class NamedBundle(DataBundle):
    """Every split of named inputs and targets. `task`, `num_classes`, `class_names` and
    `input_shape` describe the first output and input (what a checkpoint's fixed fields hold)."""

    heads: dict[str, Head] = field(default_factory=dict)
    input_shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def confusion_classes(self) -> int:
        return 0  # per output: `dltrain.nn.outputs` counts them

    @property
    def target_width(self) -> int:
        return next(iter(self.heads.values())).width


# --- sources that give named arrays ------------------------------------------------------

NamedReader = Callable[[Any, list[str], list[str]], NamedRaw]
NAMED_SOURCES: dict[str, NamedReader] = {}


def named_source(name: str) -> Callable[[NamedReader], NamedReader]:
    def register(reader: NamedReader) -> NamedReader:
        NAMED_SOURCES[name] = reader
        return reader

    return register


def read_named(params: Any, inputs: list[str], outputs: list[str]) -> NamedRaw:
    """The named arrays of the configured source, or why it cannot give them."""
    reader = NAMED_SOURCES.get(params.source)
    if reader is None:
        raise DataError(
            f"data.source '{params.source}' gives one input and one target; named inputs "
            f"({', '.join(inputs)}) and outputs ({', '.join(outputs)}) come from "
            f"{' or '.join(sorted(NAMED_SOURCES))} (npz: x_train_<input>, y_train_<output>)"
        )
    return reader(params, inputs, outputs)


@named_source("npz")
def _npz(params: Any, inputs: list[str], outputs: list[str]) -> NamedRaw:
    """`x_train_<input>`, `y_train_<output>`, and the same for `test` and `val` when present."""
    from .npz import open_npz

    with open_npz(params.path) as archive:
        keys = set(archive.keys())

        def split(name: str, required: bool) -> tuple[Arrays | None, Arrays | None]:
            wanted = [f"x_{name}_{i}" for i in inputs] + [f"y_{name}_{o}" for o in outputs]
            present = [k for k in wanted if k in keys]
            if not present and not required:
                return None, None
            missing = [k for k in wanted if k not in keys]
            if missing:
                raise DataError(
                    f"'{params.path}' has no array {', '.join(repr(k) for k in missing)}; it holds "
                    f"{', '.join(sorted(keys))}. A model with inputs {inputs} and outputs {outputs} reads "
                    f"x_{name}_<input> and y_{name}_<output>"
                )
            return (
                {i: archive[f"x_{name}_{i}"] for i in inputs},
                {o: archive[f"y_{name}_{o}"] for o in outputs},
            )

        x_train, y_train = split("train", True)
        x_test, y_test = split("test", False)
        x_val, y_val = split("val", False)
    assert x_train is not None and y_train is not None
    ranges = {i: 255.0 if a.dtype == np.uint8 else None for i, a in x_train.items()}
    return NamedRaw(x_train, y_train, x_test, y_test, x_val, y_val, value_range=ranges)


def _digit_features(flat: np.ndarray) -> np.ndarray:
    """Four numbers a digit's shape gives without a model: ink, and its share in the top, left and centre."""
    image = flat.reshape(-1, 8, 8)
    ink = image.sum(axis=(1, 2)) + 1e-6
    top = image[:, :4].sum(axis=(1, 2)) / ink
    left = image[:, :, :4].sum(axis=(1, 2)) / ink
    centre = image[:, 2:6, 2:6].sum(axis=(1, 2)) / ink
    return np.stack([ink / (64 * 16), top, left, centre], axis=1).astype(np.float32)


DIGIT_VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "image": lambda x: x.reshape(-1, 1, 8, 8),
    "flat": lambda x: x,
    "rows": lambda x: x.reshape(-1, 8, 8),
    "features": _digit_features,
}
DIGIT_TARGETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "digit": lambda y: y,
    "even": lambda y: (y % 2 == 0).astype(np.float32).reshape(-1, 1),
}


@named_source("digits")
def _digits(params: Any, inputs: list[str], outputs: list[str]) -> NamedRaw:
    """`data.inputs` / `data.targets` name the views of each digit the model's inputs and outputs take."""
    from sklearn.datasets import load_digits

    views = params.inputs or {}
    targets = params.targets or ({outputs[0]: "digit"} if len(outputs) == 1 else {})  # one output: the digit
    for what, names, given, key in (("input", inputs, views, "inputs"), ("output", outputs, targets, "targets")):
        missing = [n for n in names if n not in given]
        if missing:
            raise DataError(
                f"data.{key} names no view for the model {what}(s) {', '.join(missing)}; e.g. "
                f"{key}: {{{missing[0]}: {'image' if key == 'inputs' else 'digit'}}}"
            )
    bunch = load_digits()
    flat = bunch.data.astype(np.float32)
    x = {name: DIGIT_VIEWS[views[name]](flat) for name in inputs}
    y = {name: DIGIT_TARGETS[targets[name]](bunch.target.astype(np.int64)) for name in outputs}
    ranges = {name: 16.0 if views[name] != "features" else None for name in inputs}
    labels = {name: [str(i) for i in range(10)] if targets[name] == "digit" else ["odd", "even"] for name in outputs}
    return NamedRaw(x, y, value_range=ranges, class_names=dict(labels))


# --- one path for every named source -----------------------------------------------------


def _take(arrays: Arrays, index: np.ndarray) -> Arrays:
    return {name: array[index] for name, array in arrays.items()}


def _head(name: str, task: Task, ys: list[torch.Tensor], names: list[str] | None) -> Head:
    if task == "classification":
        seen = max(int(y.max()) for y in ys if len(y)) + 1
        count = max(seen, len(names or []))
        return Head(name, task, count, names or [str(i) for i in range(count)], count)
    width = ys[0].shape[1]
    if task == "binary":
        for y in ys:
            if len(y) and (y.min() < 0 or y.max() > 1):
                raise DataError(f"output '{name}': binary_crossentropy needs targets between 0 and 1")
        return Head(name, task, None, _binary_names(names, width), width)
    return Head(name, task, None, None, width)


def _class_indices(raw: NamedRaw, tasks: dict[str, Task]) -> NamedRaw:
    """Each output's class names (strings) → indices, the names sorted over every split, as for one target."""
    for name, task in tasks.items():
        splits = [ys for ys in (raw.y_train, raw.y_val, raw.y_test) if ys is not None]
        encoded, names = class_indices([ys[name] for ys in splits], task, name)
        if names is not None:
            for ys, y in zip(splits, encoded):
                ys[name] = y
            raw.class_names[name] = names
    return raw


def _encode(x: Arrays, encoders: dict[str, FeatureEncoder], tables: dict[str, Any]) -> Arrays:
    """The arrays with each encoded input's table cells turned into numbers (categories one-hot)."""
    return {name: encoders[name].transform(a, tables[name]) if name in encoders else a for name, a in x.items()}


def assemble_named(
    raw: NamedRaw,
    params: Any,
    tasks: dict[str, Task],
    validation_split: float,
    preprocessing: NamedPreprocessing | None = None,
    validation_mode: ValidationMode = "auto",
) -> NamedBundle:
    """Split, shape the targets and preprocess named arrays, as `base.assemble` does one array."""
    counts = {len(a) for a in (*raw.x_train.values(), *raw.y_train.values())}
    if len(counts) != 1:
        sizes = {n: len(a) for n, a in (*raw.x_train.items(), *raw.y_train.items())}
        raise DataError(f"the training arrays hold different numbers of samples: {sizes}; they must match")
    raw = _class_indices(raw, tasks)
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    n = counts.pop()
    if x_test is None or y_test is None:
        keep, held = random_split(n, params.test_split)
        x_test, y_test = _take(x_train, held), _take(y_train, held)
        x_train, y_train = _take(x_train, keep), _take(y_train, keep)
    x_val, y_val = raw.x_val, raw.y_val
    if (x_val is None or y_val is None) and validation_split > 0:
        first = next(iter(tasks))
        keep, held = validation_indices(
            np.asarray(y_train[first]), validation_split, validation_mode, tasks[first] == "classification", False
        )
        x_val, y_val = _take(x_train, held), _take(y_train, held)
        x_train, y_train = _take(x_train, keep), _take(y_train, keep)

    tables = {
        name: preprocessing.inputs[name].table if preprocessing else encoder.fit(x_train[name])
        for name, encoder in raw.encoders.items()
    }
    x_train, x_test = _encode(x_train, raw.encoders, tables), _encode(x_test, raw.encoders, tables)
    x_val = None if x_val is None else _encode(x_val, raw.encoders, tables)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for name, a in x_train.items()}
    if preprocessing is None:
        preps = {}
        for name, xt in tensors.items():
            check_layout(params, tuple(xt.shape[1:]), False)
            preps[name] = fit_preprocessing(params, xt, raw.value_range.get(name))
        preprocessing = NamedPreprocessing(preps)
    for name, prep in preprocessing.inputs.items():
        prep.value_range, prep.raw_shape = raw.value_range.get(name), list(tensors[name].shape[1:])
        prep.table = tables.get(name)

    def make(x: Arrays, y: Arrays, where: str) -> Any:
        from .base import Split

        inputs = Named(
            {
                name: preprocessing.inputs[name]
                .apply(tensors[name] if x is x_train else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
                .contiguous()
                for name, a in x.items()
            }
        )
        targets = Named({name: _targets(np.asarray(y[name]), tasks[name], f"{where} of '{name}'") for name in tasks})
        return Split(inputs, targets)  # type: ignore[arg-type]

    train = make(x_train, y_train, "training targets")
    val = make(x_val, y_val, "validation targets") if x_val is not None and y_val is not None else None
    test = make(x_test, y_test, "test targets")
    splits = [s for s in (train, val, test) if s is not None]
    heads = {
        name: _head(name, task, [s.y[name] for s in splits], raw.class_names.get(name)) for name, task in tasks.items()
    }
    shapes = {name: tuple(value.shape[1:]) for name, value in train.x.items()}
    lead = next(iter(heads.values()))
    return NamedBundle(
        train,
        val,
        test,
        lead.task,
        next(iter(shapes.values())),
        lead.num_classes,
        lead.class_names,
        preprocessing,  # type: ignore[arg-type]
        heads=heads,
        input_shapes=shapes,
    )


@named_source("csv")
def _csv(params: Any, inputs: list[str], outputs: list[str]) -> NamedRaw:
    """`inputs: {input: [columns]}` and `target: {output: column}` (one of each may be plain); the columns
    read as for one input (categorical ones one-hot), `validation_path` and `test_path` with the same columns."""
    from .tabular import HELD_OUT, NamedColumns, Table, held_out_file, named_columns, named_rows, with_table

    columns = params.inputs or ({inputs[0]: params.features} if len(inputs) == 1 and params.features else {})
    targets = params.target if isinstance(params.target, dict) else {outputs[0]: params.target}
    for key, names, given in (("inputs", inputs, columns), ("target", outputs, targets)):
        missing = [n for n in names if n not in given]
        if missing:
            raise DataError(
                f"data.{key} names no column(s) for the model's {', '.join(missing)}; e.g. "
                f"{key}: {{{missing[0]}: {'[column, ...]' if key == 'inputs' else 'column'}}}"
            )
    wanted = {name: list(columns[name]) for name in inputs}, {name: targets[name] for name in outputs}
    text = set(params.categorical)

    def training(table: Table) -> tuple[NamedColumns, tuple[Arrays, Arrays]]:
        spec = named_columns(table, *wanted, params.categorical)
        return spec, named_rows(table, spec)

    spec, (x, y) = with_table(params.path, training, text)
    held: dict[str, tuple[Arrays, Arrays]] = {}
    for key, split in HELD_OUT.items():
        path = held_out_file(params, key)
        if path is not None:
            held[split] = with_table(path, lambda table, key=key: named_rows(table, spec, key, y), text)  # type: ignore[misc]
    x_val, y_val = held.get("val", (None, None))
    x_test, y_test = held.get("test", (None, None))
    return NamedRaw(x, y, x_test, y_test, x_val, y_val, value_range=dict.fromkeys(inputs), encoders=dict(spec.encoders))

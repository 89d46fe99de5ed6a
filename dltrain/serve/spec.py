"""What one instance of a served model is, as JSON: read, checked, and described for OpenAPI.

The spec comes from what training stored (the checkpoint's preprocessing state, or the
`raw_input` of an export's JSON): the raw sample shape, the value range, the table
encoding. Each kind of input (`INSTANCE_KINDS`) says which JSON forms it accepts and
turns one instance into a raw sample, the same array `predict` reads from a file.
Every kind accepts plain numbers in the raw sample's shape; a text model's instances are
strings, tokenized by the model's own tokenizer. Torch-free: the ONNX server uses it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import DataError
from ..inference import decode_image, encode_table, encode_texts, image_values, tokenizer_from_json


class InstanceError(ValueError):
    """One instance that cannot be read: which field (None: the whole instance), and why."""

    def __init__(self, field: str | int | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class InputSpec:
    """One raw sample: its shape, its value range (images), its table encoding (CSV sources)."""

    shape: tuple[int, ...]
    value_range: float | None = None
    table: dict[str, Any] | None = None
    tokenizer: str | None = None  # a text model's tokenizer (its JSON text)
    planned: str | None = None  # the input plan's sample kind (None: an export written before plans)

    @classmethod
    def from_state(cls, state: dict[str, Any], tokenizer: str | None = None, kind: str | None = None) -> "InputSpec":
        """From `Preprocessing.state()` and the input plan's kind, or an export's `raw_input` (its `kind` included)."""
        shape = state.get("raw_shape", state.get("shape")) or []
        return cls(
            tuple(int(n) for n in shape),
            state.get("value_range"),
            state.get("table"),
            tokenizer,
            kind or state.get("kind"),
        )

    @property
    def dtype(self) -> type:
        """What one raw sample holds: int64 token ids (text), else float32."""
        return np.int64 if self.tokenizer is not None else np.float32

    @property
    def kind(self) -> str:
        if self.tokenizer is not None:
            return "text"
        if self.planned is not None:
            return self.planned
        if self.table and "categories" in self.table:  # an export from before input plans
            return "table"
        if self.table and "columns" in self.table:
            return "series"
        if len(self.shape) == 3 and self.shape[0] in (1, 3):
            return "image"
        return "array"

    def read(self, instance: Any) -> np.ndarray:
        """One instance → a float32 raw sample of `shape`; InstanceError when it does not fit."""
        return INSTANCE_KINDS[self.kind].read(instance, self)

    def read_image(self, data: bytes) -> np.ndarray:
        """Image bytes (an upload) → a raw sample, as `predict` reads an image file."""
        if self.kind != "image":
            raise InstanceError(None, f"this model takes {self.describe()}, not images")
        channels, height, width = self.shape
        try:
            pixels = decode_image(io.BytesIO(data), channels, (height, width))
        except DataError as exc:
            raise InstanceError(None, str(exc)) from None
        return image_values(pixels, self.value_range)

    def describe(self) -> str:
        return INSTANCE_KINDS[self.kind].summary(self)

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of one instance (for OpenAPI)."""
        return INSTANCE_KINDS[self.kind].schema(self)

    def info(self) -> dict[str, Any]:
        """The spec as `/metadata` shows it."""
        info: dict[str, Any] = {"kind": self.kind, "shape": list(self.shape), "accepts": self.describe()}
        if self.value_range is not None:
            info["value_range"] = self.value_range
        if self.kind == "table":
            info["features"] = self.table["features"]  # type: ignore[index]
            info["categories"] = self.table["categories"]  # type: ignore[index]
        if self.kind == "series":
            info["columns"] = self.table["columns"]  # type: ignore[index]
            info["window"] = self.table["window"]  # type: ignore[index]
        return info


@dataclass(frozen=True)
class InstanceKind:
    """How one kind of input is read from JSON, described in words, and in JSON Schema."""

    read: Callable[[Any, InputSpec], np.ndarray]
    summary: Callable[[InputSpec], str]
    schema: Callable[[InputSpec], dict[str, Any]]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shape_of(value: Any) -> list[int] | None:
    """The shape of nested lists of numbers, or None when they are ragged or hold anything else."""
    if _is_number(value):
        return []
    if not isinstance(value, list) or not value:
        return None
    shapes = [_shape_of(item) for item in value]
    if shapes[0] is None or any(s != shapes[0] for s in shapes):
        return None
    return [len(value), *shapes[0]]


def read_numbers(instance: Any, spec: InputSpec) -> np.ndarray:
    """Nested lists of numbers in exactly the raw sample's shape."""
    shape = _shape_of(instance)
    if shape is None:
        raise InstanceError(None, f"expected {_numbers_text(spec)}; received {_received(instance)}")
    if tuple(shape) != spec.shape:
        raise InstanceError(None, f"expected numbers of shape {list(spec.shape)}; received shape {shape}")
    x = np.asarray(instance, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InstanceError(None, "every number must be finite")
    return x


def _numbers_text(spec: InputSpec) -> str:
    return f"numbers of shape {list(spec.shape)} (nested lists)"


def _received(value: Any) -> str:
    if isinstance(value, list):
        return "lists that are ragged or hold something other than numbers" if value else "an empty list"
    return f"a {type(value).__name__}" if not isinstance(value, str) else "a string"


def _numbers_schema(shape: tuple[int, ...]) -> dict[str, Any]:
    if not shape:
        return {"type": "number"}
    return {"type": "array", "minItems": shape[0], "maxItems": shape[0], "items": _numbers_schema(shape[1:])}


def _any_of(spec: InputSpec, *forms: dict[str, Any]) -> dict[str, Any]:
    numbers = {**_numbers_schema(spec.shape), "title": f"numbers {list(spec.shape)}"}
    return {"anyOf": [*forms, numbers], "description": spec.describe()}


# --- images: base64 strings (or {"b64": ...}), or numbers -------------------------------------------


def read_image_instance(instance: Any, spec: InputSpec) -> np.ndarray:
    if isinstance(instance, dict) and set(instance) == {"b64"}:
        field: str | None = "b64"
        instance = instance["b64"]
    elif isinstance(instance, str):
        field = None
    else:
        return read_numbers(instance, spec)
    if not isinstance(instance, str):
        raise InstanceError(field, f"expected a base64 string; received {_received(instance)}")
    text = instance.split(",", 1)[1] if instance.startswith("data:") else instance  # a data: URL
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InstanceError(field, "not valid base64 (encode the image file's bytes)") from None
    try:
        return spec.read_image(data)
    except InstanceError as exc:
        raise InstanceError(field, exc.message) from None


def _image_summary(spec: InputSpec) -> str:
    return (
        f'images: base64 strings of image files (or {{"b64": ...}}), decoded to {list(spec.shape)} '
        f"as training did; or {_numbers_text(spec)} in the training data's units"
    )


def _image_schema(spec: InputSpec) -> dict[str, Any]:
    b64 = {"type": "string", "contentEncoding": "base64", "title": "image file, base64"}
    return _any_of(
        spec,
        b64,
        {
            "type": "object",
            "properties": {"b64": b64},
            "required": ["b64"],
            "additionalProperties": False,
            "title": "{b64}",
        },
    )


# --- tables: records by column name (CSV-style), or the encoded numbers ------------------------------


def _cell(record: dict[str, Any], name: str, categorical: bool) -> Any:
    """One feature's cell: a number (numeric column) or its text (categorical column)."""
    if name not in record:
        raise InstanceError(name, "missing; every feature column is needed")
    value = record[name]
    if categorical:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InstanceError(name, f"expected a category (a string); received {_received(value)}")
        return str(value).strip()
    if isinstance(value, str):  # a CSV cell
        try:
            value = float(value.strip())
        except ValueError:
            raise InstanceError(name, f"'{value}' is not a number; this column is numeric") from None
    if not _is_number(value) or not math.isfinite(value):
        raise InstanceError(name, f"expected a finite number; received {value!r}")
    return float(value)


def read_table_instance(instance: Any, spec: InputSpec) -> np.ndarray:
    if not isinstance(instance, dict):
        return read_numbers(instance, spec)
    state = spec.table or {}
    cells = [_cell(instance, name, name in state["categories"]) for name in state["features"]]
    row = np.empty((1, len(cells)), dtype=object)
    row[0, :] = cells
    return encode_table(row, state)[0]


def _table_summary(spec: InputSpec) -> str:
    features = (spec.table or {})["features"]
    return (
        f"records by column name ({', '.join(features)}), as rows of the training CSV; "
        f"or {_numbers_text(spec)} already encoded"
    )


def _table_schema(spec: InputSpec) -> dict[str, Any]:
    state = spec.table or {}
    properties = {
        name: (
            {"type": "string", "examples": state["categories"][name][:5]}
            if name in state["categories"]
            else {"type": "number"}
        )
        for name in state["features"]
    }
    return _any_of(spec, {"type": "object", "properties": properties, "required": state["features"], "title": "record"})


# --- time series: a window of records by column name, or numbers [window, features] -------------------


def read_series_instance(instance: Any, spec: InputSpec) -> np.ndarray:
    state = spec.table or {}
    if not (isinstance(instance, list) and instance and all(isinstance(r, dict) for r in instance)):
        return read_numbers(instance, spec)
    if len(instance) != state["window"]:
        raise InstanceError(None, f"expected a window of {state['window']} records; received {len(instance)}")
    rows = []
    for step, record in enumerate(instance):
        try:
            rows.append([_cell(record, name, False) for name in state["columns"]])
        except InstanceError as exc:
            raise InstanceError(f"{step}.{exc.field}", exc.message) from None
    return np.asarray(rows, dtype=np.float64).astype(np.float32)


def _series_summary(spec: InputSpec) -> str:
    state = spec.table or {}
    return (
        f"windows of {state['window']} records by column name ({', '.join(state['columns'])}), oldest first; "
        f"or {_numbers_text(spec)}"
    )


def _series_schema(spec: InputSpec) -> dict[str, Any]:
    state = spec.table or {}
    record = {
        "type": "object",
        "properties": {name: {"type": "number"} for name in state["columns"]},
        "required": state["columns"],
    }
    return _any_of(
        spec,
        {
            "type": "array",
            "items": record,
            "minItems": state["window"],
            "maxItems": state["window"],
            "title": "window of records",
        },
    )


# --- text: strings, tokenized as training did, or ids -----------------------------------------------


_tokenizer = functools.lru_cache(maxsize=4)(tokenizer_from_json)  # one per served model, built once


def read_text_instance(instance: Any, spec: InputSpec) -> np.ndarray:
    if not isinstance(instance, str):
        return read_numbers(instance, spec).astype(np.int64)
    return encode_texts(_tokenizer(spec.tokenizer or ""), [instance])[0]


def _text_summary(spec: InputSpec) -> str:
    return f"texts (strings), tokenized as the training texts were; or {spec.shape[0]} token ids"


def _text_schema(spec: InputSpec) -> dict[str, Any]:
    return _any_of(spec, {"type": "string", "title": "text"})


INSTANCE_KINDS: dict[str, InstanceKind] = {
    "text": InstanceKind(read_text_instance, _text_summary, _text_schema),
    "array": InstanceKind(read_numbers, lambda spec: _numbers_text(spec), lambda spec: _any_of(spec)),
    "image": InstanceKind(read_image_instance, _image_summary, _image_schema),
    "table": InstanceKind(read_table_instance, _table_summary, _table_schema),
    "series": InstanceKind(read_series_instance, _series_summary, _series_schema),
}


# --- named inputs: an object with one value per input ------------------------------------------------


@dataclass(frozen=True)
class NamedSpec:
    """One instance of a model with named inputs: an object with one value per input name, each value
    read by that input's own `InputSpec` (so an image input takes base64 too).

    The batcher moves one array per sample, so a read instance is packed into one flat
    float32 row (each input raveled, in the model's input order); `unpack` gives the
    arrays back by name for the model.
    """

    inputs: dict[str, InputSpec]
    dtype: ClassVar[type] = np.float32
    kind: ClassVar[str] = "named"

    @property
    def names(self) -> list[str]:
        return list(self.inputs)

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(math.prod(spec.shape) for spec in self.inputs.values()),)

    def read(self, instance: Any) -> np.ndarray:
        """`{input: value, ...}` → one packed float32 row; InstanceError naming the input that does not fit."""
        if not isinstance(instance, dict):
            example = ", ".join(f'"{name}": ...' for name in self.names)
            received = "a list" if isinstance(instance, list) else _received(instance)
            raise InstanceError(
                None, f"expected an object with one value per input, {{{example}}}; received {received}"
            )
        for name in instance:
            if name not in self.inputs:
                raise InstanceError(name, f"unknown input '{name}'; this model's inputs are {', '.join(self.names)}")
        parts = []
        for name, spec in self.inputs.items():
            if name not in instance:
                raise InstanceError(name, f"input '{name}' is missing; give every input: {', '.join(self.names)}")
            try:
                parts.append(spec.read(instance[name]).astype(np.float32).reshape(-1))
            except InstanceError as exc:
                field = name if exc.field is None else f"{name}.{exc.field}"
                raise InstanceError(field, f"input '{name}': {exc.message}") from None
        return np.concatenate(parts)

    def columns(self, columns: Any) -> list[dict[str, Any]]:
        """The columnar form `{input: [value per sample], ...}` as instances; InstanceError naming the input."""
        if not isinstance(columns, dict):
            raise InstanceError(None, f"expected an object with one list per input ({', '.join(self.names)})")
        for name in [*columns, *self.names]:
            if name not in self.inputs:
                raise InstanceError(name, f"unknown input '{name}'; this model's inputs are {', '.join(self.names)}")
            if name not in columns:
                raise InstanceError(name, f"input '{name}' is missing; give every input: {', '.join(self.names)}")
            if not isinstance(columns[name], list):
                raise InstanceError(name, f"input '{name}': expected a list with one value per sample")
        counts = {name: len(columns[name]) for name in self.names}
        if len(set(counts.values())) > 1:
            raise InstanceError(
                None, f"the inputs hold different numbers of samples ({counts}); give each one per sample"
            )
        return [{name: columns[name][i] for name in self.names} for i in range(counts[self.names[0]])]

    def unpack(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Packed rows (N, sum of input sizes) → each input's (N, *shape), by name."""
        arrays, start = {}, 0
        for name, spec in self.inputs.items():
            size = math.prod(spec.shape)
            arrays[name] = np.ascontiguousarray(x[:, start : start + size].reshape(len(x), *spec.shape))
            start += size
        return arrays

    def read_image(self, data: bytes) -> np.ndarray:
        raise InstanceError(
            None,
            f"this model takes named inputs ({', '.join(self.names)}): POST them as JSON to /predict, an image as base64",
        )

    def describe(self) -> str:
        each = "; ".join(f"{name}: {spec.describe()}" for name, spec in self.inputs.items())
        return f"an object with one value per input ({each})"

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {name: spec.schema() for name, spec in self.inputs.items()},
            "required": self.names,
            "additionalProperties": False,
            "description": self.describe(),
        }

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "accepts": self.describe(), "inputs": {n: s.info() for n, s in self.inputs.items()}}

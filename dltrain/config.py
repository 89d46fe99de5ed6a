"""The config: its schema, validation, and errors located by file and line.

`compose.py` turns the YAML files (bases, `--set`, `${...}`) into plain data and the
origin of each value; pydantic validates that data against a schema assembled from the
registries; every error is mapped back to its dotted path and origin, and all of them
are reported at once.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, ValidationError, field_validator

from . import backbones  # noqa: F401  (registers the VGG16 and Backbone layers)
from . import compose
from ._params import Params, tagged_union
from .data import SOURCES
from .errors import ConfigError
from .layers import LAYERS
from .losses import LOSSES
from .metrics import METRICS
from .optim import OPTIMIZERS
from .callbacks import CALLBACKS
from .compose import Origins, PathKey, problem
from .schedules import SCHEDULES

LayerConfig = tagged_union(LAYERS)
DataConfig = tagged_union(SOURCES, tag="source", allow_string=True)
OptimizerConfig = tagged_union(OPTIMIZERS, allow_string=True)
LossConfig = tagged_union(LOSSES, allow_string=True)
MetricConfig = tagged_union(METRICS, allow_string=True)
ScheduleConfig = tagged_union(SCHEDULES, allow_string=True)
CallbackConfig = tagged_union(CALLBACKS, allow_string=True)

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ModelConfig(Params):
    """`model:` the input shape (optional) and the layers, in order."""

    input_shape: Annotated[list[PositiveInt], Field(min_length=1)] | None = None
    layers: Annotated[list[LayerConfig], Field(min_length=1)]  # type: ignore[valid-type]


class CompileConfig(Params):
    """`compile:` optimizer, loss and metrics, as Keras's `model.compile`."""

    optimizer: OptimizerConfig = Field("adam", validate_default=True)  # type: ignore[valid-type]
    loss: LossConfig  # type: ignore[valid-type]
    metrics: list[MetricConfig] = []  # type: ignore[valid-type]
    lr_schedule: ScheduleConfig | None = None  # type: ignore[valid-type]


class FitConfig(Params):
    """`fit:` how to train, as Keras's `model.fit`."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    validation_split: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    shuffle: bool = True
    device: str = "auto"
    strategy: Literal["auto", "ddp", "single"] = "auto"  # auto: ddp when torchrun starts several processes
    precision: Literal["32", "bf16-mixed", "16-mixed"] = "32"
    compile_model: bool = False
    deterministic: bool = False
    gradient_clip: Annotated[float, Field(gt=0.0)] | None = None
    accumulate_grad_batches: PositiveInt = 1
    num_workers: NonNegativeInt | None = None  # DataLoader workers for sources that decode files (image_folder)
    callbacks: list[CallbackConfig] = []  # type: ignore[valid-type]

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps; received {value!r}")
        return value


class Config(Params):
    """A whole dltrain config file."""

    name: str | None = None
    seed: int | None = None
    data: DataConfig  # type: ignore[valid-type]
    model: ModelConfig
    compile: CompileConfig
    fit: FitConfig = FitConfig()


# --- a loaded config -----------------------------------------------------------------


@dataclass
class LoadedConfig:
    """A validated config with where each value came from (file:line, --set, checkpoint)."""

    config: Config
    raw: dict[str, Any]
    source: str
    origins: Origins = field(default_factory=dict)
    sources: list[dict[str, str]] = field(default_factory=list)  # the files it was composed from, with hashes

    def error(self, path: PathKey, message: str) -> ConfigError:
        """One problem at `path`: 'exp.yaml:7: fit.batch_size: ... (overrides base.yaml:12)'."""
        return ConfigError([problem(self.origins, path, message, self.source)], self.source)

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in: what `config.yaml` and checkpoints hold."""
        return self.config.model_dump(mode="json", by_alias=False)


# --- validation -----------------------------------------------------------------------


def _raw_path(raw: Any, loc: tuple[Any, ...]) -> PathKey:
    """Map pydantic's `loc` onto the user's data, dropping union tags it inserts."""
    path: list[str | int] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            if part in (node.get("type"), node.get("source"), str(node.get("type")).lower()):
                continue
            if part.startswith("function-"):
                continue
        if isinstance(node, str) and isinstance(part, str):  # `optimizer: adam` shorthand
            continue
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)


def _message(err: dict[str, Any]) -> str:
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind in ("unknown_key", "unknown_name", "missing_tag"):
        return msg
    if kind == "missing":
        return "missing required key"
    msg = msg[0].lower() + msg[1:] if msg else msg
    msg = msg.removeprefix("value error, ")
    if "received" in msg:
        return msg
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{msg}; received {shown}"


def validate(raw: dict[str, Any], source: str, origins: Origins | None = None) -> LoadedConfig:
    """Validate plain data; raise one ConfigError listing every problem."""
    loaded = LoadedConfig(config=None, raw=raw, source=source, origins=origins or {})  # type: ignore[arg-type]
    try:
        loaded.config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        errors = [(_raw_path(raw, err["loc"]), err) for err in exc.errors()]
        for path, err in errors:
            if err["type"] == "missing" and _explained_by_typo(path, errors):
                continue
            if err["type"] == "unknown_name" and isinstance(err["input"], dict):
                path += ("source" if "source" in err["input"] else "type",)
            problems.append(problem(loaded.origins, path, _message(err), source))
        problems.sort(key=lambda p: _line_number(p.where))
        raise ConfigError(problems, source) from None
    return loaded


def _explained_by_typo(path: PathKey, errors: list[tuple[PathKey, dict[str, Any]]]) -> bool:
    """A missing key that a misspelled sibling already points to (`unit` → 'units')."""
    hint = f"Did you mean '{path[-1]}'?"
    return any(p[:-1] == path[:-1] and e["type"] == "unknown_key" and hint in e["msg"] for p, e in errors)


def _line_number(where: str) -> int:
    tail = where.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 10**9


def load_config(path: str | Path, overrides: list[str] | None = None) -> LoadedConfig:
    """Compose (bases, `--set`, `${...}`) and validate a YAML config file."""
    composed = compose.load(path, overrides)
    composed.raw.setdefault("name", Path(path).stem)
    loaded = validate(composed.raw, composed.source, composed.origins)
    loaded.sources = composed.sources
    return loaded


def from_resolved(resolved: dict[str, Any], overrides: list[str] | None = None, source: str = "checkpoint") -> LoadedConfig:
    """A config stored in a checkpoint, with `--set` overrides applied."""
    raw = _deep_copy(resolved)
    origins: Origins = {}
    compose.apply_overrides(raw, overrides or [], origins)
    return validate(raw, source, origins)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def with_seed(loaded: LoadedConfig) -> LoadedConfig:
    """Fix a random seed when none is given, so the resolved config reproduces the run."""
    if loaded.config.seed is not None:
        return loaded
    loaded.config = loaded.config.model_copy(update={"seed": random.SystemRandom().randrange(2**31)})
    return loaded


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, for editors."""
    schema = Config.model_json_schema(by_alias=False)
    schema["title"] = "dltrain config"
    return compose.with_composition_keys(schema)

"""Loading a config: validation against the schema, and errors located by file and line.

`compose.py` turns the YAML files (bases, `--set`, `${...}`) into plain data and the
origin of each value; pydantic validates that data against the schema
(`dltrain.schema.config`, assembled from the registries); every error is mapped back to
its dotted path and origin, and all of them are reported at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from ..schema import config as schema_config
from ..schema.config import Config
from . import compose
from .compose import Origins, PathKey, problem

# --- a loaded config -----------------------------------------------------------------


@dataclass
class LoadedConfig:
    """A validated config with where each value came from (file:line, --set, checkpoint)."""

    config: Config
    source: str
    origins: Origins = field(default_factory=dict)
    sources: list[dict[str, str]] = field(default_factory=list)  # the files it was composed from, with hashes

    @property
    def overridden(self) -> dict[PathKey, str]:
        """The values `--set` gave: path → 'KEY=VALUE'."""
        return {
            path: origin.where.removeprefix("--set ")
            for path, origin in self.origins.items()
            if origin.where.startswith("--set ")
        }

    def where(self, path: PathKey) -> str:
        """'file.yaml:12', '--set a.b=1', or the source name: where the value at `path` was set."""
        origin = compose.origin_of(self.origins, path)
        return origin.where if origin else self.source

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


def _message(err: ErrorDetails) -> str:
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
    origins = origins or {}
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        errors = [(_raw_path(raw, err["loc"]), err) for err in exc.errors()]
        for path, err in errors:
            if err["type"] == "missing" and _explained_by_typo(path, errors):
                continue
            if err["type"] == "unknown_name" and isinstance(err["input"], dict):
                path += ("source" if "source" in err["input"] else "type",)
            problems.append(problem(origins, path, _message(err), source))
        problems.sort(key=lambda p: _line_number(p.where))
        raise ConfigError(problems, source) from None
    return LoadedConfig(config, source, origins)


def _explained_by_typo(path: PathKey, errors: list[tuple[PathKey, ErrorDetails]]) -> bool:
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


def from_resolved(
    resolved: dict[str, Any], overrides: list[str] | None = None, source: str = "checkpoint"
) -> LoadedConfig:
    """A config stored in a checkpoint, with `--set` overrides applied."""
    raw = _deep_copy(resolved)
    if isinstance(
        raw.get("fit"), dict
    ):  # stored before validation_mode existed: those runs validated on the last fraction
        raw["fit"].setdefault("validation_mode", "last")
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
    """The JSON Schema of a config file, for editors: the schema's, with `base:` and `vars:`."""
    return compose.with_composition_keys(schema_config.json_schema())

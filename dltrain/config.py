"""Loading a config: YAML with line numbers, `--set` overrides, validation, located errors.

YAML is composed (not just loaded) so each key keeps its line; pydantic validates the
plain data against the schema (`dltrain.schema.config`, assembled from the registries);
every error is mapped back to its dotted path and line, and all of them are reported
at once.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .errors import ConfigError, Problem, UserError
from .schema.config import Config

# --- YAML with line numbers -----------------------------------------------------------

PathKey = tuple[str | int, ...]


def _lines(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], problems: list[Problem], where: str) -> None:
    """Record the 1-based line of every key and item; report duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(Problem(_dotted(path + (key,)), f"{where}:{key_node.start_mark.line + 1}",
                                        f"key '{key}' appears twice; keep one"))
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _lines(value_node, path + (key,), lines, problems, where)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _lines(item, path + (index,), lines, problems, where)


def _dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class LoadedConfig:
    """A validated config with where each value came from (file lines, --set, checkpoint)."""

    config: Config
    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    overridden: dict[PathKey, str] = field(default_factory=dict)

    def where(self, path: PathKey) -> str:
        """'file.yaml:12', '--set a.b=1', or the source name, for a problem at `path`."""
        return _where(path, self.source, self.lines, self.overridden)

    def error(self, path: PathKey, message: str) -> ConfigError:
        """One problem at `path`, located."""
        return ConfigError([Problem(_dotted(path), self.where(path), message)], self.source)

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in: what `config.yaml` and checkpoints hold."""
        return self.config.model_dump(mode="json", by_alias=False)


MAX_VALUES = 100_000  # a config has hundreds; YAML aliases can make billions out of a few lines


def _check_expansion(node: yaml.Node | None, source: str) -> None:
    """Refuse YAML whose aliases expand to more than MAX_VALUES values ("billion laughs"), before expanding it.

    Each alias is counted as often as it is used, by walking the node graph with an
    explicit stack that stops at the limit: time and memory stay bounded.
    """
    stack, count = [node] if node is not None else [], 0
    while stack:
        current = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError([Problem("", source, f"the YAML expands to more than {MAX_VALUES:,} values (through "
                                                   f"aliases `*name`?); a config is far smaller: remove the aliases")],
                              source)
        if isinstance(current, yaml.MappingNode):
            stack.extend(part for pair in current.value for part in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _where(path: PathKey, source: str, lines: dict[PathKey, int], overridden: dict[PathKey, str]) -> str:
    for prefix in sorted(overridden, key=len, reverse=True):
        if path[: len(prefix)] == prefix:
            return f"--set {overridden[prefix]}"
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return f"{source}:{lines[path[:end]]}"
    return source


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[PathKey, int]]:
    """Plain data and the line of each key; YAML syntax errors name the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_expansion(node, source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        detail = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem("", where, f"invalid YAML: {detail}")], source) from None
    except RecursionError:
        raise ConfigError([Problem("", source, "invalid YAML: nested too deeply")], source) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem("", source, "expected a mapping of keys (data:, model:, compile:, fit:)")], source)
    lines: dict[PathKey, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _lines(node, (), lines, problems, source)
    if problems:
        raise ConfigError(problems, source)
    return data, lines


# --- --set overrides ------------------------------------------------------------------

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _override_path(key: str) -> PathKey:
    parts: list[str | int] = []
    for name, index in _SEGMENT.findall(key):
        if index:
            parts.append(int(index))
        else:
            parts.append(int(name) if name.isdigit() else name)
    if not parts or "".join(m.group(0) for m in _SEGMENT.finditer(key)).replace(".", "") != key.replace(".", ""):
        raise UserError(f"--set {key}: expected a dotted path such as fit.epochs or model.layers[0].units")
    return tuple(parts)


def parent_set(raw: dict[str, Any], path: PathKey, value: Any) -> Any:
    """Put `value` at `path` of `raw` (which exists) and return it."""
    node: Any = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[PathKey, str]:
    """Apply `KEY=VALUE` overrides in place (values parsed as YAML scalars)."""
    applied: dict[PathKey, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set fit.epochs=3")
        path = _override_path(key.strip())
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node: Any = raw
        for depth, part in enumerate(path[:-1]):
            nxt = path[depth + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise UserError(f"--set {key}: '{_dotted(path[: depth + 1])}' is not an item of the list (it has {len(node)})")
                node = node[part]
            elif isinstance(node, dict):
                node = node.setdefault(part, [] if isinstance(nxt, int) else {})
            else:
                raise UserError(f"--set {key}: '{_dotted(path[:depth])}' is a value, not a section")
            if isinstance(node, str) and isinstance(nxt, str):  # `optimizer: adam` + `.lr=...` → {type: adam, lr: ...}
                node = parent_set(raw, path[: depth + 1], {"source" if path[: depth + 1] == ("data",) else "type": node})
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise UserError(f"--set {key}: index {last} is outside the list (it has {len(node)} items)")
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise UserError(f"--set {key}: '{_dotted(path[:-1])}' is a value, not a section")
        applied[path] = item
    return applied


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


def validate(raw: dict[str, Any], source: str, lines: dict[PathKey, int] | None = None,
             overridden: dict[PathKey, str] | None = None) -> LoadedConfig:
    """Validate plain data; raise one ConfigError listing every problem."""
    lines, overridden = lines or {}, overridden or {}
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
            problems.append(Problem(_dotted(path), _where(path, source, lines, overridden), _message(err)))
        problems.sort(key=lambda p: _line_number(p.where))
        raise ConfigError(problems, source) from None
    return LoadedConfig(config, source, lines, overridden)


def _explained_by_typo(path: PathKey, errors: list[tuple[PathKey, ErrorDetails]]) -> bool:
    """A missing key that a misspelled sibling already points to (`unit` → 'units')."""
    hint = f"Did you mean '{path[-1]}'?"
    return any(p[:-1] == path[:-1] and e["type"] == "unknown_key" and hint in e["msg"] for p, e in errors)


def _line_number(where: str) -> int:
    tail = where.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 10**9


def load_config(path: str | Path, overrides: list[str] | None = None) -> LoadedConfig:
    """Read, override and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: '{path}'. Run `dltrain init digits_mlp` to start from a preset.")
    raw, lines = parse_yaml(path.read_text(encoding="utf-8"), path.name)
    overridden = apply_overrides(raw, overrides or [])
    raw.setdefault("name", path.stem)
    return validate(raw, path.name, lines, overridden)


def from_resolved(resolved: dict[str, Any], overrides: list[str] | None = None, source: str = "checkpoint") -> LoadedConfig:
    """A config stored in a checkpoint, with `--set` overrides applied."""
    raw = _deep_copy(resolved)
    if isinstance(raw.get("fit"), dict):  # stored before validation_mode existed: those runs validated on the last fraction
        raw["fit"].setdefault("validation_mode", "last")
    overridden = apply_overrides(raw, overrides or [])
    return validate(raw, source, None, overridden)


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

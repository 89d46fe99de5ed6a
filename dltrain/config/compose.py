"""Composing a config from YAML files: `base:`, `--set` and `${...}`, each value with its origin.

Files are composed (not just loaded) so every key keeps its line; merging, overriding
and interpolating carry that origin along, so an error names the file and line that set
a value and what it overrode. OmegaConf would merge and interpolate, but its nodes drop
the YAML marks, and the merge we need (mappings deep, everything else replaced) is short.

The order is fixed: bases (in order, recursively) < this file < `--set` < `${...}`, so an
override of a referenced value propagates to every value that refers to it.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._registry import did_you_mean
from ..errors import ConfigError, Problem, UserError

PathKey = tuple[str | int, ...]

BASE, VARS = "base", "vars"  # the keys composition consumes; neither reaches the schema
SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Origin:
    """Where a value came from ('exp.yaml:7' or '--set fit.epochs=3') and what it replaced."""

    where: str
    overrode: Origin | None = None
    via: str = ""  # for an interpolated value: '${vars.width} = base.yaml:3'

    def note(self) -> str:
        """' (overrides base.yaml:12)', ' (${vars.bs} = --set vars.bs=0)', or ''."""
        parts = [self.via] if self.via else []
        if self.overrode is not None:
            parts.append(f"overrides {self.overrode.where}")
        return f" ({'; '.join(parts)})" if parts else ""


Origins = dict[PathKey, Origin]


def dotted(path: PathKey) -> str:
    """('model', 'layers', 0, 'units') → 'model.layers[0].units'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(key: str) -> PathKey | None:
    """'model.layers[0].units' → ('model', 'layers', 0, 'units'); None when it is not a dotted path."""
    parts: list[str | int] = []
    for name, index in _SEGMENT.findall(key):
        if index:
            parts.append(int(index))
        else:
            parts.append(int(name) if name.isdigit() else name)
    if not parts or "".join(m.group(0) for m in _SEGMENT.finditer(key)).replace(".", "") != key.replace(".", ""):
        return None
    return tuple(parts)


def origin_of(origins: Origins, path: PathKey) -> Origin | None:
    """The origin of `path`, or of the nearest enclosing value that has one."""
    for end in range(len(path), 0, -1):
        if path[:end] in origins:
            return origins[path[:end]]
    return None


def problem(origins: Origins, path: PathKey, message: str, source: str) -> Problem:
    """A problem at `path`, located where its value was set, noting what that value replaced."""
    origin = origin_of(origins, path)
    if origin is None:
        return Problem(dotted(path), source, message)
    return Problem(dotted(path), origin.where, message + origin.note())


def _replace(origins: Origins, path: PathKey, new: Origins) -> None:
    """Drop every origin at or under `path`, then add `new` (origins of the value put there)."""
    for key in [k for k in origins if k[: len(path)] == path]:
        del origins[key]
    origins.update(new)


# --- one YAML file ----------------------------------------------------------------------


def _marks(node: yaml.Node, path: PathKey, origins: Origins, problems: list[Problem], name: str) -> None:
    """Record the origin (file:line) of every key and item; report duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(dotted(path + (key,)), f"{name}:{line}", f"key '{key}' appears twice; keep one")
                )
            seen.add(key)
            origins[path + (key,)] = Origin(f"{name}:{line}")
            _marks(value_node, path + (key,), origins, problems, name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            origins[path + (index,)] = Origin(f"{name}:{item.start_mark.line + 1}")
            _marks(item, path + (index,), origins, problems, name)


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
            raise ConfigError(
                [
                    Problem(
                        "",
                        source,
                        f"the YAML expands to more than {MAX_VALUES:,} values (through "
                        f"aliases `*name`?); a config is far smaller: remove the aliases",
                    )
                ],
                source,
            )
        if isinstance(current, yaml.MappingNode):
            stack.extend(part for pair in current.value for part in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def parse_yaml(text: str, name: str) -> tuple[dict[str, Any], Origins]:
    """Plain data and the origin of each key and item; YAML syntax errors name the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_expansion(node, name)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        detail = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem("", where, f"invalid YAML: {detail}")], name) from None
    except RecursionError:
        raise ConfigError([Problem("", name, "invalid YAML: nested too deeply")], name) from None
    if not isinstance(data, dict) or node is None:
        raise ConfigError([Problem("", name, "expected a mapping of keys (data:, model:, compile:, fit:)")], name)
    origins: Origins = {}
    problems: list[Problem] = []
    _marks(node, (), origins, problems, name)
    if problems:
        raise ConfigError(problems, name)
    return data, origins


# --- bases ------------------------------------------------------------------------------


@dataclass
class Composed:
    """Merged plain data, the origin of each value, and the files it was read from."""

    raw: dict[str, Any]
    origins: Origins
    source: str  # the name errors are reported under: the file given
    sources: list[dict[str, str]] = field(default_factory=list)  # [{name, path, sha256}], in merge order

    def error(self, path: PathKey, message: str) -> ConfigError:
        return ConfigError([problem(self.origins, path, message, self.source)], self.source)


def merge(into: Composed, raw: dict[str, Any], origins: Origins, path: PathKey = ()) -> None:
    """Merge `raw` over `into` at `path`: mappings deep-merged, anything else replaced."""
    target: Any = _get(into.raw, path)
    for key, value in raw.items():
        here = path + (key,)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            into.origins[here] = origins[here]
            merge(into, value, origins, here)
            continue
        old = into.origins.get(here) if key in target else None
        target[key] = value
        _replace(into.origins, here, {k: v for k, v in origins.items() if k[: len(here)] == here})
        if old is not None:
            into.origins[here] = Origin(origins[here].where, overrode=old)


def compose(path: str | Path) -> Composed:
    """The file at `path` merged over its bases (and theirs), in order; this file last."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: '{path}'. Run `dltrain init digits_mlp` to start from a preset.")
    into = Composed({}, {}, path.name)
    _compose_file(into, path, path.name, path.parent, [])
    return into


def _compose_file(into: Composed, path: Path, name: str, top: Path, chain: list[tuple[Path, str]]) -> None:
    """Merge `path`'s bases, then `path` itself, into `into`; `chain` are the files including this one."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem("", name, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save the config as UTF-8")], name
        ) from None
    raw, origins = parse_yaml(text, name)
    chain = chain + [(path.resolve(), name)]
    for key, base_path, base_name in _bases(raw, origins, path, name, top):
        seen = [n for p, n in chain if p == base_path.resolve()]
        if seen:
            cycle = " -> ".join([n for _, n in chain] + [seen[0]])
            raise _located(origins, key, name, f"bases form a cycle: {cycle}; remove one of these `base:` entries")
        _compose_file(into, base_path, base_name, top, chain)
    raw.pop(BASE, None)
    merge(into, raw, origins)
    if all(s["path"] != str(path.resolve()) for s in into.sources):
        into.sources.append({"name": name, "path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest()})


def _bases(raw: dict[str, Any], origins: Origins, path: Path, name: str, top: Path) -> list[tuple[PathKey, Path, str]]:
    """The files `base:` names (a path or a list of paths, relative to this file), each checked to exist."""
    value = raw.get(BASE)
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    found = []
    for index, entry in enumerate(entries):
        key: PathKey = (BASE, index) if isinstance(value, list) else (BASE,)
        if not isinstance(entry, str) or not entry.strip():
            raise _located(
                origins, key, name, f"expected a path to a YAML file (or a list of them); received {entry!r}"
            )
        file = Path(os.path.normpath(path.parent / entry))
        if not file.is_file():
            raise _located(
                origins,
                key,
                name,
                f"base file not found: '{entry}' (looked for '{file}'); "
                f"a base's path is relative to the file that names it",
            )
        found.append((key, file, os.path.relpath(file, top)))
    return found


def _located(origins: Origins, key: PathKey, name: str, message: str) -> ConfigError:
    """A problem at `key` of the file `name`, located by that file's own origins (before any merge)."""
    return ConfigError([problem(origins, key, message, name)], name)


# --- --set ------------------------------------------------------------------------------


def apply_overrides(raw: dict[str, Any], overrides: list[str], origins: Origins | None = None) -> None:
    """Apply `KEY=VALUE` overrides in place (values parsed as YAML scalars); record them in `origins`."""
    origins = origins if origins is not None else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set fit.epochs=3")
        path = parse_path(key.strip())
        if path is None:
            raise UserError(f"--set {key}: expected a dotted path such as fit.epochs or model.layers[0].units")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        _set(raw, path, value, key)
        old = origins.get(path)
        _replace(origins, path, {path: Origin(f"--set {item}", overrode=old)})


def _set(raw: dict[str, Any], path: PathKey, value: Any, key: str) -> None:
    """Put `value` at `path`, creating missing sections; one clear error when the path cannot exist."""
    node: Any = raw
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise UserError(
                    f"--set {key}: '{dotted(path[: depth + 1])}' is not an item of the list (it has {len(node)})"
                )
            node = node[part]
        elif isinstance(node, dict):
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
        else:
            raise UserError(f"--set {key}: '{dotted(path[:depth])}' is a value, not a section")
        if isinstance(node, str) and isinstance(nxt, str):  # `optimizer: adam` + `.lr=...` → {type: adam, lr: ...}
            node = _put_section(raw, path[: depth + 1], {"source" if path[: depth + 1] == ("data",) else "type": node})
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
        raise UserError(f"--set {key}: '{dotted(path[:-1])}' is a value, not a section")


def _put_section(raw: dict[str, Any], path: PathKey, value: Any) -> Any:
    """Put `value` at `path` of `raw` (which exists) and return it."""
    node: Any = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return value


# --- ${...} -----------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\{([^}]*)\}")


class _Resolver:
    """Resolves every `${a.b.c}` in place, each once, following references of references."""

    def __init__(self, composed: Composed) -> None:
        self.composed = composed
        self.done: set[PathKey] = set()

    def run(self) -> None:
        for path in _string_paths(self.composed.raw):
            self.resolve(path, [])

    def resolve(self, path: PathKey, stack: list[PathKey]) -> Any:
        """The value at `path` with its references resolved (stored back in place)."""
        value = _get(self.composed.raw, path)
        if path in self.done:
            return value
        if path in stack:
            cycle = " -> ".join(f"${{{dotted(p)}}}" for p in stack[stack.index(path) :] + [path])
            raise self.composed.error(stack[-1], f"references form a cycle: {cycle}")
        if isinstance(value, dict | list):
            for sub in _string_paths(value, path):
                self.resolve(sub, stack)
        elif isinstance(value, str) and "${" in value:
            value = self._substitute(path, value, stack + [path])
            _put(self.composed.raw, path, value)
        self.done.add(path)
        return value

    def _substitute(self, path: PathKey, text: str, stack: list[PathKey]) -> Any:
        matches = list(_REFERENCE.finditer(text))
        if not matches:
            raise self.composed.error(path, f"unclosed '${{' in {text!r}; write a reference as ${{section.key}}")
        vias = []
        values = []
        for match in matches:
            target = self._target(path, match.group(1))
            values.append(self.resolve(target, stack))
            origin = origin_of(self.composed.origins, target)
            vias.append(f"${{{match.group(1)}}} = {origin.where if origin else self.composed.source}")
        own = origin_of(self.composed.origins, path) or Origin(self.composed.source)
        located = {path: Origin(own.where, own.overrode, "; ".join(vias))}
        whole = len(matches) == 1 and matches[0].group(0) == text
        if whole:
            result = copy.deepcopy(values[0])
            for sub, origin in list(
                self.composed.origins.items()
            ):  # a copied section: each value says where it is from
                if len(sub) > len(target) and sub[: len(target)] == target:
                    via = f"{vias[0]}; {origin.via}" if origin.via else f"${{{dotted(sub)}}} = {origin.where}"
                    located[path + sub[len(target) :]] = Origin(own.where, None, via)
        else:
            for match, value in zip(matches, values):
                if not isinstance(value, SCALARS):
                    raise self.composed.error(
                        path,
                        f"${{{match.group(1)}}} is a {type(value).__name__}; only a whole "
                        f"value ('key: ${{{match.group(1)}}}') can refer to one",
                    )
            result = _REFERENCE.sub(lambda m: _text(values.pop(0)), text)
        _replace(self.composed.origins, path, located)
        return result

    def _target(self, path: PathKey, reference: str) -> PathKey:
        """The path `reference` names; an error at `path` when it names nothing."""
        target = parse_path(reference.strip())
        if target is None:
            raise self.composed.error(
                path, f"${{{reference}}} is not a reference; write ${{section.key}} or ${{model.layers[0].units}}"
            )
        node: Any = self.composed.raw
        for depth, part in enumerate(target):
            if isinstance(node, dict) and part in node:
                node = node[part]
                continue
            if isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
                continue
            raise self.composed.error(
                path, f"unknown reference ${{{reference}}}: {_missing(target[:depth], part, node)}"
            )
        return target


def _missing(parent: PathKey, part: str | int, node: Any) -> str:
    """Why `parent` has no `part`, with the nearest key it does have."""
    where = f"'{dotted(parent)}'" if parent else "the config"
    if isinstance(node, dict):
        hint = did_you_mean(str(part), [str(k) for k in node]) or (
            " Only values written in the files (or given with --set) can be referred to, not defaults; "
            f"put shared values under `{VARS}:`"
        )
        return f"{where} has no key '{part}'.{hint}"
    if isinstance(node, list):
        return f"{where} has {len(node)} items; there is no [{part}]"
    return f"{where} is a value, not a section"


def _text(value: Any) -> str:
    """A scalar as it reads inside a string: YAML spelling (true, null), not Python's."""
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).split("\n")[0]


def _string_paths(node: Any, path: PathKey = ()) -> list[PathKey]:
    """The path of every string value under `node` that contains '${'."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _string_paths(value, path + (key,))]
    if isinstance(node, list):
        return [p for index, value in enumerate(node) for p in _string_paths(value, path + (index,))]
    return [path] if isinstance(node, str) and "${" in node else []


def _get(raw: Any, path: PathKey) -> Any:
    for part in path:
        raw = raw[part]
    return raw


def _put(raw: Any, path: PathKey, value: Any) -> None:
    _get(raw, path[:-1])[path[-1]] = value


# --- the whole pipeline -----------------------------------------------------------------


def load(path: str | Path, overrides: list[str] | None = None) -> Composed:
    """Bases, this file, `--set`, then `${...}`; `vars:` dropped once it has served."""
    composed = compose(path)
    apply_overrides(composed.raw, overrides or [], composed.origins)
    variables = composed.raw.get(VARS)
    if variables is not None and not isinstance(variables, dict):
        raise composed.error((VARS,), f"expected a mapping of names to values; received {variables!r}")
    _Resolver(composed).run()
    composed.raw.pop(VARS, None)
    _replace(composed.origins, (VARS,), {})
    return composed


_ABSENT = object()  # a key the files did not write: its value is the schema's default
_TAGS = ("type", "source")  # what a shorthand (`optimizer: adam`) writes


def render(resolved: dict[str, Any], composed: Composed) -> str:
    """The config that runs, as YAML: each value with the file:line that set it, or '# default'.

    `resolved` is the validated config with every default filled in; `composed` tells
    which of its values the files (or `--set`) wrote, and where. Written keys come first,
    in the files' order, then the defaults.
    """
    files = ", ".join(s["name"] for s in composed.sources)
    head = f"# {composed.source}, merged from: {files}; 'default': a value no file sets"
    return "\n".join([head, *_render(resolved, composed.raw, (), composed.origins, 0)]) + "\n"


def _render(node: Any, raw: Any, path: PathKey, origins: Origins, indent: int) -> list[str]:
    """Block-style lines of `node` (`raw`: what the files wrote there); each value ends with its origin."""
    lines: list[str] = []
    pad = " " * indent
    for key, value, written in _entries(node, raw):
        here = path + (key,)
        if isinstance(value, dict | list) and value:
            inner = _render(value, written, here, origins, indent + 2)
            if isinstance(node, dict):  # a section says where it came from only when it replaced one
                origin = origins.get(here)
                replaced = f"  # {origin.where}{origin.note()}" if origin and origin.overrode else ""
                lines += [f"{pad}{_scalar(key)}:{replaced}", *inner]
            elif isinstance(value, dict):  # '- first: 1' with the other keys under 'first'
                lines += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
            else:
                lines += [f"{pad}-", *inner]
            continue
        shorthand = not isinstance(raw, dict | list)  # `optimizer: adam`: the origin is the parent's
        origin = origin_of(origins, path if shorthand else here) if written is not _ABSENT else None
        comment = f"  # {origin.where}{origin.note()}" if origin else "  # default"
        lead = f"{pad}{_scalar(key)}: " if isinstance(node, dict) else f"{pad}- "
        lines.append(f"{lead}{_scalar(value)}{comment}")
    return lines


def _entries(node: Any, raw: Any) -> list[tuple[Any, Any, Any]]:
    """(key, value, what the files wrote there or _ABSENT) for each item; written keys first, in the files' order."""
    if isinstance(node, list):
        return [(i, v, raw[i] if isinstance(raw, list) and i < len(raw) else _ABSENT) for i, v in enumerate(node)]
    if isinstance(raw, dict):
        written = {k: raw[k] for k in raw if k in node}
    else:  # a shorthand (`optimizer: adam`) wrote only the type
        written = {k: raw for k in _TAGS if k in node and node[k] == raw}
    return [(k, node[k], written.get(k, _ABSENT)) for k in [*written, *(k for k in node if k not in written)]]


def _scalar(value: Any) -> str:
    """One value in YAML flow style on one line ('[]', '{}', 'null', quoted when needed)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def sources_header(sources: list[dict[str, str]]) -> str:
    """The comment that opens a run's config.yaml: the files it was composed from, with their hashes."""
    if not sources:
        return ""
    lines = [
        "# The merged config of this run: standalone (no base: left), every default filled in.",
        "# Composed from (merged in this order):",
    ]
    lines += [f"#   {s['path']}  sha256:{s['sha256']}" for s in sources]
    return "\n".join(lines) + "\n"


def with_composition_keys(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (of a whole config) extended with `base:` and `vars:`; a file with a base may be partial."""
    schema["properties"] = {
        BASE: {
            "description": "A config file (or a list, merged in order) this one extends; relative to this file. "
            "Mappings are deep-merged, lists replaced, this file last.",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        },
        VARS: {
            "description": "Values to refer to as ${vars.NAME} anywhere in the config; dropped once resolved.",
            "type": "object",
        },
        **schema["properties"],
    }
    schema["if"] = {"required": [BASE]}
    schema["else"] = {"required": schema.pop("required", [])}
    return schema

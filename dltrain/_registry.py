"""Name → implementation registries.

Every name a config can use (layer types, data sources, optimizers, losses, metrics,
callbacks, schedules, backbones) is described in `dltrain.schema` by the pydantic model
of its parameters, whose docstring is its summary, and implemented next to its builder.
The schema, `list-models`, "did you mean" and the README tables all read these
registries, so they cannot drift from the code.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar, get_args

from pydantic import BaseModel

T = TypeVar("T")
P = TypeVar("P", bound=BaseModel)


def did_you_mean(name: str, options: list[str]) -> str:
    """A ' Did you mean 'x'?' suffix, or '' when nothing is close."""
    lowered = {o.lower(): o for o in options}
    if name.lower() in lowered:
        return f" Did you mean '{lowered[name.lower()]}'?"
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        close = [lowered[c] for c in close]
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name: the model of its parameters, and (looked up when first used) what it builds."""

    name: str
    params: type[BaseModel] | None
    summary: str
    registry: "Registry[T]" = field(repr=False, compare=False)

    @property
    def obj(self) -> T:
        """The implementation: imports the module that provides it on first use (torch, for most)."""
        return self.registry.implementation(self.name)

    def keys(self) -> list[str]:
        """The config keys this entry accepts (besides its `type`/`source` tag)."""
        if self.params is None:
            return []
        return [k for k in self.params.model_fields if k not in ("type", "source")]


def tag_value(params: type[BaseModel], tag: str = "type") -> str:
    """The name fixed by the `Literal` annotation of `params`'s `tag` field."""
    return str(get_args(params.model_fields[tag].annotation)[0])


@dataclass
class Registry(Generic[T]):
    """A case-aware table of named entries of one kind (e.g. 'layer').

    A name is described (its parameter model and summary) where the schema is defined,
    without importing torch, and implemented where its builder lives; `implemented_in`
    names the modules to import, in order, when an implementation is first needed, so
    `dltrain schema` and `list-models` never build or import what they only describe.
    """

    kind: str
    case_sensitive: bool = True
    implemented_in: tuple[str, ...] = ()
    _entries: dict[str, Entry[T]] = field(default_factory=dict)
    _objects: dict[str, T] = field(default_factory=dict)

    def _key(self, name: str) -> str:
        return name if self.case_sensitive else name.lower()

    def describe(self, name: str, params: type[BaseModel] | None = None, summary: str | None = None) -> None:
        """Add `name` with its parameter model; the summary defaults to the model's docstring."""
        key = self._key(name)
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if summary is None:
            summary = (params.__doc__ if params is not None else None) or ""
        self._entries[key] = Entry(name, params, summary.strip().split("\n")[0], self)

    def describes(self, tag: str = "type") -> Callable[[type[P]], type[P]]:
        """Class decorator: describe a parameter model under the name its `tag` literal fixes."""

        def decorate(params: type[P]) -> type[P]:
            self.describe(tag_value(params, tag), params)
            return params

        return decorate

    def implement(self, name: str) -> Callable[[T], T]:
        """Decorator: attach the implementation of the described `name`."""

        def decorate(obj: T) -> T:
            canonical = self.canonical(name)
            if canonical is None:
                raise ValueError(f"{self.kind} {name!r} is implemented but not described in the schema")
            self._objects[self._key(canonical)] = obj
            return obj

        return decorate

    def register(
        self, name: str, params: type[BaseModel] | None = None, summary: str | None = None
    ) -> Callable[[T], T]:
        """Decorator: describe and implement `name` in one place (for names the config schema does not hold)."""
        self.describe(name, params, summary)
        return self.implement(name)

    def implementation(self, name: str) -> T:
        """What `name` builds, importing the modules of `implemented_in` until one provides it."""
        key = self._key(self.get(name).name)
        for module in self.implemented_in:
            if key in self._objects:
                break
            importlib.import_module(module)
        if key not in self._objects:
            raise LookupError(
                f"{self.kind} {name!r} has no implementation (looked in {', '.join(self.implemented_in)})"
            )
        return self._objects[key]

    def canonical(self, name: str) -> str | None:
        """The registered spelling of `name`, or None when it is unknown."""
        entry = self._entries.get(self._key(name))
        return entry.name if entry else None

    def get(self, name: str) -> Entry[T]:
        """The entry for `name`; KeyError with the valid names and a suggestion."""
        canonical = self.canonical(name)
        if canonical is None:
            raise KeyError(self.unknown_message(name))
        return self._entries[self._key(canonical)]

    def unknown_message(self, name: Any) -> str:
        """'unknown layer 'x'. Did you mean ...? Valid: ...' for a name not registered."""
        names = self.names()
        hint = did_you_mean(str(name), names)
        return f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(names)}."

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(e.name for e in self._entries.values())

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) is not None

"""Name → implementation registries.

Every name a config can use (layer types, data sources, optimizers, losses, metrics,
callbacks, schedules, backbones) is registered next to its definition, together with
the pydantic model of its parameters. The schema, `list-models`, "did you mean" and
the README tables all read these registries, so they cannot drift from the code.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


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
    """One registered name: what it builds, and the model of its parameters."""

    name: str
    obj: T
    params: type[BaseModel] | None
    summary: str

    def keys(self) -> list[str]:
        """The config keys this entry accepts (besides its `type`/`source` tag)."""
        if self.params is None:
            return []
        return [k for k in self.params.model_fields if k not in ("type", "source")]


@dataclass
class Registry(Generic[T]):
    """A case-aware table of named entries of one kind (e.g. 'layer')."""

    kind: str
    case_sensitive: bool = True
    _entries: dict[str, Entry[T]] = field(default_factory=dict)

    def register(
        self, name: str, params: type[BaseModel] | None = None, summary: str | None = None
    ) -> Callable[[T], T]:
        """Decorator: register `obj` under `name`, with its parameter model."""

        def decorate(obj: T) -> T:
            key = name if self.case_sensitive else name.lower()
            if key in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = summary or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            self._entries[key] = Entry(name, obj, params, doc)
            return obj

        return decorate

    def register_params(self, params: type[BaseModel], tag: str = "type") -> Callable[[T], T]:
        """Decorator: register under the name fixed by the `Literal` of `params`'s `tag` field."""
        name = params.model_fields[tag].annotation.__args__[0]  # type: ignore[union-attr]
        return self.register(name, params)

    def canonical(self, name: str) -> str | None:
        """The registered spelling of `name`, or None when it is unknown."""
        key = name if self.case_sensitive else name.lower()
        entry = self._entries.get(key)
        return entry.name if entry else None

    def get(self, name: str) -> Entry[T]:
        """The entry for `name`; KeyError with the valid names and a suggestion."""
        canonical = self.canonical(name)
        if canonical is None:
            raise KeyError(self.unknown_message(name))
        key = canonical if self.case_sensitive else canonical.lower()
        return self._entries[key]

    def unknown_message(self, name: Any) -> str:
        names = self.names()
        hint = did_you_mean(str(name), names)
        return f"unknown {self.kind} {name!r}.{hint} Valid: {', '.join(names)}."

    def names(self) -> list[str]:
        return sorted(e.name for e in self._entries.values())

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) is not None

"""Everything a config can name, read from the registries (for `list-models` and the README); no torch."""

from __future__ import annotations

from typing import Any

from ._registry import Registry
from .presets import describe, presets
from .schema.backbones import BACKBONES
from .schema.callbacks import CALLBACKS
from .schema.data import SOURCES
from .schema.layers import LAYERS
from .schema.losses import LOSSES
from .schema.metrics import METRICS
from .schema.optim import OPTIMIZERS
from .schema.schedules import SCHEDULES


def _entries(registry: Registry[Any]) -> list[dict[str, Any]]:
    return [{"name": e.name, "keys": e.keys(), "summary": e.summary} for e in registry]


def catalog() -> dict[str, list[dict[str, Any]]]:
    """Each kind of name → its entries (name, accepted keys, one-line summary)."""
    return {
        "layers": _entries(LAYERS),
        "backbones": _entries(BACKBONES),
        "sources": _entries(SOURCES),
        "optimizers": _entries(OPTIMIZERS),
        "losses": _entries(LOSSES),
        "metrics": _entries(METRICS),
        "lr_schedules": _entries(SCHEDULES),
        "callbacks": _entries(CALLBACKS),
        "presets": [{"name": name, "keys": [], "summary": describe(path)} for name, path in presets().items()],
    }


def markdown_tables() -> str:
    """The README's tables of layers and data sources, generated from the registries."""
    lines = []
    for kind, title in (("layers", "Layer `type`"), ("backbones", "`Backbone` `name`"), ("sources", "`data.source`")):
        lines += [f"| {title} | keys | what it does |", "| --- | --- | --- |"]
        for entry in catalog()[kind]:
            keys = ", ".join(f"`{k}`" for k in entry["keys"] if k not in ("name", "trainable"))
            lines.append(f"| `{entry['name']}` | {keys} | {entry['summary']} |")
        lines.append("")
    return "\n".join(lines)

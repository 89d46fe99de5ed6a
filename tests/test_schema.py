"""The schema describes itself: every key has a description, every described name is implemented."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dltrain.schema.backbones import BACKBONES, FACTS
from dltrain.schema.callbacks import CALLBACKS
from dltrain.schema.data import SOURCES
from dltrain.schema.layers import LAYERS
from dltrain.schema.losses import LOSSES
from dltrain.schema.metrics import METRICS
from dltrain.schema.optim import OPTIMIZERS
from dltrain.schema.schedules import SCHEDULES

REGISTRIES = [LAYERS, BACKBONES, SOURCES, OPTIMIZERS, LOSSES, METRICS, SCHEDULES, CALLBACKS]


def _undescribed(node: Any, where: str, found: list[str]) -> None:
    """Every property (key) below `node` without a description, by its path in the schema."""
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            if not value.get("description"):
                found.append(f"{where}.{key}")
        for key, value in node.items():
            _undescribed(value, f"{where}.{key}" if key != "properties" else where, found)
    elif isinstance(node, list):
        for item in node:
            _undescribed(item, where, found)


def test_every_key_of_the_schema_has_a_description(cli: Any) -> None:
    result = cli("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    missing: list[str] = []
    _undescribed(schema, "", missing)
    assert not missing, f"{len(missing)} keys without a description: {missing[:10]}"
    models = schema["$defs"]
    assert all(d.get("description") for d in models.values())
    assert "Output features" in models["DenseParams"]["properties"]["units"]["description"]


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_every_described_name_is_implemented(registry: Any) -> None:
    for entry in registry:
        assert entry.obj is not None, entry.name
        assert entry.summary, f"{registry.kind} {entry.name} has no summary"


def test_backbone_facts_match_torchvision() -> None:
    for name, facts in FACTS.items():
        spec = BACKBONES.get(name).obj
        assert (spec.min_size, spec.file_name) == (facts.min_size, facts.file_name), name


def test_an_implementation_needs_a_description() -> None:
    with pytest.raises(ValueError, match="not described in the schema"):
        LAYERS.implement("Undescribed")(object())

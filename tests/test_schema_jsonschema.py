"""`dltrain schema` accepts what dltrain accepts: every bundled preset, every README config
snippet and the schema's own defaults validate with a JSON Schema validator (`jsonschema`)."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from conftest import CONFIGS, REPO


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    from typer.testing import CliRunner

    from dltrain.cli import app

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(document)
    return document


def problems(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(instance)]


@pytest.mark.parametrize("preset", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_preset_validates_against_the_schema(schema: dict[str, Any], preset: str) -> None:
    from dltrain.config import compose

    # a preset with `base:` is a partial file: what must validate is the config it composes to
    assert problems(schema, compose.load(CONFIGS / preset).raw) == []


def _merge(base: Any, part: Any) -> Any:
    """`part` over `base`: mappings merged, lists and values replaced; another data source replaces `data`."""
    if not isinstance(base, dict) or not isinstance(part, dict):
        return part
    if "source" in part and part["source"] != base.get("source"):
        return part
    return {**base, **{key: _merge(base.get(key), value) for key, value in part.items()}}


def readme_snippets() -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, config) for each ```yaml block of the README; a fragment completed by digits_mlp.yaml."""
    from dltrain.config import compose

    base = compose.load(CONFIGS / "digits_mlp.yaml").raw
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for index, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.S)):
        snippet = yaml.safe_load(block)
        if "${" in block or (isinstance(snippet, dict) and "base" in snippet):
            continue  # composition examples: they validate once composed (tests/test_compose.py runs them)
        yield index, _merge(base, snippet)


@pytest.mark.parametrize("index,config", list(readme_snippets()))
def test_every_readme_snippet_validates_against_the_schema(
    schema: dict[str, Any], index: int, config: dict[str, Any]
) -> None:
    assert problems(schema, config) == [], f"README yaml block {index}"


def _defaults(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, property schema) of every property that declares a default."""
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            if isinstance(prop, dict) and "default" in prop:
                yield f"{path}.{name}", prop
        for key, value in node.items():
            yield from _defaults(value, f"{path}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from _defaults(item, path)


def test_the_schema_accepts_its_own_defaults(schema: dict[str, Any]) -> None:
    found = {path: prop for path, prop in _defaults(schema)}
    assert any(path.endswith("optimizer") for path in found)  # `optimizer: adam`, the shorthand
    wrong = [
        f"{path}: {problems({**prop, '$defs': schema['$defs']}, prop['default'])}"
        for path, prop in found.items()
        if problems({**prop, "$defs": schema["$defs"]}, prop["default"])
    ]
    assert wrong == []


def test_a_typo_is_caught_by_the_schema_too(schema: dict[str, Any]) -> None:
    from dltrain.config import compose

    config = compose.load(CONFIGS / "digits_mlp.yaml").raw
    config["compile"]["optimizer"] = "adamm"
    config["fit"]["epoch"] = 3
    found = problems(schema, config)
    assert any(p.startswith("compile.optimizer") for p in found) and any("epoch" in p for p in found)

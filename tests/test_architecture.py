"""The import-direction contract: no cycles, and every module imports only from its own layer or below.

Each layer is a package (`schema/`, `config/`, `nn/`, `data/`, `train/`, `serve/`) plus
a few single modules named in LAYERS. Read from the source with `ast` (no import runs): every `import` a module makes at run
time counts, at module level or inside a function; imports under `if TYPE_CHECKING:`
do not. Layers, lowest first:

- base: errors, versions, files, the registry and the params base (no torch);
- schema: every parameter model and registry description (no torch);
- config: composing YAML files (bases, `--set`, `${...}`) and loading them into the schema,
  with the origin of every value;
- nn: layers, activations, backbones, losses, metrics, optimizers, schedules, the model
  (and `nn.adapter`, the module that resizes images inside the model);
- data: data sources and batching; knows no model (beside nn, not above it);
- training: the trainer, its callbacks and everything a run uses;
- library: the Python API and what builds on it (export, predict, catalog, display);
- cli: the command line, which nothing in the library imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dltrain"

# Each layer is a package where one exists (every module inside belongs to it), plus the
# single modules listed by name.
PACKAGES: dict[str, str] = {
    "schema": "schema",
    "config": "config",
    "nn": "nn",
    "data": "data",
    "train": "training",
    "serve": "library",
}
LAYERS: dict[str, set[str]] = {
    "base": {"_version", "errors", "_files", "_registry", "_params", "reporting", "tables"},
    "schema": set(),
    "config": set(),
    "nn": set(),
    "data": {"inference"},
    "training": set(),
    "library": {
        "api",
        "runs",
        "tune",
        "tracking",
        "build",
        "predict",
        "export",
        "presets",
        "catalog",
        "display",
        "launch",
        "",
        "_docs",
        "graph_plot",
        "generate",
        "multi",
    },
    "cli": {"cli", "__main__"},
}
ORDER = list(LAYERS)
TORCH_FREE = {"base", "schema"}


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The package-relative modules an `ImportFrom` reads, or [] for outside packages."""
    if node.level == 0:
        if not (node.module or "").startswith("dltrain"):
            return []
        base = (node.module or "").removeprefix("dltrain").lstrip(".")
    else:
        package = module.split(".") if _is_package(module) else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)] if node.level > 1 else package
        base = ".".join(p for p in [*package, node.module or ""] if p)
    found = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}" if base else alias.name
        found.append(candidate if _exists(candidate) else base)
    return found


def _is_package(module: str) -> bool:
    return (PACKAGE / module.replace(".", "/") / "__init__.py").is_file() if module else True


def _exists(module: str) -> bool:
    path = PACKAGE / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Module → the package modules it imports; module → the outside top-level packages it imports."""
    inside: dict[str, set[str]] = {}
    outside: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        inside[module], outside[module] = set(), set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level == 0 and not (node.module or "").startswith("dltrain"):
                    outside[module].add((node.module or "").split(".")[0])
                inside[module].update(m for m in _resolve(module, node) if m != module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("dltrain"):
                        inside[module].add(alias.name.removeprefix("dltrain").lstrip("."))
                    else:
                        outside[module].add(alias.name.split(".")[0])
    return inside, outside


def layer_of(module: str) -> str:
    for layer, members in LAYERS.items():
        if module in members:
            return layer
    package = PACKAGES.get(module.split(".")[0])
    if package is not None:
        return package
    raise AssertionError(f"dltrain.{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def test_every_module_has_a_layer() -> None:
    inside, _ = import_graph()
    for module in inside:
        layer_of(module)


def test_no_import_cycles() -> None:
    inside, _ = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(inside.get(module, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(f"dltrain.{m}".rstrip(".") for m in cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(inside):
        if module not in state:
            visit(module)


def test_imports_go_down_the_layers() -> None:
    inside, _ = import_graph()
    upward = []
    for module, targets in sorted(inside.items()):
        rank = ORDER.index(layer_of(module))
        for target in sorted(targets):
            if ORDER.index(layer_of(target)) > rank:
                upward.append(f"dltrain.{module} ({layer_of(module)}) imports dltrain.{target} ({layer_of(target)})")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("nn", {"training", "library", "cli"}),  # layers and the model know nothing of training
        ("data", {"nn", "training", "library", "cli"}),  # data knows no model
    ],
)
def test_named_rules(importer: str, forbidden: set[str]) -> None:
    inside, _ = import_graph()
    broken = [f"{m} -> {t}" for m in LAYERS[importer] for t in inside.get(m, ()) if layer_of(t) in forbidden]
    assert not broken


def test_only_the_entry_point_imports_the_cli() -> None:
    inside, _ = import_graph()
    assert {m for m, targets in inside.items() if "cli" in targets} == {"__main__"}


def test_base_and_schema_never_import_torch() -> None:
    _, outside = import_graph()
    heavy = {m: outside[m] & {"torch", "torchvision", "numpy"} for m in outside if layer_of(m) in TORCH_FREE}
    assert not any(heavy.values()), heavy

"""Real text on every machine, offline: the docstrings and sources of Python's standard library.

- `stdlib_docstrings`: every docstring (module, class, function) of the chosen packages,
  labelled with its package: a text-classification task ("which package wrote this?").
- `stdlib_source`: the `.py` files of the chosen modules, as running text for a language model.

Files are read in sorted order and test folders are left out, so the data are the same
on every run of the same Python version.
"""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

from ..errors import DataError
from ..schema.data import StdlibDocstringsParams, StdlibSourceParams
from .base import register_source
from .text import RawText, check_not_empty, read_utf8, running_text


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def module_files(name: str) -> list[Path]:
    """The .py files of a stdlib module or package (sorted; tests left out)."""
    root = stdlib_root()
    package, module = root / name, root / f"{name}.py"
    if package.is_dir():
        return [
            f
            for f in sorted(package.rglob("*.py"))
            if not any(part.startswith("test") for part in f.relative_to(package).parts)
        ]
    if module.is_file():
        return [module]
    raise DataError(f"'{name}' is not a module or package of this Python's standard library ({root})")


def docstrings(file: Path) -> list[tuple[int, str]]:
    """(line, docstring) of the module, its classes and its functions, in source order."""
    try:
        tree = ast.parse(read_utf8(file))
    except SyntaxError:
        return []  # a stdlib file for another Python version (lib2to3's fixtures): not text to learn from
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:
                found.append((getattr(node, "lineno", 1), text))
    return sorted(found, key=lambda item: item[0])


@register_source(StdlibDocstringsParams)
def stdlib_docstrings(p: StdlibDocstringsParams) -> RawText:
    """Docstrings of the chosen stdlib packages, each labelled with its package (duplicates kept once)."""
    raw, seen = RawText(), set()
    for package in p.packages:
        for file in module_files(package):
            for line, text in docstrings(file):
                if len(text) < p.min_chars or text in seen:
                    continue
                seen.add(text)
                raw.texts.append(text)
                raw.labels.append(package)
                raw.where.append(f"'{file}' line {line}")
    for package in p.packages:
        if package not in raw.labels:
            raise DataError(f"data.packages: '{package}' has no docstring of {p.min_chars}+ characters")
    check_not_empty(raw)
    return raw


@register_source(StdlibSourceParams)
def stdlib_source(p: StdlibSourceParams) -> RawText:
    """The source code of the chosen stdlib modules, joined in order, at most `max_chars` characters."""
    parts, total = [], 0
    for name in p.modules:
        for file in module_files(name):
            text = read_utf8(file)
            if not text.strip():
                continue  # an empty __init__.py
            parts.append((f"'{file}'", text[: p.max_chars - total]))
            total += len(parts[-1][1])
            if total >= p.max_chars:
                return running_text(parts)
    return running_text(parts)

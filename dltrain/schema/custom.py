"""Your own layers, losses, metrics and callbacks, named by import path (`"my_pkg.blocks:ResBlock"`).

This module resolves names and describes their keys without importing torch; the
builders are in `dltrain.nn.custom`.

A class's constructor keyword arguments become its config keys: the annotations are
the types, the defaults the defaults, so pydantic validates them like a built-in
layer's keys (unknown key with "did you mean", wrong type, the YAML line). Packages
may also register layers by plain name under the entry-point group `dltrain.nn.layers`.

Nothing of the class goes into a checkpoint but its import path (in the config) and the
version of the package that provides it: loading stays `weights_only`, and a
checkpoint whose class cannot be imported is refused with the `pip install` line.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import create_model
from pydantic_core import PydanticCustomError

from .._params import Params
from .._registry import did_you_mean

ENTRY_POINT_GROUP = "dltrain.nn.layers"


class ImportFailure(Exception):
    """An import path that names nothing importable; the message says what to fix, `reason` what failed."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class Custom:
    """A resolved import path: the object it names and the parameter model of its keys."""

    name: str  # as written in the config: "pkg.mod:Class", or an entry-point name
    path: str  # "pkg.mod:Class"
    obj: Any
    params: type[Params]
    keys: tuple[str, ...]  # the constructor's keyword arguments the config may set
    takes_input_shape: bool


def entry_points() -> dict[str, str]:
    """Layer names registered by installed packages, and the import path each one stands for."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def import_object(path: str) -> Any:
    """The object `module.sub:Name` names; ImportFailure saying what is missing."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ImportFailure(f"'{path}' is not an import path: expected 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportFailure(
            f"cannot import module '{module_name}' for '{path}' ({exc}); install the package that "
            f"provides it, or put its folder on PYTHONPATH",
            str(exc),
        ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            raise ImportFailure(f"module '{module_name}' has no '{attr}'.{did_you_mean(part, names)}")
        target = getattr(target, part)
    return target


def _is_module_class(obj: type) -> bool:
    """Whether `obj` subclasses torch's nn.Module (checked by name: the schema never imports torch)."""
    return any(c.__name__ == "Module" and c.__module__ == "torch.nn.modules.module" for c in obj.__mro__)


_RESOLVED: dict[tuple[str, str], Custom] = {}


def resolve(name: str, kind: str, base: type[Params]) -> Custom | None:
    """The custom `kind` (layer, loss, metric, callback) that `name` names; None when it is no import path.

    Layers may also be entry-point names. Cached per process, so each class is inspected once.
    """
    path = name if ":" in name else entry_points().get(name) if kind == "layer" else None
    if path is None:
        return None
    key = (kind, name)
    if key not in _RESOLVED:
        obj = import_object(path)
        if kind == "layer":
            if not (inspect.isclass(obj) and _is_module_class(obj)):
                raise ImportFailure(f"'{path}' is not an nn.Module class (a layer must be one)")
        params, keys, shape = _params_model(name, obj, base)
        _RESOLVED[key] = Custom(name, path, obj, params, keys, shape)
    return _RESOLVED[key]


def validator(kind: str, base: type[Params], tag: str = "type") -> Callable[[str], type[Params] | None]:
    """For `tagged_union`: the parameter model of a custom name (a located config error when it fails)."""

    def model(name: str) -> type[Params] | None:
        try:
            found = resolve(name, kind, base)
        except ImportFailure as exc:
            raise PydanticCustomError("unknown_name", str(exc).replace("{", "{{").replace("}", "}}")) from None
        return found.params if found else None

    return model


def _params_model(name: str, obj: Any, base: type[Params]) -> tuple[type[Params], tuple[str, ...], bool]:
    """A pydantic model of `obj`'s keyword arguments (its constructor's, for a class), tagged with `name`."""
    function = obj.__init__ if inspect.isclass(obj) else obj
    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # annotations that do not evaluate: keep them unchecked rather than fail
        hints = {}
    fields: dict[str, Any] = {}
    keys = []
    takes_shape = False
    positional = list(signature.parameters.values())[1 if inspect.isclass(obj) else 0 :]
    for parameter in positional:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.name == "input_shape":
            takes_shape = True
            continue
        if not inspect.isclass(obj) and parameter.default is parameter.empty:
            continue  # a function's positional arguments (outputs, targets) are not config keys
        keys.append(parameter.name)
        if parameter.name in base.model_fields:
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints.get(parameter.name, Any), default)
    fields = {"type": (Literal[name], ...), **fields}
    model = create_model(f"Custom[{name}]", __base__=base, **fields)
    model.__doc__ = (inspect.getdoc(obj) or name).split("\n")[0]
    return model, tuple(keys), takes_shape


def kwargs(custom: Custom, params: Params) -> dict[str, Any]:
    """The constructor's keyword arguments from validated params."""
    return {key: getattr(params, key) for key in custom.keys}


def requirements(config: Any) -> list[dict[str, Any]]:
    """Every custom name a resolved config uses, with its import path and providing package's version."""
    found: dict[str, dict[str, Any]] = {}
    registered: dict[str, str] = {}  # entry points, read once (on the first layer-like name not an import path)
    layers = config.get("model", {}).get("layers", []) if isinstance(config, dict) else []
    if any(isinstance(layer, dict) and ":" not in str(layer.get("type")) for layer in layers):
        from .layers import LAYERS

        if any(str(layer.get("type")) not in LAYERS for layer in layers if isinstance(layer, dict)):
            registered = entry_points()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("type")
            if isinstance(name, str) and (":" in name or name in registered):
                path = name if ":" in name else registered[name]
                found[name] = {"type": name, "path": path, **_package(path)}
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    return list(found.values())


def _package(path: str) -> dict[str, Any]:
    """The installed distribution that provides `path`'s top-level module, and its version."""
    top = path.split(":")[0].split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return {"package": dist, "version": metadata.version(dist)}
        except metadata.PackageNotFoundError:
            continue
    return {"package": None, "version": None}


def missing(required: list[dict[str, Any]]) -> str | None:
    """Why the classes a checkpoint needs cannot be imported, with the install line; None when they can."""
    for item in required:
        try:
            import_object(item["path"])
        except ImportFailure as exc:
            if item.get("package"):
                fix = f"install it: pip install {item['package']}=={item['version']}"
            else:
                fix = (
                    f"make module '{item['path'].split(':')[0]}' importable (it came from no installed package: "
                    f"put its folder on PYTHONPATH)"
                )
            return f"it was trained with '{item['path']}', which cannot be imported here ({exc.reason}); {fix}"
    return None

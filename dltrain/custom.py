"""Your own layers, losses, metrics and callbacks, named by import path (`"my_pkg.blocks:ResBlock"`).

A class's constructor keyword arguments become its config keys: the annotations are
the types, the defaults the defaults, so pydantic validates them like a built-in
layer's keys (unknown key with "did you mean", wrong type, the YAML line). Packages
may also register layers by plain name under the entry-point group `dltrain.layers`.

Nothing of the class goes into a checkpoint but its import path (in the config) and the
version of the package that provides it: loading stays `weights_only`, and a
checkpoint whose class cannot be imported is refused with the `pip install` line.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata as metadata
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import create_model
from pydantic_core import PydanticCustomError

from ._params import Params
from ._registry import did_you_mean

ENTRY_POINT_GROUP = "dltrain.layers"


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
        raise ImportFailure(f"cannot import module '{module_name}' for '{path}' ({exc}); install the package that "
                            f"provides it, or put its folder on PYTHONPATH", str(exc)) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            raise ImportFailure(f"module '{module_name}' has no '{attr}'.{did_you_mean(part, names)}")
        target = getattr(target, part)
    return target


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
            from torch import nn

            if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
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
    positional = list(signature.parameters.values())[1 if inspect.isclass(obj) else 0:]
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
    model = create_model(f"Custom[{name}]", __base__=base, type=(Literal[name], ...), **fields)  # type: ignore[call-overload]
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
                fix = (f"make module '{item['path'].split(':')[0]}' importable (it came from no installed package: "
                       f"put its folder on PYTHONPATH)")
            return f"it was trained with '{item['path']}', which cannot be imported here ({exc.reason}); {fix}"
    return None


def shape_on_meta(module: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of `module` for one sample of `shape`, by a forward pass on the meta device (no compute)."""
    import torch

    probe = copy.deepcopy(module).to("meta").eval()
    with torch.no_grad():
        out = probe(torch.empty((2, *shape), device="meta"))
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"returned {type(out).__name__}, not a tensor")
    return tuple(out.shape[1:])


def build_layer(found: Custom, params: Params, shape: tuple[int, ...]) -> Any:
    """Instantiate a custom layer (with `input_shape` when it takes one) and find its output shape on meta."""
    from .layers import Built, LayerError

    extra = {"input_shape": tuple(shape)} if found.takes_input_shape else {}
    try:
        module = found.obj(**kwargs(found, params), **extra)
    except Exception as exc:  # the user's constructor: report it as a build error at the layer's line
        raise LayerError(f"could not be built: {type(exc).__name__}: {exc}") from None
    try:
        out = shape_on_meta(module, shape)
    except Exception as exc:  # the user's forward
        raise LayerError(f"failed on an input of shape {list(shape)}: {type(exc).__name__}: {exc}") from None
    return Built(module, out)


def loss_spec(found: Custom, params: Params) -> Any:
    """A custom loss: a class (its instance is called) or a function `fn(outputs, targets, **keys)`.

    Its task comes from a `task` attribute ("classification", "binary" or "regression"; default
    regression), and the output activation it trains as logits from `absorbs` (default none).
    """
    from torch import nn

    from .losses import LossSpec

    obj = found.obj
    task = getattr(obj, "task", "regression")
    if task not in ("classification", "binary", "regression"):
        raise ValueError(f"'{found.path}'.task must be classification, binary or regression; received {task!r}")

    def make(p: Params) -> nn.Module:
        if inspect.isclass(obj):
            made = obj(**kwargs(found, p))
            return made if isinstance(made, nn.Module) else _Call(made, {})
        return _Call(obj, kwargs(found, p))

    return LossSpec(task, make, getattr(obj, "absorbs", None))


def metric(found: Custom, params: Params, task: str, width: int) -> Any:
    """A custom metric: `fn(outputs, targets, **keys)` (or a class whose instance is one) giving a batch's mean."""
    from .metrics import Metric

    fn = found.obj(**kwargs(found, params)) if inspect.isclass(found.obj) else found.obj
    keys = {} if inspect.isclass(found.obj) else kwargs(found, params)

    class MeanOfBatches(Metric):
        sums = ("total",)
        greater_is_better = bool(getattr(found.obj, "greater_is_better", False))

        def update(self, sums, outputs, targets):  # type: ignore[no-untyped-def]
            sums["total"] += fn(outputs.detach(), targets, **keys).detach().double() * outputs.shape[0]

        def compute(self, sums, count):  # type: ignore[no-untyped-def]
            return sums["total"].item() / max(count, 1)

    return MeanOfBatches(params, task, width)  # type: ignore[arg-type]


def callback(found: Custom, params: Params, default_monitor: str) -> Any:
    """A custom callback: a class with any of Keras-like hooks `on_epoch_end(trainer, row)`, `on_fit_end(trainer)`."""
    from .callbacks import Callback

    inner = found.obj(**kwargs(found, params))

    class Hooks(Callback):
        def on_epoch_end(self, trainer, row):  # type: ignore[no-untyped-def]
            if hasattr(inner, "on_epoch_end"):
                inner.on_epoch_end(trainer, row)

        def on_fit_end(self, trainer):  # type: ignore[no-untyped-def]
            if hasattr(inner, "on_fit_end"):
                inner.on_fit_end(trainer)

        def state(self) -> dict[str, Any]:
            return inner.state() if hasattr(inner, "state") else {}

        def load_state(self, state: dict[str, Any]) -> None:
            if hasattr(inner, "load_state"):
                inner.load_state(state)

    hooks = Hooks(params, default_monitor)
    hooks.__class__.__name__ = found.name  # the checkpoint matches saved states by this name
    return hooks


def _Call(fn: Callable[..., Any], keys: dict[str, Any]) -> Any:
    """`fn` with its keyword arguments bound, as an nn.Module (what the trainer calls a loss)."""
    from torch import nn

    class Call(nn.Module):
        def forward(self, outputs: Any, targets: Any) -> Any:
            return fn(outputs, targets, **keys)

    return Call()

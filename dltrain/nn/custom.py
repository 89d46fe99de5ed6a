"""Building your own layers, losses, metrics and callbacks, named by import path.

Names are resolved and their keys validated in `dltrain.schema.custom` (without torch);
this module builds the layers. Losses, metrics and callbacks are built beside the
built-in ones (`dltrain.nn.losses`, `dltrain.nn.metrics`, `dltrain.train.callbacks`).
"""

from __future__ import annotations

import copy
from typing import Any

from .._params import Params
from ..schema.custom import (
    ENTRY_POINT_GROUP,
    Custom,
    ImportFailure,
    import_object,
    kwargs,
    missing,
    requirements,
    resolve,
)
from .layers import Built, LayerError

__all__ = ["ENTRY_POINT_GROUP", "Custom", "ImportFailure", "import_object", "missing", "requirements", "resolve"]


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

"""One function plans a run's input pipeline: source → preprocessing → adapter → model input.

Before this, input handling was decided in several places that wrote into the config
before and after the data loaded. Now `plan_inputs` decides it all once, from the
config and the source's raw sample shape, and everything downstream reads the plan:
`assemble` (the preprocessing keys), `build_model` (the in-model adapter), the feature
cache (whether training batches are augmented), the checkpoint, `predict` and `serve`
(how to read a new sample), `export` (its JSON).

A pretrained backbone at the front of the model expects what it was trained on:
ImageNet statistics, 3-channel images at least its minimum size. Unless the data
config says otherwise, those keys are planned, written into the resolved config (so
the stored config shows what ran), and reported as notes.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ..config import LoadedConfig
from ..schema.backbones import PretrainedParams
from ..schema.inputs import InputPlan, sample_kind

Shape = tuple[int, ...]


def _leading_backbone(loaded: LoadedConfig) -> PretrainedParams | None:
    first = loaded.config.model.layers[0]
    return first if isinstance(first, PretrainedParams) else None


def model_shape(data: Any, raw_shape: Shape) -> Shape:
    """A raw sample's shape after the preprocessing keys that move axes (channels_last, flatten)."""
    shape = raw_shape
    if data.channels_last and len(shape) == 3:
        shape = (shape[2], shape[0], shape[1])
    if data.flatten:
        shape = (math.prod(shape),)
    return shape


def _backbone_defaults(loaded: LoadedConfig, shape: Shape) -> tuple[dict[str, Any], list[str]]:
    """The data keys a leading pretrained backbone needs and the config leaves open, with a note each."""
    first = _leading_backbone(loaded)
    data = loaded.config.data
    if first is None:
        return {}, []
    changes: dict[str, Any] = {}
    notes: list[str] = []
    if first.weights is not None and data.normalize is None:
        changes["normalize"] = "imagenet"
        notes.append(
            f"data.normalize: imagenet applied by default: the pretrained {first.label} weights expect "
            f"ImageNet statistics (set data.normalize to choose otherwise)"
        )
    if len(shape) != 3:
        raise loaded.error(
            ("model", "layers", 0),
            f"{first.label} (layer 0) takes images [C, H, W]; this data's "
            f"samples are {list(shape)} (use image data, e.g. digits with as_image: true)",
        )
    if shape[0] == 1 and data.channels is None:
        changes["channels"] = 3
        notes.append(f"data.channels: 3 applied by default: {first.label} takes RGB images")
    height, width = first.min_size
    if data.resize is None and (shape[1] < height or shape[2] < width):
        changes["resize"] = [max(shape[1], height), max(shape[2], width)]
        notes.append(
            f"data.resize: {changes['resize']} applied by default: {first.label} needs at least {height}x{width} inputs"
        )
    return changes, notes


def _augments(data: Any) -> bool:
    """Whether `data.augment` asks for any random transform (`augment: {}` asks for none)."""
    augment = getattr(data, "augment", None)
    return augment is not None and bool(augment.random_flip or augment.random_crop or augment.random_rotation)


def plan_inputs(loaded: LoadedConfig, raw_shape: Shape) -> InputPlan:
    """The run's input plan for samples of `raw_shape` (as the source read them); the defaults it
    applies are written into `loaded`'s config, once, here."""
    changes, notes = _backbone_defaults(loaded, model_shape(loaded.config.data, raw_shape))
    if changes:
        data = loaded.config.data.model_copy(update=changes)
        loaded.config = loaded.config.model_copy(update={"data": data})
    data = loaded.config.data
    resize = data.resize_to
    return InputPlan(
        source=data.source,
        kind=sample_kind(data.source, list(raw_shape)),
        raw_shape=list(raw_shape),
        normalize=data.normalize,
        channels=data.channels,
        resize=list(resize) if resize is not None else None,
        imagenet=data.normalize == "imagenet",
        augment=_augments(data),
        notes=notes,
    )


def with_raw_shape(plan: InputPlan, raw_shape: list[int] | None) -> InputPlan:
    """The plan with the raw sample as preprocessing stores it (a table's encoded width, once fitted)."""
    return replace(plan, raw_shape=list(raw_shape or plan.raw_shape))

"""How a run treats its backbones: input defaults, optimizer groups, unfreezing.

- A pretrained backbone at the front of the model expects what it was trained on:
  3-channel images at least its minimum size, ImageNet statistics. Unless the data
  config says otherwise, those data keys are filled in, written into the resolved
  config (so `evaluate` and `predict` do the same), and reported as notes.
- Backbone parameters get their own optimizer group (`lr * backbone_lr_mult`),
  including the frozen ones that `unfreeze_at_epoch` will release later, so the
  optimizer (and its checkpointed state) keeps one shape for the whole run.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import LoadedConfig
from ..nn.backbones import BackboneModule
from ..reporting import Reporter
from ..schema.backbones import PretrainedParams

Shape = tuple[int, ...]


def _leading_backbone(loaded: LoadedConfig) -> PretrainedParams | None:
    first = loaded.config.model.layers[0]
    return first if isinstance(first, PretrainedParams) else None


def _update_data(loaded: LoadedConfig, changes: dict[str, Any]) -> None:
    data = loaded.config.data.model_copy(update=changes)
    loaded.config = loaded.config.model_copy(update={"data": data})


def normalization_default(loaded: LoadedConfig) -> list[str]:
    """Before the data loads: `normalize: imagenet` for a leading pretrained backbone."""
    first = _leading_backbone(loaded)
    if first is None or first.weights is None or loaded.config.data.normalize is not None:
        return []
    _update_data(loaded, {"normalize": "imagenet"})
    return [
        f"data.normalize: imagenet applied by default: the pretrained {first.label} weights expect "
        f"ImageNet statistics (set data.normalize to choose otherwise)"
    ]


def image_defaults(loaded: LoadedConfig, shape: Shape) -> list[str]:
    """Once the data's shape is known: 3 channels and the minimum size for a leading backbone."""
    first = _leading_backbone(loaded)
    data = loaded.config.data
    if first is None:
        return []
    if len(shape) != 3:
        raise loaded.error(
            ("model", "layers", 0),
            f"{first.label} (layer 0) takes images [C, H, W]; this data's "
            f"samples are {list(shape)} (use image data, e.g. digits with as_image: true)",
        )
    changes: dict[str, Any] = {}
    notes = []
    if shape[0] == 1 and data.channels is None:
        changes["channels"] = 3
        notes.append(f"data.channels: 3 applied by default: {first.label} takes RGB images")
    height, width = first.min_size
    if data.resize is None and (shape[1] < height or shape[2] < width):
        changes["resize"] = [max(shape[1], height), max(shape[2], width)]
        notes.append(
            f"data.resize: {changes['resize']} applied by default: {first.label} needs at least {height}x{width} inputs"
        )
    if changes:
        _update_data(loaded, changes)
    return notes


def backbones(network: nn.Module) -> list[BackboneModule]:
    return [m for m in network.modules() if isinstance(m, BackboneModule)]


def _params(blocks: list[list[nn.Module]]) -> list[nn.Parameter]:
    return [p for block in blocks for module in block for p in module.parameters()]


def param_groups(network: nn.Module, lr: float) -> list[dict[str, Any]]:
    """The optimizer's groups: the rest of the model at `lr`, each backbone at `lr * backbone_lr_mult`."""
    found = backbones(network)
    inside = {id(p) for b in found for p in b.parameters()}
    rest = [p for p in network.parameters() if p.requires_grad and id(p) not in inside]
    groups: list[dict[str, Any]] = [{"params": rest}] if rest else []
    for backbone in found:
        params = _params(backbone.trainable_blocks())
        if params:
            groups.append({"params": params, "lr": lr * backbone.lr_mult})
    return groups


def unfreeze(network: nn.Module, epoch: int, reporter: Reporter) -> None:
    """Release the blocks whose `unfreeze_at_epoch` has come, and say so."""
    for backbone in backbones(network):
        if backbone.unfreeze_at_epoch is None or epoch < backbone.unfreeze_at_epoch:
            continue
        before = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
        backbone.train_last_blocks(backbone.trainable_layers)
        after = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
        if after != before:
            count = backbone.trainable_layers or len(backbone.blocks)
            reporter.message(
                f"epoch {epoch}: unfroze the last {count} of {len(backbone.blocks)} blocks of "
                f"{backbone.label} ({after:,} parameters now train, lr x {backbone.lr_mult:g})"
            )


def plan_notes(network: nn.Module) -> list[str]:
    """What `check` and `fit` say about each backbone: frozen or not, and what unfreezes when."""
    notes = []
    for backbone in backbones(network):
        total = sum(p.numel() for p in backbone.parameters())
        frozen = sum(p.numel() for p in backbone.parameters() if not p.requires_grad)
        text = f"{backbone.label}: {frozen:,} of {total:,} parameters frozen"
        if backbone.unfreeze_at_epoch is not None:
            count = backbone.trainable_layers or len(backbone.blocks)
            text += (
                f"; the last {count} of {len(backbone.blocks)} blocks "
                f"({sum(p.numel() for p in _params(backbone.trainable_blocks())):,} parameters) "
                f"unfreeze at epoch {backbone.unfreeze_at_epoch}"
            )
        if backbone.lr_mult != 1.0:
            text += f"; backbone lr x {backbone.lr_mult:g}"
        notes.append(text)
    return notes

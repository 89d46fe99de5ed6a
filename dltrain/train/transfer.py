"""How a run treats its backbones: optimizer groups, unfreezing, what `check` says of them.

(The input defaults a leading pretrained backbone needs are part of the input plan:
`dltrain.data.plan`.)

- Backbone parameters get their own optimizer group (`lr * backbone_lr_mult`),
  including the frozen ones that `unfreeze_at_epoch` will release later, so the
  optimizer (and its checkpointed state) keeps one shape for the whole run.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..nn.backbones import BackboneModule
from ..reporting import Reporter


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

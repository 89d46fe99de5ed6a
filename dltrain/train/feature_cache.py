"""Cached features: run a frozen leading backbone once, then train the head on its outputs.

With the backbone frozen (and its BatchNorm/Dropout in eval mode), its output for a
sample never changes, so every epoch after the first would recompute the same numbers.
When the backbone comes first (after the input adapter), stays frozen for the whole
run and no random augmentation touches the training batches, its outputs for every
split are computed once here; the trainer then feeds those to the remaining layers,
in the same batch order, so losses and metrics are those of the uncached run.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ..data import Split
from ..data.augment import build_augment
from ..data.batches import first_inputs, input_batches
from ..nn.backbones import BackboneModule
from ..nn.model import Network
from ..reporting import Reporter

# Above this, the cache would crowd out the device (e.g. VGG16 at 224x224 keeps 98 KiB a sample).
CACHE_LIMIT_BYTES = 4 * 2**30


def cacheable(network: Network, data_config: Any) -> BackboneModule | None:
    """The leading backbone, when its outputs may be computed once for the whole run."""
    layers = network.layers
    if not isinstance(layers, nn.Sequential):  # a graph: its backbone may not lead every branch
        return None
    first = layers[0]
    if not isinstance(first, BackboneModule) or len(layers) < 2 or not first.cache_features:
        return None
    if not first.is_frozen or first.unfreeze_at_epoch is not None:
        return None
    if (
        build_augment(getattr(data_config, "augment", None)) is not None
    ):  # random augmentation changes every epoch's inputs
        return None
    return first


@torch.no_grad()
def _features(prefix: nn.Module, split: Any, batch_size: int, device: torch.device) -> torch.Tensor:
    # no_grad, not inference_mode: the head's backward must be able to save these tensors
    return torch.cat([prefix(x) for x in input_batches(split, batch_size, device)])


def cache_features(
    network: Network, splits: dict[str, Split], data_config: Any, batch_size: int, reporter: Reporter
) -> tuple[nn.Module, dict[str, Split]]:
    """The trainer's `trained` module and the splits that feed it: the head and cached features when possible."""
    backbone = cacheable(network, data_config)
    if backbone is None:
        return network, splits
    adapter = network.adapter
    prefix = nn.Sequential(*([adapter] if adapter is not None else []), backbone).eval()
    device = next(backbone.parameters()).device
    with torch.no_grad():
        sample = prefix(first_inputs(splits["train"], 1).to(device))
    needed = sample[0].numel() * sample.element_size() * sum(len(s) for s in splits.values())
    if needed > CACHE_LIMIT_BYTES:
        reporter.message(
            f"{backbone.label} outputs not cached: they would take {needed / 2**30:.1f} GiB "
            f"(limit {CACHE_LIMIT_BYTES / 2**30:.0f} GiB)"
        )
        return network, splits
    started = time.perf_counter()
    cached = {
        name: Split(_features(prefix, split, batch_size, device), split.y.to(device)) for name, split in splits.items()
    }
    seconds = time.perf_counter() - started
    head = network.layers[1:]  # type: ignore[index]  # a chain: cacheable() returns None for a graph
    shape = list(sample.shape[1:])
    count = sum(len(s) for s in splits.values())
    reporter.message(
        f"{backbone.label} is frozen: its outputs {shape} for {count:,} samples were computed once "
        f"({seconds:.1f}s, {needed / 2**20:.0f} MiB); the layers after it train on them "
        f"(set cache_features: false to recompute every step)"
    )
    return head, cached

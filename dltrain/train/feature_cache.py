"""Cached features: run a frozen backbone once, then train the rest of the model on its outputs.

With the backbone frozen (and its BatchNorm/Dropout in eval mode), its output for a
sample never changes, so every epoch after the first would recompute the same numbers.
When the backbone takes a model input directly (first in a chain, after the input
adapter; or, in a graph, the only layer that takes that input), stays frozen for the
whole run and no random augmentation touches the training batches, its outputs for
every split are computed once here; the trainer then feeds those to the remaining
layers (the graph with the backbone's node passing its input through), in the same
batch order, so losses and metrics are those of the uncached run.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.fx as fx
from torch import nn

from ..data import Split
from ..data.batches import first_inputs, input_batches
from ..nn.backbones import BackboneModule
from ..nn.model import Network
from ..reporting import Reporter
from ..schema.inputs import InputPlan

# Above this, the cache would crowd out the device (e.g. VGG16 at 224x224 keeps 98 KiB a sample).
CACHE_LIMIT_BYTES = 4 * 2**30


def _fixed(module: nn.Module) -> bool:
    """A backbone whose outputs cannot change during the run."""
    return (
        isinstance(module, BackboneModule)
        and module.cache_features
        and module.is_frozen
        and module.unfreeze_at_epoch is None
    )


@dataclass
class Cut:
    """Where a fixed backbone sits: the backbone, what runs up to it, what runs after it, and
    which model input it replaces (None: the one input of a chain or a one-input graph)."""

    backbone: BackboneModule
    prefix: nn.Module
    head: nn.Module
    input_name: str | None = None


def _chain_cut(network: Any) -> Cut | None:
    layers = network.layers
    first = cast(BackboneModule, layers[0])
    if len(layers) < 2 or not _fixed(first):
        return None
    adapter = network.adapter
    prefix = nn.Sequential(*([adapter] if adapter is not None else []), first)
    return Cut(first, prefix, layers[1:])


def _graph_cut(network: Any) -> Cut | None:
    """A fixed backbone that is the only user of a model input: the graph's head passes its input through."""
    layers = network.layers
    if not isinstance(layers, fx.GraphModule):
        return None
    for node in layers.graph.nodes:
        if node.op != "call_module" or not _fixed(layers.get_submodule(node.target)):
            continue
        source = node.args[0]
        if not isinstance(source, fx.Node) or source.op != "placeholder" or len(source.users) != 1:
            continue
        root = nn.Module()
        for name, child in layers.named_children():
            root.add_module(name, nn.Identity() if name == node.target else child)
        graph = fx.GraphModule(root, layers.graph, class_name="Head")
        backbone = cast(BackboneModule, layers.get_submodule(str(node.target)))
        if hasattr(network, "input_names"):  # named inputs: the head takes the dict, the features in place of one
            head = copy.copy(network)
            head._modules = {**network._modules, "layers": graph}
            return Cut(backbone, backbone, head, str(source.target))
        adapter = network.adapter
        prefix = nn.Sequential(*([adapter] if adapter is not None else []), backbone)
        return Cut(backbone, prefix, graph)
    return None


def find_cut(network: Any, plan: InputPlan | None) -> Cut | None:
    """Where the outputs of a fixed backbone may be computed once for the whole run (the input plan
    says whether training batches are randomly augmented, which changes every epoch's inputs)."""
    if plan is None or plan.augment:
        return None
    if isinstance(network.layers, nn.Sequential):
        return _chain_cut(network)
    return _graph_cut(network)


def cacheable(network: Network, plan: InputPlan | None) -> BackboneModule | None:
    """The backbone whose outputs may be computed once for the whole run, if there is one."""
    cut = find_cut(network, plan)
    return cut.backbone if cut is not None else None


@torch.no_grad()
def _features(prefix: nn.Module, split: Any, batch_size: int, device: torch.device, name: str | None) -> torch.Tensor:
    # no_grad, not inference_mode: the head's backward must be able to save these tensors
    batches: Any = input_batches(split, batch_size, device)  # tensors, or Named dicts of them
    return torch.cat([prefix(x if name is None else x[name]) for x in batches])


def _with_features(split: Split, features: torch.Tensor, name: str | None) -> Split:
    """The split with its (named) input replaced by the backbone's outputs."""
    if name is None:
        return Split(features, split.y)
    named: Any = split.x
    return Split(type(named)({**named, name: features}), split.y)


def cache_features(
    network: Network, splits: dict[str, Split], plan: InputPlan | None, batch_size: int, reporter: Reporter
) -> tuple[nn.Module, dict[str, Split]]:
    """The trainer's `trained` module and the splits that feed it: the head and cached features when possible."""
    cut = find_cut(network, plan)
    if cut is None:
        return network, splits
    backbone, prefix, name = cut.backbone, cut.prefix.eval(), cut.input_name
    device = next(backbone.parameters()).device
    with torch.no_grad():
        first: Any = first_inputs(splits["train"], 1).to(device)
        sample = prefix(first if name is None else first[name])
    needed = sample[0].numel() * sample.element_size() * sum(len(s) for s in splits.values())
    if needed > CACHE_LIMIT_BYTES:
        reporter.message(
            f"{backbone.label} outputs not cached: they would take {needed / 2**30:.1f} GiB "
            f"(limit {CACHE_LIMIT_BYTES / 2**30:.0f} GiB)"
        )
        return network, splits
    started = time.perf_counter()
    cached = {
        key: _with_features(split.to(device), _features(prefix, split, batch_size, device, name), name)
        for key, split in splits.items()
    }
    seconds = time.perf_counter() - started
    head = cut.head
    shape = list(sample.shape[1:])
    count = sum(len(s) for s in splits.values())
    reporter.message(
        f"{backbone.label} is frozen: its outputs {shape} for {count:,} samples were computed once "
        f"({seconds:.1f}s, {needed / 2**20:.0f} MiB); the layers after it train on them "
        f"(set cache_features: false to recompute every step)"
    )
    return head, cached

"""Build the model layer by layer with the shape known at each step, and summarize it.

The network returns logits: a final softmax (or sigmoid) that a cross-entropy loss
absorbs is split off here (kept by name as `output_activation`, applied by
`probabilities`); `predict` and the exported models turn the logits into
probabilities, and `evaluate` scores the logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import Config, LoadedConfig
from ..errors import ConfigError
from ..schema.inputs import InputPlan
from ..schema.layers import LayerParams
from . import custom, graph
from .activations import apply_output_activation
from .adapter import InputAdapter
from .budget import meta_parameters, parameter_problem
from .layers import LAYERS, Built, LayerError, kernel_penalty
from .losses import loss_spec
from .metrics import METRICS

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerSummary:
    """One row of the model summary."""

    index: int
    type: str
    output_shape: Shape
    params: int
    trainable_params: int
    name: str = ""
    inputs: tuple[str, ...] = ()  # what the layer takes (model inputs or earlier layers' names)


class Network(nn.Module):
    """The user's layers in order; `forward` gives logits (or values, for regression)."""

    __jit_unused_properties__ = ["has_penalty"]  # training-only: keeps the network scriptable for export

    def __init__(
        self,
        layers: list[nn.Module] | nn.Module,
        output_activation: str | None,
        penalties: list[tuple[torch.Tensor, float, float]],
        adapter: InputAdapter | None = None,
    ) -> None:
        super().__init__()
        self.adapter = adapter
        self.layers = layers if isinstance(layers, nn.Module) else nn.Sequential(*layers)  # a graph's GraphModule
        self.output_activation = output_activation
        self._penalties = penalties

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.adapter is not None:
            x = self.adapter(x)
        return self.layers(x)

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        """What the user's final activation would have produced from `outputs` (the logits)."""
        return apply_output_activation(self.output_activation, outputs)

    @property
    def has_penalty(self) -> bool:
        return bool(self._penalties)

    def penalty(self) -> torch.Tensor:
        """Keras's kernel regularization term, to add to the loss."""
        return kernel_penalty(self._penalties)


@dataclass
class BuiltModel:
    network: Network
    summary: list[LayerSummary]
    input_shape: Shape
    notes: list[str] = field(default_factory=list)  # defaults applied and plans made, for the user
    wired: bool = False  # a graph (not a plain stack): the summary shows each layer's name and inputs

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.summary)

    @property
    def trainable_params(self) -> int:
        return sum(row.trainable_params for row in self.summary)


def _channels_last_hint(shape: list[int]) -> str | None:
    """A channels-first suggestion when `shape` looks like Keras's `[H, W, C]`."""
    if len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] > 4 and shape[1] > 4:
        return f"input_shape {shape} looks channels-last; dltrain uses channels-first: [{shape[2]}, {shape[0]}, {shape[1]}]"
    return None


def _final_activation(config: Config, index: int) -> tuple[int, str] | None:
    """(index, name) of the activation the output layer `index` applies, if it has one."""
    name = getattr(config.model.layers[index], "activation", None)
    return (index, name) if isinstance(name, str) else None


def _check_task(loaded: LoadedConfig, final: tuple[int, str] | None, absorbs: str | None) -> str | None:
    """The activation to split off; reject activations that would corrupt the loss."""
    if absorbs is None or final is None:
        return None
    index, name = final
    if name == absorbs:
        return name
    if name != "linear":
        loss = getattr(loaded.config.compile.loss, "type", "")
        raise loaded.error(
            ("model", "layers", index, "activation"),
            f"a final '{name}' does not fit the loss '{loss}', which expects logits: "
            f"use activation: {absorbs} (or linear) on the last layer",
        )
    return None


def build_model(
    loaded: LoadedConfig,
    data_shape: Shape,
    target_width: int,
    plan: InputPlan | None = None,
    vocab_size: int | None = None,
) -> BuiltModel:
    """Build the network for inputs of `data_shape` and targets `target_width` wide (the adapter as `plan` says).

    `vocab_size` (text data: the tokenizer's) is the default `input_dim` of the embeddings.
    """
    config = loaded.config
    spec = loss_spec(config.compile.loss)
    _check_metrics(loaded, spec.task)
    declared = config.model.input_shape
    where: tuple[str, ...] = ("model", "input_shape")
    if config.model.inputs and len(config.model.inputs) == 1:  # one named input: its shape is the input_shape
        [(name, declared)] = config.model.inputs.items()
        where = ("model", "inputs", name)
    if declared is not None:
        hint = _channels_last_hint(declared)
        if hint and tuple(declared) != tuple(data_shape):
            raise loaded.error(where, hint)
        if tuple(declared) != tuple(data_shape):
            raise loaded.error(
                where,
                f"input_shape {declared} does not match the data, whose samples are {list(data_shape)}; "
                f"remove input_shape (it is inferred) or fix the data preprocessing",
            )
    wiring = graph.plan(loaded)
    output = graph.single_output(loaded, wiring)
    split_off = _check_task(loaded, _final_activation(config, output), spec.absorbs)
    adapter = _input_adapter(loaded, tuple(data_shape), plan or _config_plan(loaded))

    shapes: dict[graph.Source, Shape] = {next(iter(wiring.inputs)): adapter.out_shape if adapter else tuple(data_shape)}
    modules: list[nn.Module] = []
    penalties: list[tuple[torch.Tensor, float, float]] = []
    summary: list[LayerSummary] = []
    builts: list[Built] = []
    for node, params in zip(wiring.nodes, config.model.layers):
        params = _from_data(params, target_width, vocab_size)
        if split_off and node.index == output:
            params = params.model_copy(update={"activation": "linear"})
        if len(node.sources) == 1 and params.type in LAYERS:  # built-in single-input layers: sized on meta first
            _check_size(loaded, node.index, params, shapes[node.sources[0]], sum(row.params for row in summary))
        built = _build_layer(loaded, wiring, node, params, shapes)
        if not params.trainable:
            built.module.requires_grad_(False)
        modules.append(built.module)
        builts.append(built)
        penalties += [p for p in built.penalties if p[0].requires_grad]
        count = sum(p.numel() for p in built.module.parameters())
        trainable = sum(p.numel() for p in built.module.parameters() if p.requires_grad)
        summary.append(
            LayerSummary(
                node.index,
                params.type,
                built.shape,
                count,
                trainable,
                node.name,
                tuple(wiring.label(s) for s in node.sources),
            )
        )
        shapes[node.index] = built.shape
    per_token = (data_shape[0],) if config.data.per_token else ()  # a language model: [T, V]
    _check_output(loaded, spec.task, output, shapes[output], target_width, per_token)
    masks, notes = graph.mask_flow(wiring, builts)
    layers = modules if wiring.is_chain and not masks else graph.graph_module(wiring, modules, masks)
    return BuiltModel(
        Network(layers, split_off, penalties, adapter),
        summary,
        tuple(data_shape),
        notes + _old_form_notes(loaded),
        wired=not wiring.is_chain,
    )


def _from_data(params: Any, target_width: int, vocab_size: int | None) -> Any:
    """`params` with what the data decides filled in: `units: auto` and an embedding's vocabulary (`input_dim`)."""
    update: dict[str, int] = {}
    if getattr(params, "units", None) == "auto":
        update["units"] = target_width
    if "input_dim" in type(params).model_fields and params.input_dim is None and vocab_size is not None:
        update["input_dim"] = vocab_size
    return params.model_copy(update=update) if update else params


def _old_form_notes(loaded: LoadedConfig) -> list[str]:
    """A note for each `Backbone` still written the old way, `name: resnet18` (read as `arch: resnet18`)."""
    notes = []
    for index, params in enumerate(loaded.config.model.layers):
        path = ("model", "layers", index)
        if params.type != "Backbone" or (*path, "arch") in loaded.origins or (*path, "name") not in loaded.origins:
            continue
        notes.append(
            f"{loaded.where((*path, 'name'))}: model.layers.{index}: `name: {params.name}` read as "
            f"`arch: {params.arch}` (the old form); write `arch: {params.arch}`, since `name` now names "
            f"the layer's node in a graph"
        )
    return notes


def _config_plan(loaded: LoadedConfig) -> InputPlan:
    """The adapter part of an input plan, read from a config whose defaults are already applied (tests, tools)."""
    return InputPlan.from_config({"data": loaded.config.data.model_dump()}, None)


def _input_adapter(loaded: LoadedConfig, shape: Shape, plan: InputPlan) -> InputAdapter | None:
    """The on-device channel/resize/ImageNet step the input plan holds, if any."""
    if not plan.adapts:
        return None
    imagenet = plan.imagenet
    key = "channels" if plan.channels is not None else "resize" if plan.resize is not None else "normalize"
    if len(shape) != 3:
        raise loaded.error(("data", key), f"'{key}' applies to images [C, H, W]; this data's samples are {list(shape)}")
    if shape[0] not in (1, 3) and plan.channels is not None:
        raise loaded.error(
            ("data", "channels"), f"channels converts between 1 and 3 channels; the images have {shape[0]}"
        )
    resize = (plan.resize[0], plan.resize[1]) if plan.resize is not None else None
    adapter = InputAdapter(shape, plan.channels, resize, imagenet)
    if imagenet and adapter.out_shape[0] != 3:
        raise loaded.error(("data", "normalize"), "normalize: imagenet needs 3-channel images; add `channels: 3`")
    return None if adapter.is_identity else adapter


def _check_size(loaded: LoadedConfig, index: int, params: Any, shape: Shape, before: int) -> None:
    """Refuse a layer too large for memory before allocating it (counted on the meta device).

    Backbones are skipped: their sizes are fixed, and building them reads weight files.
    """
    if "weights" in type(params).model_fields:
        return
    count = meta_parameters(lambda: LAYERS.get(params.type).obj(params, shape))
    problem = parameter_problem(count, before) if count else None
    if problem:
        raise loaded.error(("model", "layers", index), f"{params.type} (layer {index}) {problem}")


def _build_layer(
    loaded: LoadedConfig, wiring: graph.Plan, node: graph.Node, params: Any, shapes: dict[graph.Source, Shape]
) -> Built:
    layer_type, index = params.type, node.index
    given = [shapes[s] for s in node.sources]
    try:
        found = None if layer_type in LAYERS else custom.resolve(layer_type, "layer", LayerParams)
        if found is not None:
            return custom.build_layer(found, params, given[0])
        return LAYERS.get(layer_type).obj(params, given if node.merge or len(given) > 1 else given[0])
    except LayerError as exc:
        takes = ""
        if not wiring.is_chain:
            takes = "; its inputs: " + ", ".join(f"{wiring.label(s)} {list(shapes[s])}" for s in node.sources)
        raise loaded.error(("model", "layers", index), f"{layer_type} (layer {index}) {exc}{takes}") from None


def _check_output(loaded: LoadedConfig, task: str, index: int, shape: Shape, width: int, per_token: Shape = ()) -> None:
    last = ("model", "layers", index)
    layer_type = loaded.config.model.layers[index].type
    if per_token:
        if tuple(shape) != (*per_token, width):
            raise loaded.error(
                last,
                f"{layer_type} (layer {last[2]}) outputs {list(shape)}; a language model needs the next-token "
                f"scores at every position, [{per_token[0]}, {width}] (sequence_length, vocabulary): keep the "
                f"sequence axis (return_sequences) and end with Dense(units: {width})",
            )
        return
    if len(shape) != 1:
        raise loaded.error(
            last,
            f"the model's output is {list(shape)} per sample; the loss needs a flat [{width}] "
            f"(add Flatten or GlobalAveragePooling before the last Dense)",
        )
    if shape[0] != width:
        what = (
            f"the data has {width} classes"
            if task == "classification"
            else f"the targets have {width} values per sample"
        )
        raise loaded.error(
            last,
            f"{layer_type} (layer {last[2]}) outputs {list(shape)}, but {what}: "
            f"expected [{width}]; set its units to {width}",
        )


def _check_metrics(loaded: LoadedConfig, task: str) -> None:
    problems = []
    for index, metric in enumerate(loaded.config.compile.metrics):
        if METRICS.canonical(metric.type) is None:  # an import path: it declares no tasks
            continue
        allowed = METRICS.get(metric.type).obj.tasks
        if task not in allowed:
            err = loaded.error(
                ("compile", "metrics", index),
                f"metric '{metric.type}' does not apply to a {task} loss "
                f"('{getattr(loaded.config.compile.loss, 'type', '')}'); it needs: {', '.join(allowed)}",
            )
            problems += err.problems
    if problems:
        raise ConfigError(problems, loaded.source)

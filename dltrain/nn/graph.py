"""Models beyond a stack: which layer takes which outputs, checked before anything is built.

`model.layers` stays a list read top to bottom. A layer without `inputs` takes the
layer above it, so a plain list is a chain, and a chain is built as the
`nn.Sequential` it always was (same modules, same parameter names, same speed). Any
other wiring becomes a `torch.fx.GraphModule` whose `forward` is generated Python code
calling the layers in list order: no interpreter loop per step, and it scripts,
traces and exports like hand-written code.

Because a layer may only name layers above it, the list order is a topological order;
a reference to a later layer is an error (reported as a cycle when that layer leads
back here), as are unknown names and layers whose output reaches no model output.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch.fx as fx
from torch import nn

from .._registry import did_you_mean
from ..config import LoadedConfig
from ..errors import ConfigError
from ..schema.layers import ContextParams
from .merge import MergeParams

Source = int | str  # a layer's index in model.layers, or the name of a model input


@dataclass(frozen=True)
class Node:
    """One layer of the graph: where it sits in the list and what it takes."""

    index: int
    name: str  # its `name`, or `<type>_<index>` for display
    sources: tuple[Source, ...]
    merge: bool


@dataclass(frozen=True)
class Plan:
    """The wiring of a model: inputs, layers in order, and which layers are its outputs."""

    inputs: dict[str, list[int] | None]  # name -> declared shape (None: taken from the data)
    nodes: list[Node]
    outputs: list[int]

    @property
    def is_chain(self) -> bool:
        """One input, one output at the end, each layer taking the one above: a Sequential."""
        if len(self.inputs) != 1 or self.outputs != [len(self.nodes) - 1]:
            return False
        first = next(iter(self.inputs))
        return all(not n.merge and n.sources == ((n.index - 1,) if n.index else (first,)) for n in self.nodes)

    def label(self, source: Source) -> str:
        """How a source is shown in messages and summaries."""
        return source if isinstance(source, str) else self.nodes[source].name


def plan(loaded: LoadedConfig) -> Plan:
    """Resolve every layer's inputs and the model's outputs; all problems at once, with lines."""
    model = loaded.config.model
    inputs: dict[str, list[int] | None] = dict(model.inputs) if model.inputs else {"input": model.input_shape}
    layers = model.layers
    problems: list = []
    named: dict[str, int] = {}
    for index, params in enumerate(layers):
        name = params.name
        if name is None:
            continue
        if name in inputs:
            problems += loaded.error(
                ("model", "layers", index, "name"),
                f"'{name}' is already the name of a model input; choose another name",
            ).problems
        elif name in named:
            problems += loaded.error(
                ("model", "layers", index, "name"),
                f"'{name}' already names layer {named[name]}; layer names must be unique",
            ).problems
        else:
            named[name] = index
    nodes = []
    for index, params in enumerate(layers):
        sources, found = _sources(loaded, index, named, inputs)
        problems += found or _arity(loaded, index, len(sources))
        label = params.name or f"{params.type.split(':')[-1].lower()}_{index}"
        nodes.append(Node(index, label, tuple(sources), isinstance(params, MergeParams)))
    outputs, found = _outputs(loaded, named)
    problems += found
    if problems:
        raise ConfigError(problems, loaded.source)
    result = Plan(inputs, nodes, outputs)
    _check_reach(loaded, result)
    return result


def _sources(
    loaded: LoadedConfig, index: int, named: dict[str, int], inputs: dict[str, list[int] | None]
) -> tuple[list[Source], list]:
    """The sources layer `index` names (its `inputs`, or the layer above), and the problems found."""
    params = loaded.config.model.layers[index]
    path = ("model", "layers", index, "inputs")
    refs = params.inputs if isinstance(params.inputs, list) else [] if params.inputs is None else [params.inputs]
    what = f"{params.type} (layer {index})"
    if not refs:
        if isinstance(params, MergeParams):
            return [], loaded.error(
                ("model", "layers", index), f"{what} merges several layers: name them, e.g. inputs: [a, b]"
            ).problems
        refs = [-1]
    sources: list[Source] = []
    problems: list = []
    for ref in refs:
        if ref == -1:
            if index > 0:
                sources.append(index - 1)
            elif len(inputs) == 1:
                sources.append(next(iter(inputs)))
            else:
                problems += loaded.error(
                    path if params.inputs is not None else ("model", "layers", index),
                    f"{what} is first, so it takes a model input; name one of {', '.join(inputs)} in its inputs",
                ).problems
        elif isinstance(ref, int):
            problems += loaded.error(
                path, f"{what}: inputs take layer or input names, or -1 for the layer above; received {ref}"
            ).problems
        elif ref in inputs:
            sources.append(ref)
        elif ref in named and named[ref] < index:
            sources.append(named[ref])
        elif ref in named:
            problems += loaded.error(path, _later_message(loaded, what, ref, named[ref], index, named)).problems
        else:
            earlier = [*inputs, *(n for n, i in named.items() if i < index)]
            problems += loaded.error(
                path,
                f"{what} takes '{ref}', which names no model input or earlier layer."
                f"{did_you_mean(ref, earlier)} Known here: {', '.join(earlier)}",
            ).problems
    return sources, problems


def _arity(loaded: LoadedConfig, index: int, count: int) -> list:
    """Problems when a layer is given more inputs than it takes (merges take any number, checked when built)."""
    params = loaded.config.model.layers[index]
    most = 1_000 if isinstance(params, MergeParams) else 2 if isinstance(params, ContextParams) else 1
    if count <= most:
        return []
    takes = "[query, context]" if most == 2 else "one input"
    return loaded.error(
        ("model", "layers", index, "inputs"),
        f"{params.type} (layer {index}) takes {takes}; it was given {count}. Combine them first with a merge layer "
        f"(Add, Concatenate, ...)",
    ).problems


def _later_message(loaded: LoadedConfig, what: str, ref: str, target: int, index: int, named: dict[str, int]) -> str:
    """A forward reference: a cycle when the later layer's inputs lead back to `index`."""
    where = loaded.where(("model", "layers", target))
    if target == index:
        return f"{what} takes itself ('{ref}'): a cycle. Name an earlier layer or model input"
    if _leads_to(loaded, target, index, named, set()):
        return (
            f"{what} takes '{ref}' (layer {target}, {where}), whose inputs lead back to this layer: a cycle. "
            f"A layer may only take layers above it in the list"
        )
    return (
        f"{what} takes '{ref}', which is defined later (layer {target}, {where}); a layer may only take "
        f"layers above it: move '{ref}' up"
    )


def _leads_to(loaded: LoadedConfig, start: int, goal: int, named: dict[str, int], seen: set[int]) -> bool:
    """Whether following inputs back from layer `start` reaches layer `goal`."""
    if start == goal:
        return True
    if start in seen or start < 0:
        return False
    seen.add(start)
    params = loaded.config.model.layers[start]
    refs = params.inputs if isinstance(params.inputs, list) else [-1] if params.inputs is None else [params.inputs]
    nxt = [start - 1 if r == -1 else named.get(r, -1) if isinstance(r, str) else -1 for r in refs]
    return any(_leads_to(loaded, n, goal, named, seen) for n in nxt)


def _outputs(loaded: LoadedConfig, named: dict[str, int]) -> tuple[list[int], list]:
    model = loaded.config.model
    if model.outputs is None:
        return [len(model.layers) - 1], []
    names = [model.outputs] if isinstance(model.outputs, str) else model.outputs
    outputs, problems = [], []
    for position, name in enumerate(names):
        path = ("model", "outputs") if isinstance(model.outputs, str) else ("model", "outputs", position)
        if name in named:
            outputs.append(named[name])
        else:
            problems += loaded.error(
                path,
                f"model.outputs names '{name}', which is no layer's name."
                f"{did_you_mean(name, list(named))} Named layers: "
                f"{', '.join(named) or '(none: give layers a name)'}",
            ).problems
    if not names:
        problems += loaded.error(("model", "outputs"), "model.outputs is empty; name at least one layer").problems
    return outputs, problems


def _check_reach(loaded: LoadedConfig, plan: Plan) -> None:
    """Every layer and every model input must lead to an output: a dead branch is a mistake."""
    used: set[Source] = set()
    stack: list[Source] = list(plan.outputs)
    while stack:
        source = stack.pop()
        if source in used:
            continue
        used.add(source)
        if isinstance(source, int):
            stack += plan.nodes[source].sources
    problems = []
    for node in plan.nodes:
        if node.index not in used:
            problems += loaded.error(
                ("model", "layers", node.index),
                f"{loaded.config.model.layers[node.index].type} (layer {node.index}, "
                f"'{node.name}') reaches no model output: take it as a later layer's input, "
                f"list it in model.outputs, or remove it",
            ).problems
    for name in plan.inputs:
        if name not in used:
            problems += loaded.error(
                ("model", "inputs", name),
                f"model input '{name}' is taken by no layer; name it in a layer's inputs or remove it",
            ).problems
    if problems:
        raise ConfigError(problems, loaded.source)


@dataclass(frozen=True)
class Masks:
    """Which padding masks a layer is handed: each is the source of the token ids it is derived from (`ids != 0`)."""

    mask: Source | None = None
    context_mask: Source | None = None


def graph_module(plan: Plan, modules: list[nn.Module], masks: dict[int, Masks] | None = None) -> fx.GraphModule:
    """The layers wired as `plan` says, as generated code (submodules named "0", "1", ... as in a Sequential).

    A layer's second input (cross-attention) is passed as `context=`; the padding masks in
    `masks` as `mask=` and `context_mask=`, each computed once from its ids.
    """
    root = nn.Module()
    for index, module in enumerate(modules):
        root.add_module(str(index), module)
    graph = fx.Graph()
    values: dict[Source, fx.Node] = {name: graph.placeholder(name) for name in plan.inputs}
    padding: dict[Source, fx.Node] = {}

    def mask_of(ids: Source | None) -> fx.Node | None:
        if ids is not None and ids not in padding:
            padding[ids] = graph.call_function(operator.ne, (values[ids], 0))  # (B, T): True at real tokens
        return None if ids is None else padding[ids]

    for node in plan.nodes:
        args = [values[s] for s in node.sources]
        kwargs: dict[str, fx.node.Argument] = {}
        if not node.merge and len(args) == 2:
            kwargs["context"] = args.pop()
        given = (masks or {}).get(node.index, Masks())
        for key, ids in (("mask", given.mask), ("context_mask", given.context_mask)):
            found = mask_of(ids)
            if found is not None:
                kwargs[key] = found
        values[node.index] = graph.call_module(str(node.index), (args,) if node.merge else (args[0],), kwargs)
    outs = [values[i] for i in plan.outputs]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    return fx.GraphModule(root, graph, class_name="Graph")


def mask_flow(plan: Plan, built: list[Any]) -> tuple[dict[int, Masks], list[str]]:
    """Which layers are handed which padding masks (from each layer's `Built` flags), and notes where a mask stops.

    A mask starts at a layer that makes one (an embedding with `mask_zero`), travels
    through layers that keep the time steps (and the first masked input of a merge, or
    the query of an attention), and is handed to every layer on its way that takes one.
    """
    carried: dict[Source, Source] = {}  # a value -> the ids its padding mask is derived from
    handed: dict[int, Masks] = {}
    notes: list[str] = []
    for node, layer in zip(plan.nodes, built):
        incoming = [carried.get(s) for s in node.sources]
        context = not node.merge and len(incoming) == 2
        if layer.takes_mask and any(m is not None for m in incoming):
            handed[node.index] = Masks(incoming[0], incoming[1] if context else None)
        passed = incoming[0] if context else next((m for m in incoming if m is not None), None)
        if layer.makes_mask:
            carried[node.index] = node.sources[0]
        elif layer.keeps_mask and passed is not None:
            carried[node.index] = passed
        elif passed is not None and not layer.takes_mask:
            notes.append(
                f"the padding mask stops at {node.name} (layer {node.index}), which does not keep the time steps: "
                f"from there on, padding takes part in the computation"
            )
    return handed, notes


def single_output(loaded: LoadedConfig, plan: Plan) -> int:
    """The one output layer of a model with one input and one output (several: not built yet)."""
    if len(plan.inputs) > 1:
        raise loaded.error(("model", "inputs"), "several model inputs are not supported yet; use one input")
    if len(plan.outputs) > 1:
        raise loaded.error(("model", "outputs"), "several model outputs are not supported yet; name one output")
    return plan.outputs[0]

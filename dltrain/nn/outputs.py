"""Several named inputs and outputs: each output with its own loss, weight and metrics.

A plain model (one input, one output, one loss) never comes here: it stays the
`Network` it always was. A model with named inputs or several outputs is a
`MultiNetwork`, which takes a dict of input tensors and returns a dict of outputs by
the output layers' names. Its loss is the weighted sum of each output's loss (Keras's
`loss_weights`, default 1), and its history has Keras's columns: the total `loss`,
`<output>_loss` and `<output>_<metric>` (and their `val_` forms). With one output (and
several inputs) the columns are the plain ones, as in Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .._registry import did_you_mean
from ..config import Config, LoadedConfig
from ..errors import ConfigError
from ..schema.losses import Task
from . import graph
from .activations import apply_output_activation
from .layers import LAYERS, kernel_penalty
from .losses import build_loss, loss_spec
from .metrics import METRICS, Metric, Tracker, build_metrics

Shape = tuple[int, ...]


def is_multi(config: Config) -> bool:
    """Whether the model has named inputs beyond one, several outputs, or losses by output."""
    model, loss = config.model, config.compile.loss
    outputs = [model.outputs] if isinstance(model.outputs, str) else model.outputs or []
    by_output = isinstance(loss, dict) or isinstance(config.compile.metrics, dict) or bool(config.compile.loss_weights)
    return (model.inputs is not None and len(model.inputs) > 1) or len(outputs) > 1 or by_output


def output_names(loaded: LoadedConfig, wiring: graph.Plan) -> list[str]:
    return [wiring.nodes[i].name for i in wiring.outputs]


def _by_output(loaded: LoadedConfig, key: str, value: Any, names: list[str], default: Any) -> dict[str, Any]:
    """`compile.<key>` per output: a dict naming each output, or (one output) the plain value."""
    path = ("compile", key)
    if not isinstance(value, dict):
        if len(names) > 1 and value not in (None, []):
            raise loaded.error(
                path,
                f"the model has {len(names)} outputs ({', '.join(names)}): give {key} per output, "
                f"e.g. {{{names[0]}: ..., {names[1]}: ...}}",
            )
        return {name: value if value is not None else default for name in names}
    problems = []
    for name in value:
        if name not in names:
            problems += loaded.error(
                (*path, name),
                f"compile.{key} names '{name}', which is no model output.{did_you_mean(name, names)} "
                f"Outputs: {', '.join(names)}",
            ).problems
    if problems:
        raise ConfigError(problems, loaded.source)
    return {name: value.get(name, default) for name in names}


@dataclass
class OutputPlan:
    """Each output's loss config, task, weight and metric configs, in `model.outputs` order."""

    names: list[str]
    losses: dict[str, Any]
    weights: dict[str, float]
    metrics: dict[str, list[Any]]

    @property
    def tasks(self) -> dict[str, Task]:
        return {name: loss_spec(self.losses[name]).task for name in self.names}


def plan_outputs(loaded: LoadedConfig) -> OutputPlan:
    """Losses, weights and metrics by output, each checked to name a real output (with its line)."""
    compile = loaded.config.compile
    names = output_names(loaded, graph.plan(loaded))
    losses = _by_output(loaded, "loss", compile.loss, names, None)
    missing = [name for name in names if losses[name] is None]
    if missing:
        raise loaded.error(("compile", "loss"), f"no loss for output(s) {', '.join(missing)}: give each output a loss")
    weights = _by_output(loaded, "loss_weights", compile.loss_weights, names, 1.0)
    if not any(weights.values()):
        raise loaded.error(
            ("compile", "loss_weights"),
            "every output's loss weight is 0, so nothing would be trained: give at least one output a weight above 0",
        )
    metrics = _by_output(loaded, "metrics", compile.metrics, names, [])
    plan = OutputPlan(names, losses, weights, metrics)
    _check_metrics(loaded, plan)
    return plan


def _check_metrics(loaded: LoadedConfig, plan: OutputPlan) -> None:
    problems = []
    tasks = plan.tasks
    for name in plan.names:
        for index, metric in enumerate(plan.metrics[name]):
            if METRICS.canonical(metric.type) is None:
                continue
            allowed = METRICS.get(metric.type).obj.tasks
            if tasks[name] not in allowed:
                path = ("compile", "metrics", name, index) if len(plan.names) > 1 else ("compile", "metrics", index)
                problems += loaded.error(
                    path,
                    f"metric '{metric.type}' does not apply to output '{name}' ({tasks[name]}); it needs: "
                    f"{', '.join(allowed)}",
                ).problems
    if problems:
        raise ConfigError(problems, loaded.source)


# --- the network -------------------------------------------------------------------------


class MultiNetwork(nn.Module):
    """The layers of a graph with named inputs and outputs: a dict of inputs in, a dict of logits out."""

    __jit_unused_properties__ = ["has_penalty"]

    def __init__(
        self,
        layers: nn.Module,
        input_names: list[str],
        output_names: list[str],
        activations: dict[str, str | None],
        penalties: list[tuple[torch.Tensor, float, float]],
    ) -> None:
        super().__init__()
        self.adapter = None
        self.layers = layers
        self.input_names = input_names
        self.output_names = output_names
        self.output_activation: str | None = None  # per output: `activations`
        self.activations = activations
        self._penalties = penalties

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.layers(*[x[name] for name in self.input_names])
        outs = (out,) if len(self.output_names) == 1 else out
        return dict(zip(self.output_names, outs))

    def probabilities(self, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: apply_output_activation(self.activations[name], value) for name, value in outputs.items()}

    @property
    def has_penalty(self) -> bool:
        return bool(self._penalties)

    def penalty(self) -> torch.Tensor:
        """Keras's kernel regularization term, to add to the loss."""
        return kernel_penalty(self._penalties)


def build_multi_model(loaded: LoadedConfig, input_shapes: dict[str, Shape], widths: dict[str, int]) -> Any:
    """A `BuiltModel` holding a `MultiNetwork` for inputs of `input_shapes` and outputs `widths` wide."""
    from .model import BuiltModel, LayerSummary, _build_layer, _check_output, _check_size, _final_activation

    config = loaded.config
    outputs = plan_outputs(loaded)
    wiring = graph.plan(loaded)
    problems = []
    for name, declared in (config.model.inputs or {}).items():
        if name not in input_shapes:
            continue
        if declared is not None and tuple(declared) != tuple(input_shapes[name]):
            problems += loaded.error(
                ("model", "inputs", name),
                f"input '{name}' is declared {declared}, but the data's '{name}' samples are "
                f"{list(input_shapes[name])}; fix the shape (or the data)",
            ).problems
    if problems:
        raise ConfigError(problems, loaded.source)
    split_off: dict[int, str | None] = {}
    for name, index in zip(outputs.names, wiring.outputs):
        spec = loss_spec(outputs.losses[name])
        final = _final_activation(config, index)
        split_off[index] = None
        if spec.absorbs is not None and final is not None:
            if final[1] == spec.absorbs:
                split_off[index] = final[1]
            elif final[1] != "linear":
                raise loaded.error(
                    ("model", "layers", index, "activation"),
                    f"output '{name}' ends in '{final[1]}', which does not fit its loss "
                    f"'{outputs.losses[name].type}' (it expects logits): use activation: {spec.absorbs} (or linear)",
                )
    shapes: dict[graph.Source, Shape] = {name: tuple(input_shapes[name]) for name in wiring.inputs}
    modules: list[nn.Module] = []
    penalties: list[tuple[torch.Tensor, float, float]] = []
    summary: list[Any] = []
    for node, params in zip(wiring.nodes, config.model.layers):
        if split_off.get(node.index):
            params = params.model_copy(update={"activation": "linear"})
        if len(node.sources) == 1 and params.type in LAYERS:  # sized on meta first
            _check_size(loaded, node.index, params, shapes[node.sources[0]], sum(r.params for r in summary))
        built = _build_layer(loaded, wiring, node, params, shapes)
        if not params.trainable:
            built.module.requires_grad_(False)
        modules.append(built.module)
        penalties += [p for p in built.penalties if p[0].requires_grad]
        count = sum(p.numel() for p in built.module.parameters())
        trainable = sum(p.numel() for p in built.module.parameters() if p.requires_grad)
        labels = tuple(wiring.label(s) for s in node.sources)
        summary.append(LayerSummary(node.index, params.type, built.shape, count, trainable, node.name, labels))
        shapes[node.index] = built.shape
    tasks = outputs.tasks
    for name, index in zip(outputs.names, wiring.outputs):
        _check_output(loaded, tasks[name], index, shapes[index], widths[name])
    network = MultiNetwork(
        graph.graph_module(wiring, modules),
        list(wiring.inputs),
        outputs.names,
        {name: split_off[index] for name, index in zip(outputs.names, wiring.outputs)},
        penalties,
    )
    first = next(iter(input_shapes.values()))
    return BuiltModel(network, summary, tuple(first), wired=True)  # type: ignore[arg-type]


# --- loss and metrics ----------------------------------------------------------------------


class MultiLoss(nn.Module):
    """The weighted sum of each output's loss; each output's own loss is kept (`parts`) for its column."""

    def __init__(self, names: list[str], losses: list[nn.Module], weights: list[float]) -> None:
        super().__init__()
        self.names = names
        self.losses = nn.ModuleList(losses)
        self.weights = weights
        self.parts: list[torch.Tensor] = []

    def forward(self, outputs: dict[str, torch.Tensor], targets: Any) -> torch.Tensor:
        self.parts = [fn(outputs[name], targets[name]) for name, fn in zip(self.names, self.losses)]
        total = self.parts[0] * self.weights[0]
        for part, weight in zip(self.parts[1:], self.weights[1:]):
            total = total + part * weight
        return total


class MultiTracker:
    """The total loss and every output's loss and metrics, accumulated on the device (one Tracker per output)."""

    def __init__(self, loss: MultiLoss, metrics: dict[str, dict[str, Metric]], device: torch.device) -> None:
        self.loss = loss
        self.device = device
        self.outputs = {name: Tracker(found, device) for name, found in metrics.items()}
        self.total = Tracker({}, device)
        self.lr: float | None = None

    @property
    def sums(self) -> dict[str, torch.Tensor]:
        return self.total.sums

    @property
    def count(self) -> int:
        return self.total.count

    def reset(self) -> None:
        self.total.reset()
        for tracker in self.outputs.values():
            tracker.reset()

    def update(self, loss: torch.Tensor, outputs: dict[str, torch.Tensor], targets: Any) -> None:
        batch = targets.shape[0]
        self.total.sums["loss"].add_(loss.detach(), alpha=batch)
        self.total.count += batch
        for (name, tracker), part in zip(self.outputs.items(), self.loss.parts):
            tracker.update(part, outputs[name], targets[name])

    def all_reduce(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.total.all_reduce(reduce)
        for tracker in self.outputs.values():
            tracker.all_reduce(reduce)

    def compute(self) -> dict[str, float]:
        values = self.total.compute()
        if len(self.outputs) == 1:  # several inputs, one output: the plain columns, as in Keras
            return {**next(iter(self.outputs.values())).compute(), "loss": values["loss"]}
        for name, tracker in self.outputs.items():
            values.update({f"{name}_{key}": value for key, value in tracker.compute().items()})
        return values

    def state(self) -> dict[str, Any]:
        return {"total": self.total.state(), "outputs": {n: t.state() for n, t in self.outputs.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.total.load_state(state["total"])
        for name, tracker in self.outputs.items():
            tracker.load_state(state["outputs"][name])


@dataclass
class Heads:
    """What the trainer needs for a model with named outputs: its loss, its columns, a tracker."""

    loss: MultiLoss
    metrics: dict[str, dict[str, Metric]]

    @property
    def columns(self) -> dict[str, None]:
        """The history's columns besides `loss` (dict keys: ordered, as `Trainer.metrics`' are)."""
        if len(self.metrics) == 1:
            return dict.fromkeys(next(iter(self.metrics.values())))
        return {f"{name}_{key}": None for name, found in self.metrics.items() for key in ("loss", *found)}

    def tracker(self, device: torch.device) -> MultiTracker:
        return MultiTracker(self.loss, self.metrics, device)


def build_heads(loaded: LoadedConfig, widths: dict[str, int], shapes: dict[str, Shape]) -> Heads:
    """Each output's loss (for its per-sample shape in `shapes`) and metrics (for its targets `widths` wide)."""
    outputs = plan_outputs(loaded)
    tasks = outputs.tasks
    losses = [build_loss(outputs.losses[n], shapes[n]) for n in outputs.names]
    loss = MultiLoss(outputs.names, losses, [float(outputs.weights[n]) for n in outputs.names])
    metrics = {name: build_metrics(outputs.metrics[name], tasks[name], widths[name]) for name in outputs.names}
    return Heads(loss, metrics)

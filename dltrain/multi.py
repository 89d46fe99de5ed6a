"""Data and model for a model with named inputs or several outputs (`build.prepare` hands them here).

The same phases as a plain model: the input plan, the data (named arrays), the
model; the plain path is not touched.
"""

from __future__ import annotations

from typing import Any

from .config import LoadedConfig
from .data.named import NamedBundle, assemble_named, read_named
from .data.plan import plan_inputs, with_raw_shape
from .nn import graph
from .nn.model import BuiltModel
from .nn.outputs import build_multi_model, plan_outputs
from .train import transfer


def prepare_multi(loaded: LoadedConfig, preprocessing: Any = None) -> tuple[NamedBundle, BuiltModel]:
    """Load the named arrays and build the `MultiNetwork` for a validated config."""
    config = loaded.config
    outputs = plan_outputs(loaded)
    inputs = list(graph.plan(loaded).inputs)
    raw = read_named(config.data, inputs, outputs.names)
    first = raw.x_train[inputs[0]]
    plan = plan_inputs(loaded, tuple(first.shape[1:]))
    if plan.adapts:
        raise loaded.error(
            ("data",),
            "channels, resize and normalize: imagenet apply to one image input; with named inputs, "
            "give each input in the shape the model takes",
        )
    data = assemble_named(
        raw, loaded.config.data, outputs.tasks, config.fit.validation_split, preprocessing, config.fit.validation_mode
    )
    data.plan = with_raw_shape(plan, list(first.shape[1:]))
    built = build_multi_model(loaded, data.input_shapes, {n: h.width for n, h in data.heads.items()})
    built.notes += plan.notes + transfer.plan_notes(built.network)
    return data, built


def output_confusions(trainer: Any, split: Any) -> dict[str, tuple[list[list[int]], list[str]]]:
    """`evaluate`'s confusion matrices for a model with several outputs, by output: one for each
    classification or single binary output, with its class names."""
    import torch

    from .data.batches import make_batches
    from .nn.metrics import predicted_labels

    heads = trainer.data.heads
    sizes = {
        name: head.width if head.task == "classification" else 2
        for name, head in heads.items()
        if head.task == "classification" or (head.task == "binary" and head.width == 1)
    }
    if not sizes:
        return {}
    device = trainer.ctx.device
    matrices = {name: torch.zeros(n * n, dtype=torch.int64, device=device) for name, n in sizes.items()}
    trainer.network.eval()
    with torch.inference_mode():
        for x, y in make_batches(split.to(device), 1024, False, 0, device, pad=False).epoch(0):
            outputs = trainer.forward(x)
            for name, n in sizes.items():
                task = heads[name].task
                predicted = predicted_labels(task, outputs[name]).long().reshape(-1)
                truth = y[name].reshape(-1) if task == "classification" else (y[name] > 0.5).long().reshape(-1)
                matrices[name] += torch.bincount(truth * n + predicted, minlength=n * n)
    return {
        name: (matrices[name].view(n, n).cpu().tolist(), heads[name].class_names or []) for name, n in sizes.items()
    }

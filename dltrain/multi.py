"""Data and model for a model with named inputs or several outputs (`build.prepare` hands them here).

The same phases as a plain model: the input plan, the data (named arrays), the
model; the plain path is not touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
    wiring = graph.plan(loaded)
    inputs = list(wiring.inputs)
    raw = read_named(config.data, inputs, outputs.names)
    leading = _leading_input(wiring)
    plan = plan_inputs(loaded, tuple(raw.x_train[leading].shape[1:]))
    if plan.adapts:
        defaults = "; ".join(note.split(" applied by default")[0] for note in plan.notes)
        needed = f" (the leading backbone would need {defaults})" if defaults else ""
        raise loaded.error(
            ("data",),
            "with named inputs no input is adapted inside the model: channels, resize and normalize: imagenet "
            f"are for one image input{needed}. Give each input in the shape the model takes, and set "
            "data.normalize to scale, standardize or none",
        )
    data = assemble_named(
        raw, loaded.config.data, outputs.tasks, config.fit.validation_split, preprocessing, config.fit.validation_mode
    )
    data.plan = with_raw_shape(plan, data.preprocessing.inputs[leading].raw_shape)  # type: ignore[attr-defined]
    built = build_multi_model(loaded, data.input_shapes, {n: h.width for n, h in data.heads.items()})
    built.notes += plan.notes + transfer.plan_notes(built.network)
    return data, built


def _leading_input(wiring: graph.Plan) -> str:
    """The model input the first layer takes (a leading backbone's image), else the first input."""
    source = wiring.nodes[0].sources[0] if wiring.nodes and wiring.nodes[0].sources else None
    return source if isinstance(source, str) else next(iter(wiring.inputs))


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
            outputs = trainer.trained(x)
            for name, n in sizes.items():
                task = heads[name].task
                predicted = predicted_labels(task, outputs[name]).long().reshape(-1)
                truth = y[name].reshape(-1) if task == "classification" else (y[name] > 0.5).long().reshape(-1)
                matrices[name] += torch.bincount(truth * n + predicted, minlength=n * n)
    return {
        name: (matrices[name].view(n, n).cpu().tolist(), heads[name].class_names or []) for name, n in sizes.items()
    }


def restore_multi(saved: Any) -> Any:
    """The trained `MultiNetwork` from a checkpoint alone (no data read): shapes from its stored
    preprocessing, output widths from its stored outputs."""
    import torch

    from .config import from_resolved
    from .data.named import NamedPreprocessing
    from .nn.backbones import weights_from_checkpoint

    loaded = from_resolved(saved.config, None, source=saved.path.name if saved.path else "checkpoint")
    prep = NamedPreprocessing.from_state(saved.preprocessing)
    shapes = {name: tuple(p.apply(torch.zeros(1, *(p.raw_shape or []))).shape[1:]) for name, p in prep.inputs.items()}
    widths = {head["name"]: int(head["width"]) for head in saved.outputs or []}
    with weights_from_checkpoint():
        built = build_multi_model(loaded, shapes, widths)
    built.network.load_state_dict(saved.weights_for(built.network))
    return built.network.eval(), prep


def csv_columns(data: dict[str, Any], names: list[str]) -> dict[str, list[str]] | None:
    """Each input's CSV columns when the model was trained from a `csv` source (`data.inputs`, or `features`
    for one input), else None: the same reading as the `csv` named source's."""
    if data.get("source") != "csv":
        return None
    columns = data.get("inputs") or ({names[0]: data["features"]} if len(names) == 1 and data.get("features") else {})
    return {name: list(columns[name]) for name in names} if all(name in columns for name in names) else None


def _what_to_give(names: list[str], columns: dict[str, list[str]] | None) -> str:
    npz = f".npz files holding one array per input (named {names[0]} or x_{names[0]})"
    if columns is None:
        return npz
    by_input = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in columns.items())
    return f".csv files with a header row and the training columns ({by_input}), or {npz}"


def read_named_input(path: Any, saved: Any, names: list[str], prep: Any) -> dict[str, np.ndarray]:
    """One file for a model with named inputs, as float32 arrays by input name: an .npz (one array per
    input), or a .csv with the training columns (encoded as in training: categories one-hot) when the
    model was trained from a `csv` source."""
    from pathlib import Path

    from .data.tabular import read_named_features
    from .errors import DataError

    path = Path(path)
    columns = csv_columns(saved.config.get("data", {}), names)
    tables = {name: prep.inputs[name].table for name in names}
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv") or (suffix == ".csv" and (columns is None or not all(tables.values()))):
        trained = "" if suffix != ".csv" else " was not trained from CSV columns, so it"
        raise DataError(
            f"'{path}': a model with named inputs ({', '.join(names)}){trained} reads {_what_to_give(names, columns)}"
        )
    if not path.is_file():
        raise DataError(f"no file at '{path}'")
    return read_named_features(path, tables) if suffix == ".csv" else read_named_npz(path, names)


def read_named_npz(path: Any, names: list[str]) -> dict[str, np.ndarray]:
    """An .npz of one array per model input, named `<input>`, `x_<input>` or `x_test_<input>` (exactly one of them)."""
    import zipfile

    from .data.base import check_values
    from .data.npz import read_array
    from .errors import DataError

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"'{path}' is not a readable .npz file ({exc})") from None
    with archive:
        found = {}
        for name in names:
            keys = [k for k in (name, f"x_{name}", f"x_test_{name}") if k in archive]
            if not keys:
                raise DataError(
                    f"'{path}' has no array for input '{name}' (looked for {name}, x_{name}, x_test_{name}); "
                    f"it holds {', '.join(archive.keys())}"
                )
            if len(keys) > 1:  # which one is meant would be a guess
                raise DataError(f"'{path}' holds {' and '.join(keys)}, each an array for input '{name}': keep one")
            array = read_array(archive, keys[0], path)
            check_values(array, f"the values of input '{name}' in '{path}'")
            found[name] = np.asarray(array, dtype=np.float32)
    return found


def check_named_inputs(arrays: dict[str, np.ndarray], prep: Any, where: str) -> None:
    """Each input's samples in the shape the model was trained on, and as many samples of every input."""
    from .errors import DataError

    for name, array in arrays.items():
        shape = tuple(prep.inputs[name].raw_shape or [])
        if tuple(array.shape[1:]) != shape:
            raise DataError(
                f"{where}: input '{name}' holds {list(array.shape)}; expected [N, {', '.join(map(str, shape))}]"
            )
    counts = {name: len(array) for name, array in arrays.items()}
    if len(set(counts.values())) > 1:
        raise DataError(
            f"{where}: the inputs hold different numbers of samples ({counts}); give each input the same rows"
        )
    if not any(counts.values()):
        raise DataError(f"{where} holds no samples; give at least one row")


def named_scores(
    network: Any, prep: Any, arrays: dict[str, np.ndarray], heads: list[dict[str, Any]], device: Any
) -> dict[str, np.ndarray]:
    """Raw arrays by input name → each output's probabilities (or values) by name: `predict` and `serve` both run this."""
    import torch

    from .data.named import Named
    from .predict import scores

    x = prep.apply(Named({name: torch.from_numpy(a) for name, a in arrays.items()})).to(device)
    with torch.inference_mode():
        outputs = network(x)
    return {head["name"]: scores(outputs[head["name"]].cpu(), head["task"]) for head in heads}


def predict_named(
    saved: Any, inputs: list[Any], top_k: int, device: Any, texts: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per sample: `prediction` by output, and each output's own row (top classes, probability)."""
    from .errors import DataError
    from .inference import describe_named

    if texts:
        names = list(saved.config.get("model", {}).get("inputs") or {})
        raise DataError(
            f"--text: a model with named inputs ({', '.join(names)}) reads "
            f"{_what_to_give(names, csv_columns(saved.config.get('data', {}), names))}"
        )
    network, prep = restore_multi(saved)
    network.to(device)
    heads = saved.outputs or []
    rows: list[dict[str, Any]] = []
    for path in inputs:
        arrays = read_named_input(path, saved, network.input_names, prep)
        check_named_inputs(arrays, prep, f"'{path}'")
        described = describe_named(named_scores(network, prep, arrays, heads, device), heads, top_k)
        rows += [{"input": i, **row} for i, row in enumerate(described)]
    return rows

"""`dltrain export`: a checkpoint to ONNX, `torch.export` (.pt2) or TorchScript, checked.

The exported graph is the whole inference path of the network: the on-device input
adapter (channels, resize, ImageNet statistics), the layers, and the final softmax or
sigmoid that training split off, so an exported classifier outputs probabilities, as
the Keras model it was written as would. What happens before the network (flatten,
scale, standardize, fitted on the training data) is written beside the export as JSON,
so the file can be used without dltrain.

Nothing is left behind unless it was checked: the export is written to a temporary
name, reloaded the way a user would load it (onnxruntime, `torch.export.load`,
`torch.jit.load`), run on a real batch of the stored test data, compared with the
PyTorch model, and only then renamed into place.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import operator
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ._files import atomic_path, check_output_file, write_text_atomic
from ._registry import Registry
from ._version import __version__
from .api import restore
from .data import DataBundle, Preprocessing
from .data.batches import first_inputs
from .errors import RunError, UserError
from .nn.activations import activation
from .nn.model import Network
from .schema.inputs import InputPlan

# Exported and PyTorch outputs must agree elementwise: |export - torch| <= ATOL + RTOL * |torch|
# (numpy.allclose). Measured differences are ~1e-7 (float32 rounding in a different kernel
# order); anything near the bound is a real divergence, not noise.
ATOL = 1e-5
RTOL = 1e-3
CHECK_SAMPLES = 64  # the real batch the export is checked on: the first test samples

INPUT_NAME = "input"
OUTPUT_NAME = "output"
EXPORT_EXTRA = "pip install 'dltrain[export]'"

Samples = tuple[torch.Tensor, ...]  # the module's positional inputs
Run = Callable[[Samples], list[np.ndarray]]  # the loaded file: inputs in, one array per output


@dataclass(frozen=True)
class Signature:
    """The file's inputs and outputs by name, in the module's positional order (one of each for a plain model)."""

    inputs: tuple[str, ...] = (INPUT_NAME,)
    outputs: tuple[str, ...] = (OUTPUT_NAME,)


@dataclass(frozen=True)
class Exporter:
    """One format: how to write a module to a file, and how a user loads and runs that file."""

    suffix: str
    write: Callable[[nn.Module, Samples, Signature, Path], None]
    load: Callable[[Path, Signature], Run]
    requires: tuple[str, ...] = ()


EXPORTERS: Registry[Exporter] = Registry("export format", case_sensitive=False)


def _batch_dims(samples: Samples) -> tuple[dict[int, Any], ...]:
    """Axis 0 of every input is one symbolic batch size (the inputs' batches must agree)."""
    batch = torch.export.Dim("batch")
    return tuple({0: batch} for _ in samples)


def _arrays(outputs: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]) -> list[np.ndarray]:
    """A module's output (one tensor, or a tuple for several outputs) as one array per output."""
    tensors = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    return [t.detach().numpy() for t in tensors]


def _write_onnx(module: nn.Module, samples: Samples, signature: Signature, path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its passes on stdout
        torch.onnx.export(
            module,
            samples,
            str(path),
            input_names=list(signature.inputs),
            output_names=list(signature.outputs),
            dynamo=True,
            dynamic_shapes=_batch_dims(samples),
            external_data=False,
            verbose=False,
        )


def _load_onnx(path: Path, signature: Signature) -> Run:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda xs: session.run(None, {name: x.numpy() for name, x in zip(signature.inputs, xs)})


def _write_bytes(path: Path, save: Callable[[io.BytesIO], None]) -> None:
    """Serialize in memory, then write with Python's file: on a full disk torch's own file writer
    aborts the process from a C++ destructor; this way it is an OSError."""
    buffer = io.BytesIO()
    save(buffer)
    path.write_bytes(buffer.getvalue())


def _write_pt2(module: nn.Module, samples: Samples, signature: Signature, path: Path) -> None:
    program = torch.export.export(module, samples, dynamic_shapes=_batch_dims(samples))
    _write_bytes(path, lambda buffer: torch.export.save(program, buffer))


def _load_pt2(path: Path, signature: Signature) -> Run:
    module = torch.export.load(str(path)).module()
    return lambda xs: _arrays(module(*xs))


def _write_torchscript(module: nn.Module, samples: Samples, signature: Signature, path: Path) -> None:
    scripted = torch.jit.script(module)  # scripted, not traced: no control flow is frozen
    _write_bytes(path, lambda buffer: torch.jit.save(scripted, buffer))


def _load_torchscript(path: Path, signature: Signature) -> Run:
    module = torch.jit.load(str(path))
    return lambda xs: _arrays(module(*xs))


EXPORTERS.register("onnx", summary="ONNX (torch.onnx.export, dynamo exporter); checked with onnxruntime")(
    Exporter(".onnx", _write_onnx, _load_onnx, ("onnx", "onnxscript", "onnxruntime"))
)
EXPORTERS.register("pt2", summary="torch.export ExportedProgram; load with torch.export.load(path).module()")(
    Exporter(".pt2", _write_pt2, _load_pt2)
)
EXPORTERS.register("torchscript", summary="TorchScript (torch.jit.script); load with torch.jit.load(path)")(
    Exporter(".torchscript", _write_torchscript, _load_torchscript)
)


class Deployable(nn.Module):
    """The network with its split-off output activation put back: inputs → what `predict` gives."""

    def __init__(self, network: Network, out_shape: int | tuple[int, ...]) -> None:
        super().__init__()
        self.network = network
        shape = (out_shape,) if isinstance(out_shape, int) else tuple(out_shape)  # [classes], or an LM's [T, V]
        self.activation = activation(network.output_activation or "linear", shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.network(x))


@dataclass
class ExportResult:
    """What `export` wrote, and how closely the file matched the PyTorch model."""

    path: Path
    metadata_path: Path
    max_abs_diff: float
    samples: int


def export(checkpoint: str | Path, fmt: str, output: str | Path | None = None) -> ExportResult:
    """Export a checkpoint's model to `fmt`, checked against PyTorch, with its preprocessing JSON."""
    exporter = _exporter(fmt)
    name = EXPORTERS.canonical(fmt) or fmt
    _require(name, exporter)
    trainer = restore(checkpoint, device="cpu")
    assert trainer.restored is not None and trainer.restored.path is not None
    source = trainer.restored.path
    target = Path(output) if output is not None else source.with_suffix(exporter.suffix)
    if target.resolve() == source.resolve():
        raise UserError(f"-o '{target}' is the checkpoint itself; choose another file name")
    check_output_file(target, "-o")
    if trainer.heads is not None:  # named inputs or several outputs: the files take and give the config's names
        return export_named(trainer, name, target)
    out_shape = trainer.built.summary[-1].output_shape  # [classes], or a language model's [T, vocabulary]
    module = Deployable(trainer.network, out_shape).eval()
    sample = check_batch(trainer.data)
    diff = write_checked(name, module, module, sample, target)
    meta = target.with_name(target.name + ".json")
    info = metadata(trainer.data, trainer.network, name, target, out_shape, diff, sample)
    tokenizer = trainer.data.preprocessing.tokenizer
    if tokenizer is not None:  # text: the export reads ids; this file makes them from text, as training did
        write_text_atomic(target.with_name(info["tokenizer"]), tokenizer)
    write_text_atomic(meta, json.dumps(info, indent=2) + "\n")
    return ExportResult(target, meta, diff, len(sample))


def write_checked(
    fmt: str,
    module: nn.Module,
    reference: nn.Module,
    sample: torch.Tensor | Samples,
    target: Path,
    signature: Signature = Signature(),
) -> float:
    """Export `module` to `target` only if the file reproduces `reference` on `sample`.

    `sample` is the module's input, or a tuple of its positional inputs (named by
    `signature`). The file is written under a temporary name and renamed once checked,
    so a failure (an unsupported layer, a mismatch) leaves nothing behind, and an
    earlier export at `target` stays as it was. Returns the largest absolute difference seen.
    """
    exporter = _exporter(fmt)
    samples = (sample,) if isinstance(sample, torch.Tensor) else tuple(sample)
    with atomic_path(target, suffix=exporter.suffix) as tmp:
        _write(fmt, exporter, module, samples, signature, tmp)
        diff = check_export(exporter, tmp, reference, samples, signature)
    return diff


def _exporter(fmt: str) -> Exporter:
    try:
        return EXPORTERS.get(fmt).obj
    except KeyError as exc:
        raise UserError(f"--format: {exc.args[0]}") from None


def _require(name: str, exporter: Exporter) -> None:
    """Import the optional packages the format needs, or say how to install them."""
    missing = []
    for package in exporter.requires:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise UserError(
            f"--format {name} needs {', '.join(missing)} (not installed here): {EXPORT_EXTRA} "
            f"(or pip install {' '.join(missing)})"
        )


def check_batch(data: DataBundle) -> torch.Tensor:
    """A real batch, already preprocessed: the first test samples (at least two rows); token ids stay int64.

    Two rows at least, because an exporter that sees a batch of one may fix the batch
    size to one; the check then also runs one row alone, which proves it was not fixed.
    """
    split = data.test or data.val or data.train
    x = first_inputs(split, CHECK_SAMPLES)
    return at_least_two(x if data.vocab_size is not None else x.float())


def at_least_two(x: torch.Tensor) -> torch.Tensor:
    """A batch of one row, doubled: an exporter that sees a batch of one may fix the batch size to one."""
    return x if len(x) > 1 else torch.cat([x, x])


def _write(
    name: str, exporter: Exporter, module: nn.Module, samples: Samples, signature: Signature, path: Path
) -> None:
    """Run the exporter; any failure of the third-party exporter becomes one clear RunError."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecation chatter; the check below is what counts
            exporter.write(module, samples, signature, path)
    except OSError:
        raise  # the machine (a full disk), not the model
    except Exception as exc:  # exporters raise many unrelated types for an unsupported layer
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        others = ", ".join(n for n in EXPORTERS.names() if n != name)
        raise RunError(
            f"this model cannot be exported to {name}: {type(exc).__name__}: {reason}. Try another format ({others})."
        ) from None


def check_export(
    exporter: Exporter, path: Path, module: nn.Module, samples: Samples, signature: Signature = Signature()
) -> float:
    """Reload the file as a user would and compare each output with `module`'s on `samples` (and on one row).

    Returns the largest absolute difference; raises RunError beyond ATOL + RTOL * |expected|.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = exporter.load(path, signature)
        worst = 0.0
        for rows in (len(samples[0]), 1):
            batch = tuple(s[:rows] for s in samples)
            with torch.inference_mode():
                expected = _arrays(module(*batch))
            got = [np.asarray(g) for g in run(batch)]
            for name, want, have in zip(signature.outputs, expected, got, strict=True):
                where = f"'{name}' " if len(signature.outputs) > 1 else ""
                if have.shape != want.shape:
                    raise RunError(
                        f"the exported model's output {where}has shape {list(have.shape)} for a batch of "
                        f"{rows}; PyTorch's has {list(want.shape)}"
                    )
                worst = max(worst, float(np.abs(have - want).max()))
                if not np.allclose(have, want, rtol=RTOL, atol=ATOL):
                    raise RunError(
                        f"the exported model's output {where}does not match the PyTorch model on {rows} test "
                        f"sample(s): largest difference {worst:.3g}, beyond the tolerance "
                        f"|export - torch| <= {ATOL:g} + {RTOL:g} * |torch|; nothing was written"
                    )
    return worst


def metadata(
    data: DataBundle,
    network: Network,
    fmt: str,
    target: Path,
    out_shape: tuple[int, ...],
    diff: float,
    sample: torch.Tensor,
) -> dict[str, Any]:
    """The JSON beside the export: how to turn raw inputs into its input, and read its output."""
    kind = OUTPUT_KINDS[data.task][bool(network.output_activation)]
    adapter = network.adapter.describe() if network.adapter is not None else None
    dtype = str(sample.dtype).removeprefix("torch.")
    text = {"tokenizer": target.name + ".tokenizer.json"} if data.preprocessing.tokenizer is not None else {}
    return {
        "format": fmt,
        "file": target.name,
        "dltrain_version": __version__,
        "task": data.task,
        "input": {"name": INPUT_NAME, "shape": [None, *data.input_shape], "dtype": dtype},
        **text,
        "preprocessing": preprocessing_steps(data.preprocessing),
        "raw_input": raw_input(data.preprocessing, data.plan),
        "input_plan": data.plan.state() if data.plan is not None else None,
        "in_graph": adapter,
        "output": {
            "name": OUTPUT_NAME,
            "shape": [None, *out_shape],
            "kind": kind,
            "activation": network.output_activation,
        },
        "class_names": data.class_names,
        "check": {"samples": len(sample), "max_abs_diff": diff, "atol": ATOL, "rtol": RTOL},
    }


def raw_input(prep: Preprocessing, plan: InputPlan | None = None) -> dict[str, Any]:
    """What one raw sample is before the steps: its shape, value range, table encoding, and how the
    input plan reads it (for `serve`)."""
    kind = plan.kind if plan is not None else None
    return {"shape": prep.raw_shape, "value_range": prep.value_range, "table": prep.table, "kind": kind}


# What the output holds, by task and by whether the final activation is in the graph.
OUTPUT_KINDS = {
    "classification": {True: "probabilities", False: "logits"},
    "binary": {True: "probability", False: "logit"},  # of the positive class (class_names[1])
    "regression": {True: "values", False: "values"},
}


def table_steps(table: dict[str, Any] | None) -> list[dict[str, Any]]:
    """How raw CSV rows become the numbers the model reads: one-hot columns, or time windows."""
    if not table:
        return []
    if "categories" in table:
        return [
            {
                "op": "one_hot",
                "features": table["features"],
                "categories": table["categories"],
                "what": "one column per feature in this order; a categorical feature becomes one 0/1 column "
                "per category, in this order (an unseen category: all zeros)",
            }
        ]
    if "columns" in table:
        return [
            {
                "op": "window",
                "columns": table["columns"],
                "window": table["window"],
                "what": "x[i] = rows[i : i + window] of these columns, shape [window, len(columns)]",
            }
        ]
    return []


def text_steps(tokenizer: str | None) -> list[dict[str, Any]]:
    """How text becomes the model's int64 ids: the tokenizer file beside the export."""
    if tokenizer is None:
        return []
    what = (
        "ids = tokenizers.Tokenizer.from_file(<the file named by 'tokenizer'>).encode(text, add_special_tokens=False).ids; "
        "the file truncates and pads (id 0) to the input's length for a classifier; for a language model "
        "feed the last input-length ids"
    )
    return [{"op": "tokenize", "what": what}]


def preprocessing_steps(prep: Preprocessing) -> list[dict[str, Any]]:
    """`Preprocessing.apply` as data, in its order: what to do to raw inputs before the model."""
    steps: list[dict[str, Any]] = table_steps(prep.table) + text_steps(prep.tokenizer)
    if prep.channels_last:
        steps.append({"op": "transpose", "axes": [0, 3, 1, 2], "what": "x = x.transpose(0, 3, 1, 2)"})
    if prep.flatten:
        steps.append({"op": "flatten", "what": "x = x.reshape(len(x), -1)"})
    if prep.scale is not None:
        steps.append({"op": "divide", "value": prep.scale, "what": "x = x / value"})
    if prep.mean is not None and prep.std is not None:
        steps.append(
            {
                "op": "standardize",
                "mean": prep.mean.tolist(),
                "std": prep.std.tolist(),
                "what": "x = (x - mean) / std (mean and std broadcast over a sample)",
            }
        )
    return steps


# --- named inputs and several outputs --------------------------------------------------
#
# The file's inputs are the model's inputs by name, its outputs the output layers by name,
# each with its final activation put back (what `predict` reports). The module is the same
# for every format, so each format has one write path and one check: the one above.


def named_deployable(network: Any, widths: dict[str, int]) -> torch.fx.GraphModule:
    """A `MultiNetwork` as a module taking its inputs positionally by name (`forward(self, image, extra)`)
    and returning a tuple of its outputs, activations put back.

    Generated with torch.fx rather than written with `*inputs`: TorchScript cannot script
    a variable number of arguments, and real argument names make the TorchScript and
    `torch.export` files callable as `module(image, extra)`.
    """
    root = nn.Module()
    root.layers = network.layers  # the graph's `forward(self, <inputs...>)`: one tensor, or a tuple of outputs
    root.activations = nn.ModuleList(
        activation(network.activations[name] or "linear", (widths[name],)) for name in network.output_names
    )
    graph = torch.fx.Graph()
    out = graph.call_module("layers", tuple(graph.placeholder(name) for name in network.input_names))
    count = len(network.output_names)
    outs = [out] if count == 1 else [graph.call_function(operator.getitem, (out, i)) for i in range(count)]
    graph.output(tuple(graph.call_module(f"activations.{i}", (o,)) for i, o in enumerate(outs)))
    return torch.fx.GraphModule(root, graph, class_name="NamedDeployable")


def export_named(trainer: Any, fmt: str, target: Path) -> ExportResult:
    """Write and check `trainer`'s named model in `fmt` at `target`, with its JSON."""
    network, data = trainer.network, trainer.data
    module = named_deployable(network, {name: head.width for name, head in data.heads.items()}).eval()
    split = data.test or data.val or data.train
    x = split.x[:CHECK_SAMPLES]  # the first test samples, preprocessed, as for one input (`check_batch`)
    samples = tuple(at_least_two(x[name].float()) for name in network.input_names)
    signature = Signature(tuple(network.input_names), tuple(network.output_names))
    diff = write_checked(fmt, module, module, samples, target, signature)
    meta = target.with_name(target.name + ".json")
    info = _named_metadata(trainer, fmt, target, diff, len(samples[0]))
    write_text_atomic(meta, json.dumps(info, indent=2) + "\n")
    return ExportResult(target, meta, diff, len(samples[0]))


def _named_metadata(trainer: Any, fmt: str, target: Path, diff: float, samples: int) -> dict[str, Any]:
    """The JSON beside a named export: each input (in the file's positional order) with its preprocessing,
    each output (in the order the file returns them) with its kind and classes."""
    data, network = trainer.data, trainer.network
    prep = data.preprocessing.inputs
    return {
        "format": fmt,
        "file": target.name,
        "dltrain_version": __version__,
        "inputs": [
            {
                "name": name,
                "shape": [None, *data.input_shapes[name]],
                "dtype": "float32",
                "preprocessing": preprocessing_steps(prep[name]),
                "raw_input": raw_input(prep[name]),
            }
            for name in network.input_names
        ],
        "input_plan": data.plan.state() if data.plan is not None else None,
        "outputs": [
            {
                "name": name,
                "shape": [None, head.width],
                "task": head.task,
                "kind": OUTPUT_KINDS[head.task][True],
                "activation": network.activations[name],
                "class_names": head.class_names,
            }
            for name, head in data.heads.items()
        ],
        "check": {"samples": samples, "max_abs_diff": diff, "atol": ATOL, "rtol": RTOL},
    }

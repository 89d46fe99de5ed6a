"""`dltrain export` of a model with named inputs or several outputs: ONNX with the config's names.

The file's inputs are the model's inputs by name, its outputs the output layers by
name, each with its final activation put back (what `predict` reports). As for one
input, the file is written under a temporary name and kept only when onnxruntime
reproduces the PyTorch model on real test samples (and on one row alone). The JSON
beside it gives each input's preprocessing and each output's kind and classes.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._files import atomic_path, write_text_atomic
from ._version import __version__
from .errors import RunError, UserError
from .export import ATOL, CHECK_SAMPLES, OUTPUT_KINDS, RTOL, ExportResult, preprocessing_steps, raw_input
from .nn.activations import activation


class NamedDeployable(nn.Module):
    """A `MultiNetwork` as positional inputs → a tuple of outputs, activations put back (what ONNX exports)."""

    def __init__(self, network: Any, widths: dict[str, int]) -> None:
        super().__init__()
        self.network = network
        self.activations = nn.ModuleList(
            activation(network.activations[name] or "linear", (widths[name],)) for name in network.output_names
        )

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.network(dict(zip(self.network.input_names, inputs)))
        return tuple(act(outputs[name]) for act, name in zip(self.activations, self.network.output_names))


def export_named(trainer: Any, fmt: str, target: Path) -> ExportResult:
    """Write and check the ONNX file of `trainer`'s named model at `target`, with its JSON."""
    if fmt != "onnx":
        raise UserError(f"--format {fmt}: a model with named inputs or several outputs exports to onnx only for now")
    network, data = trainer.network, trainer.data
    widths = {name: head.width for name, head in data.heads.items()}
    module = NamedDeployable(network, widths).eval()
    split = data.test or data.val or data.train
    x = split.x[: max(CHECK_SAMPLES, 2)]
    samples = [x[name].float() for name in network.input_names]
    with atomic_path(target, suffix=".onnx") as tmp:
        _write(module, samples, network.input_names, network.output_names, tmp)
        diff = _check(tmp, module, samples, network.input_names)
    meta = target.with_name(target.name + ".json")
    write_text_atomic(meta, json.dumps(_metadata(trainer, target, diff, len(samples[0])), indent=2) + "\n")
    return ExportResult(target, meta, diff, len(samples[0]))


def _write(module: nn.Module, samples: list[torch.Tensor], inputs: list[str], outputs: list[str], path: Path) -> None:
    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(samples),
                str(path),
                input_names=inputs,
                output_names=outputs,
                dynamo=True,
                dynamic_shapes=(tuple({0: batch} for _ in samples),),  # `*inputs`: one tuple of inputs
                external_data=False,
                verbose=False,
            )
    except OSError:
        raise
    except Exception as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise RunError(f"this model cannot be exported to onnx: {type(exc).__name__}: {reason}") from None


def _check(path: Path, module: nn.Module, samples: list[torch.Tensor], inputs: list[str]) -> float:
    """Every output of the file against PyTorch's, on the batch and on one row alone."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for rows in (len(samples[0]), 1):
        batch = [s[:rows] for s in samples]
        with torch.inference_mode():
            expected = [e.numpy() for e in module(*batch)]
        got = session.run(None, {name: s.numpy() for name, s in zip(inputs, batch)})
        for want, have in zip(expected, got):
            if have.shape != want.shape:
                raise RunError(
                    f"the exported model's output has shape {list(have.shape)}; PyTorch's {list(want.shape)}"
                )
            worst = max(worst, float(np.abs(have - want).max()))
            if not np.allclose(have, want, rtol=RTOL, atol=ATOL):
                raise RunError(
                    f"the exported model does not match the PyTorch model on {rows} test sample(s): largest "
                    f"difference {worst:.3g}, beyond |export - torch| <= {ATOL:g} + {RTOL:g} * |torch|; nothing was written"
                )
    return worst


def _metadata(trainer: Any, target: Path, diff: float, samples: int) -> dict[str, Any]:
    data, network = trainer.data, trainer.network
    prep = data.preprocessing.inputs
    return {
        "format": "onnx",
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

"""What `serve` can serve: a checkpoint (run by PyTorch) or an `.onnx` export (run by onnxruntime).

Both give the same thing: an `InputSpec` to read instances with, and `scores`, raw
samples in, probabilities (or regression values) out, which `inference.describe_rows`
turns into the rows `predict --json` prints. The ONNX model imports neither torch nor
any dltrain module that does, so a serving install needs only the `serve` extra.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..errors import UserError
from ..inference import STEPS, apply_steps, describe_named, describe_rows, probabilities
from .spec import InputSpec, NamedSpec

SERVE_EXTRA = "pip install 'dltrain[serve]'"


@dataclass
class ServedModel:
    """A loaded model, whatever runs it: how to read its inputs, run it, and describe it."""

    name: str
    runtime: str
    task: str
    class_names: list[str]
    spec: InputSpec | NamedSpec
    width: int  # outputs per sample: classes, or regression targets (named outputs: all of theirs, side by side)
    scores: Callable[[np.ndarray], np.ndarray]  # (N, *spec.shape) float32 → (N, width)
    info: dict[str, Any] = field(default_factory=dict)  # preprocessing, versions: for /metadata
    heads: list[dict[str, Any]] | None = None  # named outputs, in order: each `{name, task, class_names, width}`

    def metadata(self) -> dict[str, Any]:
        """What `/metadata` answers."""
        outputs = {"outputs": self.heads} if self.heads is not None else {}
        return {
            "model": self.name,
            "runtime": self.runtime,
            "task": self.task,
            "class_names": self.class_names,
            "input": {**self.spec.info(), "schema": self.spec.schema()},
            "outputs_per_sample": self.width,
            **outputs,
            **self.info,
            "dltrain_version": __version__,
            "process": {"pid": os.getpid(), "torch_imported": "torch" in sys.modules},
        }

    def rows(self, scores: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """The rows `predict --json` prints for these scores: one group per output for a named model."""
        if self.heads is None:
            return describe_rows(scores, self.task, self.class_names, top_k)
        return describe_named(split_outputs(scores, self.heads), self.heads, top_k)

    def groups(self) -> list[dict[str, Any]]:
        """Each output's task, classes and width (one for a plain model)."""
        return self.heads or [{"name": None, "task": self.task, "class_names": self.class_names, "width": self.width}]


# --- named inputs and outputs: the batcher moves one packed row per sample (`NamedSpec`), and one
# row of every output's scores side by side, split again by `split_outputs`.


def join_outputs(values: dict[str, np.ndarray], heads: list[dict[str, Any]]) -> np.ndarray:
    """Each output's (N, width) scores side by side, in the heads' order: (N, sum of widths)."""
    return np.concatenate([values[head["name"]].reshape(len(values[head["name"]]), -1) for head in heads], axis=1)


def split_outputs(scores: np.ndarray, heads: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """`join_outputs` undone: each output's scores by name."""
    edges = np.cumsum([int(head["width"]) for head in heads])[:-1]
    return {head["name"]: part for head, part in zip(heads, np.split(scores, edges, axis=1))}


def _heads(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored outputs (a checkpoint's, or an export's JSON) as `{name, task, class_names, width}`."""
    return [
        {
            "name": o["name"],
            "task": o["task"],
            "class_names": o.get("class_names") or [],
            "width": int(o["width"] if "width" in o else o["shape"][-1]),
        }
        for o in outputs
    ]


def _named_model(
    name: str,
    runtime: str,
    spec: NamedSpec,
    heads: list[dict[str, Any]],
    scores: Callable[[np.ndarray], np.ndarray],
    info: dict[str, Any],
) -> ServedModel:
    task = heads[0]["task"] if len(heads) == 1 else "multi-output"  # each output's own task: `heads`
    width = sum(head["width"] for head in heads)
    return ServedModel(name, runtime, task, [], spec, width, scores, info, heads)


def load_named_checkpoint(saved: Any, device: Any) -> ServedModel:
    """A checkpoint of a model with named inputs or several outputs, through `predict`'s path (`named_scores`)."""
    from ..export import preprocessing_steps
    from ..multi import named_scores, restore_multi

    network, prep = restore_multi(saved)
    network.to(device)
    heads = _heads(saved.outputs or [])
    spec = NamedSpec({name: InputSpec.from_state(prep.inputs[name].state()) for name in network.input_names})

    def scores(x: np.ndarray) -> np.ndarray:
        return join_outputs(named_scores(network, prep, spec.unpack(x), heads, device), heads)

    info = {
        "format": "checkpoint",
        "device": str(device),
        "preprocessing": {name: preprocessing_steps(p) for name, p in prep.inputs.items()},
        "trained_with": saved.version,
        "epoch": saved.epoch,
    }
    return _named_model(saved.path.name if saved.path else "checkpoint", "torch", spec, heads, scores, info)


def load_checkpoint(path: Path, device: str) -> ServedModel:
    """A checkpoint (or run directory) through the same path as `dltrain predict`."""
    import torch

    from ..api import restore_network
    from ..data import Preprocessing
    from ..export import preprocessing_steps
    from ..predict import predict_scores
    from ..train import checkpoint
    from ..train.distributed import resolve_device

    saved = checkpoint.load(path)
    target = resolve_device(device)
    if saved.outputs is not None:  # named inputs or several outputs
        return load_named_checkpoint(saved, target)
    network = restore_network(saved).to(target)
    prep = Preprocessing.from_state(saved.preprocessing, saved.tokenizer)
    task = saved.task

    def scores(x: np.ndarray) -> np.ndarray:
        return predict_scores(network, prep, torch.from_numpy(x), task, target)

    info = {
        "format": "checkpoint",
        "device": str(target),
        "preprocessing": preprocessing_steps(prep),
        "trained_with": saved.version,
        "epoch": saved.epoch,
    }
    name = saved.path.name if saved.path else Path(path).name
    return ServedModel(
        name,
        "torch",
        task,
        saved.class_names or [],
        InputSpec.from_state(prep.state(), prep.tokenizer, saved.plan().kind),
        int(saved.target_width),
        scores,
        info,
    )


def load_onnx(path: Path, device: str) -> ServedModel:
    """An `.onnx` export with the JSON `dltrain export` wrote beside it; onnxruntime only, no torch."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"serving an .onnx file needs onnxruntime (not installed here): {SERVE_EXTRA}") from None
    meta_path = path.with_name(path.name + ".json")
    if not meta_path.is_file():
        raise UserError(
            f"no '{meta_path.name}' beside '{path}': serve needs the preprocessing JSON that "
            f"`dltrain export` writes next to the .onnx file; export the checkpoint again"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if "outputs" in meta:  # named inputs or several outputs
            return load_named_onnx(path, meta, _session(onnxruntime, path, device))
        raw, steps, output = meta["raw_input"], meta["preprocessing"], meta["output"]
        task, input_name = meta["task"], meta["input"]["name"]
        dtype = np.dtype(meta["input"].get("dtype", "float32"))
        tokenizer = (path.with_name(meta["tokenizer"]).read_text(encoding="utf-8")) if meta.get("tokenizer") else None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise UserError(
            f"'{meta_path}' (or the tokenizer beside it) is not the JSON `dltrain export` writes ({type(exc).__name__}: {exc}); "
            f"export the checkpoint again"
        ) from None
    _check_steps(meta_path, steps)
    session = _session(onnxruntime, path, device)
    logits = output.get("kind") == "logits"

    def scores(x: np.ndarray) -> np.ndarray:
        out = session.run(None, {input_name: np.ascontiguousarray(apply_steps(x, steps), dtype=dtype)})[0]
        return probabilities(out, task) if logits else out

    width = int(output["shape"][-1])
    return ServedModel(
        path.name,
        "onnxruntime",
        task,
        meta.get("class_names") or [],
        InputSpec.from_state(raw, tokenizer),
        width,
        scores,
        _onnx_info(session, steps, meta),
    )


def _check_steps(meta_path: Path, steps: list[dict[str, Any]]) -> None:
    unknown = [s.get("op") for s in steps if s.get("op") not in STEPS]
    if unknown:
        raise UserError(f"'{meta_path}': unknown preprocessing step(s) {unknown}; expected {', '.join(STEPS)}")


def _session(onnxruntime: Any, path: Path, device: str) -> Any:
    """An onnxruntime session for the file, on the GPU when asked for and available."""
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    )
    try:
        options = onnxruntime.SessionOptions()
        # No busy-waiting between runs: the spinning pool threads would take the cores from the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own unrelated types for a corrupt file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"'{path}' is not a loadable ONNX model ({reason}); export the checkpoint again") from None


def _onnx_info(session: Any, steps: Any, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "onnx",
        "device": session.get_providers()[0],
        "preprocessing": steps,
        "trained_with": meta.get("dltrain_version"),
        "export_check": meta.get("check"),
    }


def load_named_onnx(path: Path, meta: dict[str, Any], session: Any) -> ServedModel:
    """A named export: each input's steps run on its own array; the file's outputs hold the activations already."""
    inputs = {i["name"]: i for i in meta["inputs"]}
    steps = {name: i["preprocessing"] for name, i in inputs.items()}
    for name in inputs:
        _check_steps(path.with_name(path.name + ".json"), steps[name])
    spec = NamedSpec({name: InputSpec.from_state(i["raw_input"]) for name, i in inputs.items()})
    heads = _heads(meta["outputs"])

    def scores(x: np.ndarray) -> np.ndarray:
        arrays = spec.unpack(x)
        feed = {
            name: np.ascontiguousarray(apply_steps(arrays[name], steps[name]), dtype=np.dtype(inputs[name]["dtype"]))
            for name in inputs
        }
        return join_outputs(dict(zip([h["name"] for h in heads], session.run(None, feed))), heads)

    return _named_model(path.name, "onnxruntime", spec, heads, scores, _onnx_info(session, steps, meta))


LOADERS: dict[str, Callable[[Path, str], ServedModel]] = {".onnx": load_onnx}


def load_model(path: str | Path, device: str = "auto") -> ServedModel:
    """The model at `path` (an .onnx export, else a checkpoint or run directory), self-checked."""
    path = Path(path)
    if path.suffix.lower() in (".pt2", ".torchscript"):
        raise UserError(
            f"'{path}': serve takes a checkpoint (.pt or a run directory) or an .onnx export; "
            f"serve the checkpoint it was exported from instead"
        )
    model = LOADERS.get(path.suffix.lower(), load_checkpoint)(path, device)
    self_check(model)
    return model


def self_check(model: ServedModel) -> None:
    """Run two zero samples end to end: outputs of the promised width, finite, and a name per class."""
    try:
        out = np.asarray(model.scores(np.zeros((2, *model.spec.shape), dtype=model.spec.dtype)))
    except Exception as exc:  # whatever the runtime raises, the model cannot serve
        raise UserError(
            f"'{model.name}' failed its self-check: running it on a zero input raised "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    problem = None
    unnamed = [g for g in model.groups() if g["task"] == "classification" and len(g["class_names"]) != g["width"]]
    if out.shape != (2, model.width):
        problem = f"it outputs shape {list(out.shape)} for 2 samples; expected [2, {model.width}]"
    elif not np.isfinite(out).all():
        problem = "its outputs on a zero input are not finite (NaN or infinity in the weights?)"
    elif unnamed:
        where = f" (output '{unnamed[0]['name']}')" if unnamed[0]["name"] else ""
        problem = (
            f"it outputs {unnamed[0]['width']} class scores{where} but names {len(unnamed[0]['class_names'])} classes"
        )
    if problem:
        raise UserError(f"'{model.name}' failed its self-check: {problem}")

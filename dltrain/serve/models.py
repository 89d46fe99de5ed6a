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
from ..inference import STEPS, apply_steps, probabilities
from .spec import InputSpec

SERVE_EXTRA = "pip install 'dltrain[serve]'"


@dataclass
class ServedModel:
    """A loaded model, whatever runs it: how to read its inputs, run it, and describe it."""

    name: str
    runtime: str
    task: str
    class_names: list[str]
    spec: InputSpec
    width: int  # outputs per sample: classes, or regression targets
    scores: Callable[[np.ndarray], np.ndarray]  # (N, *spec.shape) float32 → (N, width)
    info: dict[str, Any] = field(default_factory=dict)  # preprocessing, versions: for /metadata

    def metadata(self) -> dict[str, Any]:
        """What `/metadata` answers."""
        return {
            "model": self.name,
            "runtime": self.runtime,
            "task": self.task,
            "class_names": self.class_names,
            "input": {**self.spec.info(), "schema": self.spec.schema()},
            "outputs_per_sample": self.width,
            **self.info,
            "dltrain_version": __version__,
            "process": {"pid": os.getpid(), "torch_imported": "torch" in sys.modules},
        }


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
        raw, steps, output = meta["raw_input"], meta["preprocessing"], meta["output"]
        task, input_name = meta["task"], meta["input"]["name"]
        dtype = np.dtype(meta["input"].get("dtype", "float32"))
        tokenizer = (path.with_name(meta["tokenizer"]).read_text(encoding="utf-8")) if meta.get("tokenizer") else None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise UserError(
            f"'{meta_path}' (or the tokenizer beside it) is not the JSON `dltrain export` writes ({type(exc).__name__}: {exc}); "
            f"export the checkpoint again"
        ) from None
    unknown = [s.get("op") for s in steps if s.get("op") not in STEPS]
    if unknown:
        raise UserError(f"'{meta_path}': unknown preprocessing step(s) {unknown}; expected {', '.join(STEPS)}")
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    )
    try:
        options = onnxruntime.SessionOptions()
        # No busy-waiting between runs: the spinning pool threads would take the cores from the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own unrelated types for a corrupt file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"'{path}' is not a loadable ONNX model ({reason}); export the checkpoint again") from None
    logits = output.get("kind") == "logits"

    def scores(x: np.ndarray) -> np.ndarray:
        out = session.run(None, {input_name: np.ascontiguousarray(apply_steps(x, steps), dtype=dtype)})[0]
        return probabilities(out, task) if logits else out

    info = {
        "format": "onnx",
        "device": session.get_providers()[0],
        "preprocessing": steps,
        "trained_with": meta.get("dltrain_version"),
        "export_check": meta.get("check"),
    }
    width = int(output["shape"][-1])
    return ServedModel(
        path.name,
        "onnxruntime",
        task,
        meta.get("class_names") or [],
        InputSpec.from_state(raw, tokenizer),
        width,
        scores,
        info,
    )


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
    if out.shape != (2, model.width):
        problem = f"it outputs shape {list(out.shape)} for 2 samples; expected [2, {model.width}]"
    elif not np.isfinite(out).all():
        problem = "its outputs on a zero input are not finite (NaN or infinity in the weights?)"
    elif model.task == "classification" and len(model.class_names) != model.width:
        problem = f"it outputs {model.width} class scores but names {len(model.class_names)} classes"
    if problem:
        raise UserError(f"'{model.name}' failed its self-check: {problem}")

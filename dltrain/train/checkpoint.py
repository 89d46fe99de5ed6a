"""Checkpoints: one typed structure, written atomically, loaded without unpickling code.

A checkpoint holds everything needed to evaluate, predict or resume without the YAML:
the resolved config, model/optimizer/scheduler state, epoch, RNG states, class names,
preprocessing statistics and history. `Checkpoint` is the only place that knows the
file's keys; everything else reads its fields.

Integrity: the model's tensors carry a SHA-256 (`checksum`), verified on every load, so
a flipped bit or a file edited after training is refused, never evaluated. Weights of
frozen backbone blocks never change during a run, so they are written once per run to
`frozen-<digest>.pt` beside the checkpoint and referenced by name and checksum; each
epoch's last.pt/best.pt then holds only what trains (a VGG16 head instead of 56 MB).
Checkpoints written before checksums (format 1) load with structure checks only, and
their nested `layers.N.0.weight` names are read as today's flat `layers.N.weight`.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import random
import threading
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import torch

from .._files import atomic_path
from .._version import __version__
from ..errors import CheckpointError
from ..schema import custom
from ..schema.inputs import InputPlan

FORMAT = "dltrain-checkpoint-2"
FORMAT_1 = "dltrain-checkpoint-1"  # before checksums and flat layer names: still loaded
FROZEN_PREFIX = "frozen-"

State = dict[str, torch.Tensor]


@dataclass
class FrozenRef:
    """Where the run's frozen weights are: a file beside the checkpoint, and its tensors' checksum."""

    file: str
    checksum: str


@dataclass
class Checkpoint:
    """One checkpoint: what rebuilds the model (first group) and what resumes training (second)."""

    config: dict[str, Any]
    model: State  # without the keys `frozen` holds
    task: str
    input_shape: list[int]
    num_classes: int | None
    target_width: int
    class_names: list[str] | None
    output_activation: str | None
    preprocessing: dict[str, Any]
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    monitor: str = "val_loss"
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    partial: dict[str, Any] | None = None
    stream: dict[str, Any] | None = None  # the position inside a streamed epoch (data.streaming.StreamPosition)
    rng: dict[str, Any] | None = None
    frozen: FrozenRef | None = None
    config_sources: list[dict[str, str]] = field(default_factory=list)  # the files the config was composed from
    checksum: str | None = None  # of `model` (format 1 files have none)
    version: str = __version__
    imports: list[dict[str, Any]] | None = None  # what the config names by import path: path, package, version
    tokenizer: str | None = None  # text models: the fitted tokenizer's JSON text (Hugging Face `tokenizers`)
    input_plan: dict[str, Any] | None = None  # `InputPlan.state()`: how samples become model inputs
    outputs: list[dict[str, Any]] | None = None  # several outputs: each one's name, task, classes, width
    path: Path | None = None  # where it was loaded from (not stored)
    legacy_names: bool = False  # format 1: nested layer names (not stored)

    def __post_init__(self) -> None:
        if self.imports is None:  # a new checkpoint (or one written before imports were stored)
            self.imports = custom.requirements(self.config)

    def to_plain(self) -> dict[str, Any]:
        """The file's content: plain data and tensors only (what `weights_only=True` loads)."""
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("path", "legacy_names")}
        plain["frozen"] = asdict(self.frozen) if self.frozen else None
        return {"format": FORMAT, **plain}

    @classmethod
    def from_plain(cls, data: dict[str, Any], file: Path) -> "Checkpoint":
        """Check every key's presence and type, then build; a damaged file names what is wrong."""
        fmt = data.get("format")
        missing = [name for name, (_, required) in _SCHEMA.items() if required and name not in data]
        if missing:
            raise _damaged(file, f"missing keys: {', '.join(missing)}")
        values: dict[str, Any] = {}
        for name, (check, _) in _SCHEMA.items():
            if name in data and not check(data[name]):
                raise _damaged(file, f"'{name}' holds {_describe(data[name])}, which is not what dltrain writes there")
            if name in data:
                values[name] = data[name]
        if fmt == FORMAT_1:
            values.pop("checksum", None)
        if values.get("frozen") is not None:
            values["frozen"] = FrozenRef(**values["frozen"])
        return cls(**values, path=file, legacy_names=fmt == FORMAT_1)

    def plan(self) -> InputPlan:
        """How this model's inputs are read (a checkpoint written before plans were stored: from its config)."""
        if self.input_plan is not None:
            return InputPlan.from_state(self.input_plan)
        return InputPlan.from_config(self.config, self.preprocessing.get("raw_shape"))

    def full_state(self) -> State:
        """The whole model state: this file's tensors over the frozen file's (verified)."""
        return {**load_frozen(self), **self.model} if self.frozen is not None else dict(self.model)

    def weights_for(self, network: torch.nn.Module, hint: str = "") -> State:
        """The full model state for `network`, checked to fit it."""
        state = self.full_state()
        expected = network.state_dict()
        if self.legacy_names:
            state = {_flat_name(k, expected): v for k, v in state.items()}
        check_weights(state, expected, self.path or Path("checkpoint"), hint)
        return state


# --- what a valid file holds ------------------------------------------------------------


def _is_state(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_shape(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(v) and v > 0 for v in value)


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_source(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_SCHEMA: dict[str, tuple[Callable[[Any], bool], bool]] = {  # key: (check, required)
    "config": (lambda v: isinstance(v, dict) and "model" in v and "data" in v, True),
    "model": (_is_state, True),
    "task": (lambda v: v in ("classification", "binary", "regression"), True),
    "input_shape": (_is_shape, True),
    "num_classes": (_optional(lambda v: _is_int(v) and v > 1), True),
    "target_width": (lambda v: _is_int(v) and v > 0, True),
    "class_names": (_optional(_is_names), True),
    "output_activation": (_optional(lambda v: isinstance(v, str)), True),
    "preprocessing": (lambda v: isinstance(v, dict), True),
    "epoch": (lambda v: _is_int(v) and v >= 0, True),
    "history": (lambda v: isinstance(v, list), True),
    "best": (_optional(_is_number), False),
    "monitor": (lambda v: isinstance(v, str), False),
    "optimizer": (_optional(lambda v: isinstance(v, dict)), False),
    "scheduler": (_optional(lambda v: isinstance(v, dict)), False),
    "scaler": (_optional(lambda v: isinstance(v, dict)), False),
    "callbacks": (lambda v: isinstance(v, list), False),
    "partial": (_optional(lambda v: isinstance(v, dict)), False),
    "stream": (_optional(lambda v: isinstance(v, dict) and {"step", "samples", "rows", "pieces"} <= v.keys()), False),
    "rng": (_optional(lambda v: isinstance(v, dict)), False),
    "frozen": (_optional(lambda v: isinstance(v, dict) and set(v) == {"file", "checksum"}), False),
    "config_sources": (lambda v: isinstance(v, list) and all(_is_source(s) for s in v), False),
    "checksum": (_optional(lambda v: isinstance(v, str)), False),
    "version": (lambda v: isinstance(v, str), False),
    "tokenizer": (_optional(lambda v: isinstance(v, str)), False),
    "imports": (
        _optional(
            lambda v: isinstance(v, list) and all(isinstance(i, dict) and isinstance(i.get("path"), str) for i in v)
        ),
        False,
    ),
    "input_plan": (_optional(lambda v: isinstance(v, dict) and isinstance(v.get("source"), str)), False),
    "outputs": (_optional(lambda v: isinstance(v, list) and all(isinstance(o, dict) for o in v)), False),
}


def _describe(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict) else f"a dict with keys {sorted(map(str, value))[:5]}"
    return text if len(text) <= 80 else text[:77] + "..."


def _damaged(file: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"'{file}' is a damaged checkpoint: {what}. Use another checkpoint of the run, or train again"
    )


def _flat_name(key: str, expected: State) -> str:
    """Format 1 nested an activation or padding with its layer: `layers.3.0.weight` is now `layers.3.weight`."""
    parts = key.split(".")
    if key in expected or len(parts) < 4 or parts[0] != "layers":
        return key
    flat = f"layers.{parts[1]}.{parts[-1]}"
    return flat if flat in expected and all(p.isdigit() or p == "inner" for p in parts[2:-1]) else key


# --- integrity ------------------------------------------------------------------------


def checksum(state: State) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (~1 GB/s)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        flat = tensor.cpu().contiguous().reshape(-1)
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def verify(saved: Checkpoint) -> None:
    """Refuse a checkpoint whose tensors changed after dltrain wrote them."""
    file = saved.path or Path("checkpoint")
    if saved.checksum is not None and checksum(saved.model) != saved.checksum:
        raise _damaged(
            file,
            "its weights do not match the checksum stored with them (the file was modified "
            "or corrupted after it was written)",
        )


def check_weights(state: State, expected: State, file: Path, hint: str = "") -> None:
    """The stored weights must fit the model built from the checkpoint's config, and be finite."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing weights: {_names(missing)}")
    if unexpected:
        problems.append(f"weights the model does not have: {_names(unexpected)}")
    wrong = [
        f"{k} is {list(state[k].shape)} in the file, {list(v.shape)} in the model"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        problems.append(f"shapes differ: {_names(wrong)}")
    if problems:
        raise CheckpointError(f"'{file}' does not fit the model its config builds: {'; '.join(problems)}{hint}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise _damaged(file, f"non-finite (NaN or infinite) weights in {_names(bad)}")


def check_consistent(saved: Checkpoint) -> None:
    """What a checkpoint says about its inputs and classes must agree with itself.

    Its input shape must be what its stored preprocessing makes of a raw sample, and
    class names, class count and output width must agree (a short list would mislabel
    predictions).
    """
    file = saved.path or Path("checkpoint")
    raw, flatten = saved.preprocessing.get("raw_shape"), saved.preprocessing.get("flatten")
    if raw and not saved.preprocessing.get("table"):
        if saved.preprocessing.get("channels_last") and len(raw) == 3:  # [H, W, C] transposed to [C, H, W]
            raw_first = [raw[2], raw[0], raw[1]]
        else:
            raw_first = list(raw)
        made = [math.prod(raw)] if flatten else raw_first
        if made != saved.input_shape:
            raise _damaged(
                file,
                f"it says the model takes inputs of {saved.input_shape}, but its preprocessing "
                f"makes {made} of a raw sample {list(raw)}",
            )
    count, names, width = saved.num_classes, saved.class_names, saved.target_width
    if saved.task == "binary":  # one output, the probability of the second of two classes
        count = 2
        if width != 1:
            raise _damaged(file, f"a binary classifier has one output, not {width}")
    elif saved.task != "classification":
        return
    if count is None or width not in (count, 1) or (width == 1 and count != 2):
        raise _damaged(file, f"{count} classes do not fit an output {width} wide")
    if names is not None and len(names) != count:
        raise _damaged(file, f"it names {len(names)} classes ({_names(names)}) for a model of {count} classes")


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:3])
    return f"{shown} and {len(items) - 3} more" if len(items) > 3 else shown


# --- frozen weights, once per run ------------------------------------------------------


def split_frozen(state: State, frozen_keys: set[str]) -> tuple[State, State]:
    """(what changes, what cannot change) of a model state."""
    moving = {k: v for k, v in state.items() if k not in frozen_keys}
    fixed = {k: v for k, v in state.items() if k in frozen_keys}
    return moving, fixed


def write_frozen(folder: Path, fixed: State) -> FrozenRef:
    """Write the frozen weights beside the run's checkpoints (once: the name is their checksum)."""
    digest = checksum(fixed)
    ref = FrozenRef(f"{FROZEN_PREFIX}{digest[:16]}.pt", digest)
    target = folder / ref.file
    if not target.is_file():
        _write(
            target,
            {
                "format": FORMAT,
                "frozen_of": "dltrain",
                "model": {k: v.detach().cpu() for k, v in fixed.items()},
                "checksum": digest,
            },
        )
    return ref


def load_frozen(saved: Checkpoint) -> State:
    """The frozen weights a checkpoint references, verified against the checksum it stored."""
    assert saved.frozen is not None and saved.path is not None
    file = saved.path.parent / saved.frozen.file
    if not file.is_file():
        raise CheckpointError(
            f"'{saved.path}' keeps its frozen backbone weights in '{saved.frozen.file}' beside it, "
            f"which is missing; copy it with the checkpoint (it is in the run directory)"
        )
    data = _read(file)
    state = data.get("model") if isinstance(data, dict) else None
    if not _is_state(state) or checksum(state) != saved.frozen.checksum:  # type: ignore[arg-type]
        raise _damaged(file, "its weights do not match the checksum the checkpoint references")
    return state  # type: ignore[return-value]


# --- files ----------------------------------------------------------------------------


def _write(path: Path, plain: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(plain, handle)
        handle.flush()
        os.fsync(handle.fileno())


def save(path: Path, saved: Checkpoint) -> None:
    """Write `saved` to `path` atomically (a kill at any moment leaves the old file intact), with its checksum."""
    saved.checksum = checksum(saved.model)
    _write(path, saved.to_plain())


def detached(value: Any) -> Any:
    """A copy of plain data whose tensors training can no longer change (cloned; CPU tensors stay put)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: detached(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(detached(v) for v in value)
    return value


WRITE_BUDGET = 0.01  # the share of training time that writing checkpoints may take (CPU seconds per second)


class Writer:
    """Writes checkpoints on a background thread, so an epoch does not wait for serialization and fsync.

    Each job is a `Checkpoint` already detached from training (see `detached`), written
    atomically as `save` writes it. A second file of the same snapshot (best.pt after
    last.pt) is a hard link to the first, not a second serialization. A newer snapshot
    for a file replaces one still waiting. `flush` waits for every write (those held
    back too); a write that failed re-raises its error there (or at the next `submit`).

    Writes are paced so they cost at most `WRITE_BUDGET` of the run's CPU time: after
    writes that took C CPU-seconds, the next is `due` once the process has used
    C / WRITE_BUDGET more (CPU time, not wall time, so a machine busy with other work
    does not make writes more frequent). The writer thread needs the GIL to pickle, so
    its CPU time is taken from the training thread even with a core to spare. Epochs
    longer than that (anything but toy runs: a 0.5 MiB checkpoint takes ~3 ms) are each
    written; shorter ones every few epochs: a job submitted while a write is not due is
    held back until the next due write or `flush`, where a newer snapshot of the same
    file replaces it. So a kill -9 loses less than 100 writes' worth of CPU time, and every other
    way a fit ends (finished, stopped, Ctrl-C, SIGTERM, a NaN loss, a failed step)
    writes the last finished epoch, as `RunDir.close` flushes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the thread ends (`_thread` None again)
        self._pending: dict[Path, Checkpoint] = {}
        self._thread: threading.Thread | None = None  # set while a thread writes, by it cleared as it ends
        self._error: BaseException | None = None
        self._last: tuple[Checkpoint, Path] | None = None  # the last snapshot written, and where
        self._next = 0.0  # time.process_time() from which the next write is due
        self.spent = 0.0  # CPU seconds the writes took so far
        self.written = 0  # files serialized so far (not counting hard links)

    def due(self) -> bool:
        """Whether a write started now stays within the budget (always while one is under way: it joins it)."""
        return self._thread is not None or time.process_time() >= self._next

    def submit(self, path: Path, saved: Checkpoint, now: bool = False) -> None:
        """Write `saved` to `path` in the background: when `due` (or `now`), else with the next write that is."""
        self._raise()
        with self._lock:
            self._pending.pop(path, None)
            self._pending[path] = saved  # dicts keep order: files are written in the order asked
            if now or self.due():
                self._start()

    def _start(self) -> None:
        if self._pending and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="dltrain-checkpoint", daemon=False)
            self._thread.start()

    def flush(self, held: bool = True) -> None:
        """Write everything submitted (with `held`, the jobs held back for the budget too) and wait for it."""
        with self._lock:
            if held:
                self._start()
            # not Thread.join: a Ctrl-C inside it can leave the thread marked finished while it still
            # writes (CPython 3.11), and a second wait would then return before the file is complete
            while self._thread is not None:
                self._idle.wait()
        self._raise()

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _work(self) -> None:
        cpu = time.thread_time()
        while True:
            with self._lock:
                if not self._pending:
                    self._thread = None
                    cpu = time.thread_time() - cpu
                    self.spent += cpu
                    self._next = time.process_time() + cpu / WRITE_BUDGET
                    self._idle.notify_all()
                    return
                path = next(iter(self._pending))
                saved = self._pending.pop(path)
            try:
                self._write_one(path, saved)
            except BaseException as exc:  # re-raised in the training thread
                with self._lock:
                    self._error = exc
                    self._pending.clear()
                    self._thread = None
                    self._idle.notify_all()
                return

    def _write_one(self, path: Path, saved: Checkpoint) -> None:
        last = self._last
        if last is not None and last[0] is saved and last[1].is_file():
            try:
                with atomic_path(path) as tmp:
                    os.link(last[1], tmp)
                return
            except OSError:  # no hard links on this filesystem: write it out
                pass
        save(path, saved)
        self.written += 1
        self._last = (saved, path)


def resolve(path: str | Path, default_name: str = "best.pt") -> Path:
    """A checkpoint file, or `default_name` inside a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at '{path}'. Give a .pt file or a run directory (it holds last.pt and best.pt)."
        )
    return path


def _export_kind(file: Path) -> str | None:
    """'TorchScript' or 'torch.export (pt2)' when the zip archive is one of those exports, else None."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(name.endswith("/constants.pkl") for name in names):
        return "TorchScript"
    if any("serialized_exported_program" in name or name.endswith("archive_format") for name in names):
        return "pt2 (torch.export)"
    return None


def is_checkpoint(path: Path) -> bool:
    """Whether `path` holds a dltrain checkpoint (a file no other command may write over)."""
    try:
        data = _read(path)
    except CheckpointError:
        return False
    return isinstance(data, dict) and data.get("format") in (FORMAT, FORMAT_1)


def _read(file: Path) -> Any:
    """torch.load with `weights_only=True`; anything unreadable is one clear error."""
    if not zipfile.is_zipfile(file):  # torch.save's format is a zip archive
        raise CheckpointError(
            f"'{file}' is not a readable checkpoint (not a complete file written by torch.save: "
            f"truncated or another format); give the last.pt or best.pt of a run"
        )
    export = _export_kind(file)
    if export is not None:
        raise CheckpointError(
            f"'{file}' is a {export} export, not a checkpoint; give the last.pt or best.pt of the run it was "
            f"exported from"
        )
    try:
        with warnings.catch_warnings():  # torch's warnings about the file would be a second message
            warnings.simplefilter("ignore")
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"'{file}' needs more than plain data to load, and dltrain never unpickles arbitrary objects "
            f"({str(exc).splitlines()[0]}). Only checkpoints written by dltrain can be loaded."
        ) from None
    except Exception as exc:  # a damaged archive raises many types (RuntimeError, EOFError, zipfile, ValueError)
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise CheckpointError(f"'{file}' is not a readable checkpoint ({reason})") from None


def load(path: str | Path, default_name: str = "best.pt") -> Checkpoint:
    """Load a dltrain checkpoint with `weights_only=True`, its structure and checksum verified."""
    file = resolve(path, default_name)
    data = _read(file)
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, FORMAT_1):
        raise CheckpointError(f"'{file}' is not a dltrain checkpoint (written by `dltrain fit`)")
    saved = Checkpoint.from_plain(data, file)
    absent = custom.missing(saved.imports or [])
    if absent is not None:
        raise CheckpointError(f"cannot load '{file}': {absent}")
    verify(saved)
    return saved


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, as plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = cast(
        "tuple[str, np.ndarray, int, int, float]", np.random.get_state()
    )
    return {
        "python": [py_version, torch.from_numpy(np.array(py_state, dtype=np.int64)), py_gauss],  # pickles fast
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put every RNG back where `rng_state` found it."""
    version, py_state, gauss = state["python"]  # the state as a tensor, or (older files) a list
    random.setstate((version, tuple(py_state.tolist() if isinstance(py_state, torch.Tensor) else py_state), gauss))
    kind, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])

"""A whole config file (`data:`, `model:`, `compile:`, `fit:`), assembled from every registry.

This is the one module that gathers the registries; `dltrain.config` loads YAML into it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from .._files import check_run_name
from .._params import Params, tagged_union
from . import (
    backbones,  # noqa: F401  (describes the VGG16 and Backbone layers)
    custom,
)
from .callbacks import CALLBACKS
from .data import SOURCES
from .layers import LAYERS, LayerParams
from .losses import LOSSES
from .metrics import METRICS
from .optim import OPTIMIZERS
from .schedules import SCHEDULES
from .tune import TuneConfig

if TYPE_CHECKING:  # unions built from the registries at run time; statically, any of their params models
    LayerConfig: TypeAlias = Any
    DataConfig: TypeAlias = Any
    OptimizerConfig: TypeAlias = Any
    LossConfig: TypeAlias = Any
    MetricConfig: TypeAlias = Any
    ScheduleConfig: TypeAlias = Any
    CallbackConfig: TypeAlias = Any
else:
    # a name no registry knows may be an import path (`pkg.mod:Class`), validated by its own model
    LayerConfig = tagged_union(LAYERS, custom=custom.validator("layer", LayerParams))
    DataConfig = tagged_union(SOURCES, tag="source", allow_string=True)
    OptimizerConfig = tagged_union(OPTIMIZERS, allow_string=True)
    LossConfig = tagged_union(LOSSES, allow_string=True, custom=custom.validator("loss", Params))
    MetricConfig = tagged_union(METRICS, allow_string=True, custom=custom.validator("metric", Params))
    ScheduleConfig = tagged_union(SCHEDULES, allow_string=True)
    CallbackConfig = tagged_union(CALLBACKS, allow_string=True, custom=custom.validator("callback", Params))

# How fit.validation_split chooses its samples (dltrain.data.splits draws them).
ValidationMode = Literal["auto", "random", "last"]

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ModelConfig(Params):
    """`model:` the input shape (optional) and the layers, in order."""

    input_shape: Annotated[list[PositiveInt], Field(min_length=1)] | None = Field(
        None, description="The shape of one sample, channels first ([C, H, W], [T, F]); default: the data's."
    )
    inputs: dict[str, Annotated[list[PositiveInt], Field(min_length=1)]] | None = Field(
        None, description="Named model inputs and their shapes; one input named `input` when omitted."
    )
    layers: Annotated[
        list[LayerConfig],
        Field(
            min_length=1,
            description="The layers, in order; `type` is the Keras class name (see `dltrain list-models`) "
            "or an import path (`pkg.module:Class`).",
        ),
    ]
    outputs: str | list[str] | None = Field(
        None, description="The layers whose outputs the model returns; default: the last layer."
    )


class CompileConfig(Params):
    """`compile:` optimizer, loss and metrics, as Keras's `model.compile`."""

    optimizer: OptimizerConfig = Field(
        "adam", validate_default=True, description="The optimizer: a name (adam) or {type: adam, lr: 0.001, ...}."
    )
    loss: LossConfig = Field(
        description="The loss: a name (categorical_crossentropy) or {type: ..., ...}; "
        "it sets the task (classification, binary, regression)."
    )
    metrics: list[MetricConfig] = Field(
        [], description="Metrics reported each epoch (and with val_ for validation data)."
    )
    lr_schedule: ScheduleConfig | None = Field(None, description="How the lr changes during training.")


class CheckpointEvery(Params):
    """`fit.checkpoint_every`: write last.pt inside an epoch too, every `steps` steps or `minutes` minutes.

    A preempted or killed run then loses at most that much work; `--resume` continues
    mid-epoch to the same result as a run never stopped.
    """

    steps: PositiveInt | None = Field(None, description="Training steps between checkpoints.")
    minutes: Annotated[float, Field(gt=0.0)] | None = Field(None, description="Minutes between checkpoints.")

    @model_validator(mode="after")
    def _one_of(self) -> CheckpointEvery:
        if (self.steps is None) == (self.minutes is None):
            raise ValueError("give one of steps: N or minutes: M, e.g. checkpoint_every: {minutes: 30}")
        return self


class FitConfig(Params):
    """`fit:` how to train, as Keras's `model.fit`."""

    epochs: PositiveInt = Field(10, description="Passes over the training data.")
    batch_size: PositiveInt = Field(32, description="Samples per step (per process under DDP).")
    validation_split: Annotated[
        float,
        Field(ge=0.0, lt=1.0, description="Fraction of the training data held out for validation (Keras's semantics)."),
    ] = 0.0
    validation_mode: ValidationMode = Field(
        "auto",
        description="How validation_split chooses its samples: random (a fixed seeded draw, stratified by class for "
        "classification), last (Keras: the last fraction of the training data), or auto (random, except last "
        "for time series).",
    )
    shuffle: bool = Field(True, description="Shuffle the training data every epoch.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps (auto: a GPU when there is one).")
    strategy: Literal["auto", "ddp", "single"] = Field(
        "auto", description="auto: DDP when torchrun starts several processes; single: one process."
    )
    precision: Literal["32", "bf16-mixed", "16-mixed"] = Field(
        "32", description="32-bit, or mixed precision with bfloat16 or float16 (loss scaling)."
    )
    compile_model: bool = Field(False, description="Compile the model with torch.compile.")
    cuda_graphs: Literal["auto"] | bool = Field(
        "auto",
        description="Capture forward, backward and optimizer step into a CUDA graph and replay it for every "
        "full batch (the last, short batch runs eagerly). auto: on a CUDA device, for in-memory data without "
        "data.augment, one process, no compile_model, precision 32 or bf16-mixed and adam, adamw or sgd; "
        "off otherwise (always off on the CPU). true: wherever it can run (refused where it cannot).",
    )
    deterministic: bool = Field(False, description="Use deterministic algorithms only (slower, reproducible).")
    gradient_clip: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="Clip the norm of all gradients together to this."
    )
    accumulate_grad_batches: PositiveInt = Field(
        1, description="Steps whose gradients add up before each optimizer update."
    )
    num_workers: NonNegativeInt | None = Field(
        None, description="DataLoader workers for sources that decode files (image_folder)."
    )
    num_threads: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="CPU threads for training on the CPU (torch.set_num_threads). auto: one thread for a small step "
        "(batch x (parameters + layer outputs) under 10 million), where more threads only wait on each other and, "
        "on a busy machine, on other processes; PyTorch's default otherwise, or OMP_NUM_THREADS when it is set.",
    )
    callbacks: list[CallbackConfig] = Field(
        [], description="Hooks at the end of each epoch (EarlyStopping, ModelCheckpoint, ...)."
    )
    checkpoint_every: CheckpointEvery | None = Field(
        None, description="Also write last.pt inside an epoch: {steps: N} or {minutes: M} (preemption)."
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps; received {value!r}")
        return value


class Config(Params):
    """A whole dltrain config file."""

    name: str | None = Field(None, description="The run's name (runs/<name>/...); default: the file's stem.")
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = Field(  # what torch, NumPy and Python all accept
        None,
        description="Random seed; same seed and device give the same result (default: drawn, and stored with the run).",
    )
    data: DataConfig = Field(description="Where the data comes from (`source`) and how it is prepared.")
    model: ModelConfig = Field(description="The network: input shape and layers.")
    compile: CompileConfig = Field(description="Optimizer, loss and metrics.")
    fit: FitConfig = Field(FitConfig(), description="How to train.")
    tune: TuneConfig | None = Field(
        None, exclude=True, description="`dltrain tune` only: the metric, pruner and search space; runs never store it."
    )

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str | None) -> str | None:
        if value is not None:
            check_run_name(value)  # runs/<name>/ must stay inside runs/
        return value


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, for editors: every key with its description."""
    schema = Config.model_json_schema(by_alias=False)
    schema["title"] = "dltrain config"
    for model in schema["$defs"].values():  # the `type`/`source` tag: its one value names the entry
        for tag in ("type", "source"):
            prop = model.get("properties", {}).get(tag)
            if prop is not None and "const" in prop:
                prop.setdefault("description", f"{prop['const']}: {model.get('description', '')}".strip())
    return schema

"""The input plan as data: how a run's samples become model inputs, stored with the model.

`dltrain.data.plan.plan_inputs` decides it once per run (source → preprocessing →
adapter → model input); the checkpoint and every export's JSON carry it, so `predict`
and `serve` read new samples the way the source read them by looking it up, not by
guessing from the shape of stored statistics. Torch-free: the ONNX server reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# How a new sample is read, by source: rows of a table, windows of a series; every other
# source gives arrays (an image when a sample is [C, H, W] with 1 or 3 channels).
SOURCE_KINDS: dict[str, str] = {"csv": "table", "timeseries_csv": "series"}
KINDS = ("table", "series", "image", "array")


def sample_kind(source: str, shape: list[int] | tuple[int, ...]) -> str:
    """How one raw sample of `source` is read: its source's kind, else an image or an array by its shape."""
    if source in SOURCE_KINDS:
        return SOURCE_KINDS[source]
    return "image" if len(shape) == 3 and shape[0] in (1, 3) else "array"


@dataclass(frozen=True)
class InputPlan:
    """One run's input pipeline: where samples come from, what is done to them, what the model takes.

    `raw_shape` is one sample as the source reads it; `channels`, `resize` and
    `imagenet` are the in-model adapter (None/False: none); `normalize` the statistics
    step; `augment` whether training batches are randomly transformed (which rules
    out computing a frozen backbone's outputs once); `notes` the defaults the plan
    applied, told to the user by `check` and `fit`.
    """

    source: str
    kind: str
    raw_shape: list[int] = field(default_factory=list)
    normalize: str | None = None
    channels: int | None = None
    resize: list[int] | None = None  # (height, width)
    imagenet: bool = False
    augment: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def adapts(self) -> bool:
        """Whether an adapter step (channels, resize, ImageNet statistics) runs inside the model."""
        return self.channels is not None or self.resize is not None or self.imagenet

    def state(self) -> dict[str, Any]:
        """Plain data (for the checkpoint and the export JSON)."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "InputPlan":
        known = {k: v for k, v in state.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def from_config(cls, config: dict[str, Any], raw_shape: list[int] | None) -> "InputPlan":
        """The plan of a checkpoint written before plans were stored: its resolved config holds every default."""
        data = config.get("data", {})
        resize = data.get("resize")
        if isinstance(resize, int):
            resize = [resize, resize]
        augment = data.get("augment") or {}
        return cls(
            source=str(data.get("source", "")),
            kind=sample_kind(str(data.get("source", "")), raw_shape or []),
            raw_shape=list(raw_shape or []),
            normalize=data.get("normalize"),
            channels=data.get("channels"),
            resize=resize,
            imagenet=data.get("normalize") == "imagenet",
            augment=any(augment.get(k) for k in ("random_flip", "random_crop", "random_rotation")),
        )

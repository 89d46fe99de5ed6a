"""Pretrained feature extractors as layers (`VGG16`, `Backbone(name)`), described without torchvision.

What `list-models` and the config checks need of each torchvision model (its summary,
smallest input and ImageNet file) is written here, so naming a backbone is checked
without importing torchvision; a test compares these facts with torchvision's own.
The bodies are built in `dltrain.nn.backbones`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from .._registry import Registry
from .layers import LayerParams, layer

BACKBONES: Registry[Any] = Registry("backbone", case_sensitive=False, implemented_in=("dltrain.nn.backbones",))


@dataclass(frozen=True)
class BackboneFacts:
    """What is known of a torchvision model before it is built."""

    what: str
    min_size: tuple[int, int]
    file_name: str  # torchvision's ImageNet weights file (in $TORCH_HOME/hub/checkpoints)


FACTS = {
    "vgg16": BackboneFacts("VGG16 conv blocks (5 blocks), 512 channels out", (32, 32), "vgg16-397923af.pth"),
    "vgg19": BackboneFacts("VGG19 conv blocks (5 blocks), 512 channels out", (32, 32), "vgg19-dcbb9e9d.pth"),
    "resnet18": BackboneFacts(
        "ResNet-18 without pooling and fc (5 blocks: stem, layer1-4)", (1, 1), "resnet18-f37072fd.pth"
    ),
    "resnet50": BackboneFacts(
        "ResNet-50 without pooling and fc (5 blocks: stem, layer1-4)", (1, 1), "resnet50-11ad3fa6.pth"
    ),
    "mobilenet_v3_small": BackboneFacts(
        "MobileNetV3-Small features (13 blocks), 576 channels out", (1, 1), "mobilenet_v3_small-047dcff4.pth"
    ),
    "efficientnet_b0": BackboneFacts(
        "EfficientNet-B0 features (9 blocks), 1280 channels out", (1, 1), "efficientnet_b0_rwightman-7f5810bc.pth"
    ),
}
for _name, _facts in FACTS.items():
    BACKBONES.describe(
        _name,
        summary=f"{_facts.what}; min input {_facts.min_size[0]}x{_facts.min_size[1]}; ImageNet file {_facts.file_name}",
    )


class PretrainedParams(LayerParams):
    """Keys of every backbone layer."""

    weights: str | None = Field(
        "imagenet",
        description="imagenet (torchvision's file, downloaded once), the PATH "
        "of a .pth/.safetensors state dict, or null for random initial weights.",
    )
    trainable_layers: PositiveInt | None = Field(
        None,
        description="Train only the last N blocks (with trainable: true), or unfreeze N blocks at unfreeze_at_epoch.",
    )
    unfreeze_at_epoch: PositiveInt | None = Field(
        None, description="Epoch at which the last trainable_layers blocks start training (needs trainable: false)."
    )
    backbone_lr_mult: Annotated[
        float, Field(gt=0.0, description="Multiplies the lr of the backbone's weights (e.g. 0.1 to fine-tune gently).")
    ] = 1.0
    cache_features: bool = Field(
        True,
        description="While the backbone is frozen, compute its outputs once and "
        "train the head on them (no augmentation then).",
    )

    @model_validator(mode="after")
    def _unfreeze_needs_frozen_start(self) -> "PretrainedParams":
        if self.unfreeze_at_epoch is not None and self.trainable:
            raise ValueError(
                "unfreeze_at_epoch needs trainable: false (the backbone starts frozen and "
                "its last trainable_layers blocks unfreeze at that epoch)"
            )
        return self

    @property
    def backbone(self) -> str:
        """The torchvision model this layer builds (a BACKBONES name)."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """How messages name this backbone."""
        raise NotImplementedError

    @property
    def min_size(self) -> tuple[int, int]:
        """The smallest (height, width) the model takes."""
        return FACTS[self.backbone].min_size


@layer
class VGG16Params(PretrainedParams):
    """Keras's VGG16 without its top: torchvision's 13 conv layers, `[3, H, W]` → `[512, H/32, W/32]`."""

    type: Literal["VGG16"]
    include_top: bool = Field(
        False, description="Must stay false: add your own head (Flatten or GlobalAveragePooling2D, then Dense)."
    )

    @property
    def backbone(self) -> str:
        return "vgg16"

    @property
    def label(self) -> str:
        return "VGG16"

    @field_validator("include_top")
    @classmethod
    def _no_top(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "include_top: true (the 1000-class ImageNet classifier) is not offered; keep "
                "include_top: false and add your own head (Flatten or GlobalAveragePooling2D, then Dense)"
            )
        return value


@layer
class BackboneParams(PretrainedParams):
    """A torchvision classification model without its classifier (`arch`: see the backbones)."""

    type: Literal["Backbone"]
    arch: str = Field(
        description="The torchvision model, e.g. resnet18 (see the backbones table); `name` names the layer's node "
        "in a graph."
    )

    @model_validator(mode="before")
    @classmethod
    def _name_as_arch(cls, data: Any) -> Any:
        """The old form `name: resnet18` (before `name` named graph nodes) still reads as the architecture."""
        if isinstance(data, dict) and "arch" not in data and isinstance(data.get("name"), str):
            return {**data, "arch": data["name"]}
        return data

    @field_validator("arch")
    @classmethod
    def _known(cls, value: str) -> str:
        canonical = BACKBONES.canonical(value)
        if canonical is None:
            raise ValueError(BACKBONES.unknown_message(value))
        return canonical

    @property
    def backbone(self) -> str:
        return self.arch

    @property
    def label(self) -> str:
        return self.arch

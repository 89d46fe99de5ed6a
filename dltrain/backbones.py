"""Pretrained torchvision feature extractors as layers: `VGG16` and `Backbone(name)`.

The BACKBONES registry names each torchvision classification model a config can use,
how to cut its classifier off (the body keeps torchvision's attribute names, so a
torchvision state dict loads as it is), and how to split the body into "blocks" (the
stages `trainable_layers` counts from the end). Bodies are built on the `meta` device
first: the output shape comes from one meta forward pass, and VGG's 120M-parameter
classifier is never allocated.

Weights: `imagenet` reads torchvision's cache (`$TORCH_HOME/hub/checkpoints/<file>`)
and downloads only when the file is absent; `PATH` reads a `.pth`/`.pt` (with
`weights_only=True`) or `.safetensors` state dict; `null` is torchvision's random
initialization.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Literal

import torch
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import nn
from torchvision.models import get_model, get_model_weights

from ._registry import Registry
from .layers import Built, LayerError, LayerParams, Shape, ShapeError, register_layer

Blocks = list[list[nn.Module]]


@dataclass(frozen=True)
class BackboneSpec:
    """One torchvision model: its body (the classifier cut off) and its blocks."""

    name: str
    parts: Callable[[nn.Module], dict[str, nn.Module]]
    blocks: Callable[[nn.Module], Blocks]

    @property
    def imagenet(self) -> Any:
        """torchvision's default ImageNet weights enum member."""
        return get_model_weights(self.name).DEFAULT

    @property
    def file_name(self) -> str:
        return self.imagenet.url.rsplit("/", 1)[-1]

    @property
    def min_size(self) -> tuple[int, int]:
        return tuple(self.imagenet.meta.get("min_size", (1, 1)))  # type: ignore[return-value]


BACKBONES: Registry[BackboneSpec] = Registry("backbone", case_sensitive=False)


def _features(model: nn.Module) -> dict[str, nn.Module]:
    return {"features": model.features}


def _resnet_parts(model: nn.Module) -> dict[str, nn.Module]:
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return {name: getattr(model, name) for name in names}


def _pool_blocks(body: nn.Module) -> Blocks:
    """VGG's five conv blocks: the modules up to and including each max-pool."""
    blocks: Blocks = [[]]
    for module in body.features:
        blocks[-1].append(module)
        if isinstance(module, nn.MaxPool2d):
            blocks.append([])
    return [block for block in blocks if block]


def _stage_blocks(body: nn.Module) -> Blocks:
    return [[stage] for stage in body.features]


def _resnet_blocks(body: nn.Module) -> Blocks:
    return [[body.conv1, body.bn1, body.relu, body.maxpool], [body.layer1], [body.layer2], [body.layer3],
            [body.layer4]]


def _register(name: str, parts: Callable[[nn.Module], dict[str, nn.Module]], blocks: Callable[[nn.Module], Blocks],
              what: str) -> None:
    spec = BackboneSpec(name, parts, blocks)
    height, width = spec.min_size
    summary = f"{what}; min input {height}x{width}; ImageNet file {spec.file_name}"
    BACKBONES.register(name, summary=summary)(spec)


_register("vgg16", _features, _pool_blocks, "VGG16 conv blocks (5 blocks), 512 channels out")
_register("vgg19", _features, _pool_blocks, "VGG19 conv blocks (5 blocks), 512 channels out")
_register("resnet18", _resnet_parts, _resnet_blocks, "ResNet-18 without pooling and fc (5 blocks: stem, layer1-4)")
_register("resnet50", _resnet_parts, _resnet_blocks, "ResNet-50 without pooling and fc (5 blocks: stem, layer1-4)")
_register("mobilenet_v3_small", _features, _stage_blocks, "MobileNetV3-Small features (13 blocks), 576 channels out")
_register("efficientnet_b0", _features, _stage_blocks, "EfficientNet-B0 features (9 blocks), 1280 channels out")


# --- the module ---------------------------------------------------------------------


class BackboneModule(nn.Module):
    """A torchvision body whose frozen blocks stay in eval mode.

    A frozen block's BatchNorm must keep its pretrained running statistics and its
    Dropout must stay off, or "frozen" weights would still drift (and cached features
    would differ from the live ones), so `train()` leaves frozen blocks in eval mode.
    """

    __jit_unused_properties__ = ["is_frozen"]  # training-only: keeps the network scriptable for export

    def __init__(self, label: str, body: nn.Sequential, blocks: Blocks, params: "PretrainedParams") -> None:
        super().__init__()
        self.label = label
        self.body = body
        self.blocks = blocks  # a plain list: the modules are registered once, under `body`
        self.trainable_layers = params.trainable_layers
        self.unfreeze_at_epoch = params.unfreeze_at_epoch
        self.lr_mult = params.backbone_lr_mult
        self.cache_features = params.cache_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H', W')
        return self.body(x)

    def train(self, mode: bool = True) -> "BackboneModule":
        super().train(mode)
        for block in self.blocks:
            if not any(p.requires_grad for module in block for p in module.parameters()):
                for module in block:
                    module.eval()
        return self

    def train_last_blocks(self, count: int | None) -> None:
        """Let the last `count` blocks train (None: all of them); freeze the others."""
        cut = 0 if count is None else len(self.blocks) - count
        for index, block in enumerate(self.blocks):
            for module in block:
                module.requires_grad_(index >= cut)

    def trainable_blocks(self) -> Blocks:
        """The blocks that train now or will after `unfreeze_at_epoch`."""
        if self.unfreeze_at_epoch is not None:
            count = self.trainable_layers or len(self.blocks)
            return self.blocks[len(self.blocks) - count:]
        return [b for b in self.blocks if any(p.requires_grad for m in b for p in m.parameters())]

    @property
    def is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())


# --- weights ------------------------------------------------------------------------

_FROM_CHECKPOINT: ContextVar[bool] = ContextVar("weights_from_checkpoint", default=False)


@contextmanager
def weights_from_checkpoint() -> Iterator[None]:
    """Build backbones without reading weight files: a checkpoint's weights replace them."""
    token = _FROM_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _FROM_CHECKPOINT.reset(token)


def imagenet_file(spec: BackboneSpec) -> Path:
    """Where torchvision keeps (and looks for) the ImageNet weights of `spec`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.file_name


def _imagenet_weights(spec: BackboneSpec) -> Path:
    """The cached file, downloaded first if absent; a clear error when that fails."""
    path = imagenet_file(spec)
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(spec.imagenet.url, str(path), progress=False)
    except Exception as exc:  # no network, a proxy, a full disk: all end the same way for the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LayerError(
            f"ImageNet weights for {spec.name} not found at '{path}' (file {spec.file_name}), and the download "
            f"from {spec.imagenet.url} failed ({reason}). Put that file there (or set TORCH_HOME to the folder "
            f"holding hub/checkpoints/{spec.file_name}), or use `weights: PATH` for a state dict you have, "
            f"or `weights: null` for random initial weights."
        ) from None
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors`, or from `.pth`/`.pt` without unpickling code."""
    if not path.is_file():
        raise LayerError(f"weights file '{path}' not found; give a .pth or .safetensors state dict, "
                         f"`weights: imagenet`, or `weights: null`")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise LayerError(f"reading '{path}' needs the safetensors package: pip install safetensors") from None
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise LayerError(f"'{path}' holds more than tensors; dltrain loads weights with weights_only=True. "
                         f"Save a plain state dict: torch.save(model.state_dict(), path)") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise LayerError(f"'{path}' is not a readable state dict ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LayerError(f"'{path}' is not a state dict (a mapping of names to tensors)")
    return state


def _examples(keys: list[str]) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:3])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > 3 else ''})"


def load_body(body: nn.Module, state: dict[str, torch.Tensor], model_keys: set[str], spec: BackboneSpec,
              source: str) -> None:
    """Load `state` into `body`; keys of the cut-off classifier are ignored, any other mismatch is an error."""
    own = body.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and k not in model_keys]
    if missing or unexpected:
        parts = ([f"missing keys: {_examples(missing)}"] if missing else []) + (
            [f"unexpected keys: {_examples(unexpected)}"] if unexpected else [])
        raise LayerError(f"the weights in '{source}' do not fit torchvision's {spec.name}: {'; '.join(parts)}. "
                         f"Expected its state dict (keys such as '{next(iter(own))}')")
    wrong = [f"'{k}' {list(state[k].shape)} (expected {list(v.shape)})" for k, v in own.items()
             if state[k].shape != v.shape]
    if wrong:
        raise LayerError(f"the weights in '{source}' have the wrong shapes for {spec.name}: {', '.join(wrong[:3])}")
    body.load_state_dict({k: state[k] for k in own})


def _init_random(body: nn.Module) -> None:
    """torchvision's initialization of its convolutional feature extractors."""
    for module in body.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
        elif hasattr(module, "reset_parameters"):  # norm layers: weight 1, bias 0, fresh running statistics
            module.reset_parameters()


# --- the layers ---------------------------------------------------------------------


class PretrainedParams(LayerParams):
    """Keys of every backbone layer."""

    weights: str | None = "imagenet"
    trainable_layers: PositiveInt | None = None
    unfreeze_at_epoch: PositiveInt | None = None
    backbone_lr_mult: Annotated[float, Field(gt=0.0)] = 1.0
    cache_features: bool = True

    @model_validator(mode="after")
    def _unfreeze_needs_frozen_start(self) -> "PretrainedParams":
        if self.unfreeze_at_epoch is not None and self.trainable:
            raise ValueError("unfreeze_at_epoch needs trainable: false (the backbone starts frozen and "
                             "its last trainable_layers blocks unfreeze at that epoch)")
        return self

    @property
    def spec(self) -> BackboneSpec:
        """The torchvision model this layer builds."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """How messages name this backbone."""
        raise NotImplementedError


class VGG16Params(PretrainedParams):
    type: Literal["VGG16"]
    include_top: bool = False

    @property
    def spec(self) -> BackboneSpec:
        return BACKBONES.get("vgg16").obj

    @property
    def label(self) -> str:
        return "VGG16"

    @field_validator("include_top")
    @classmethod
    def _no_top(cls, value: bool) -> bool:
        if value:
            raise ValueError("include_top: true (the 1000-class ImageNet classifier) is not offered; keep "
                             "include_top: false and add your own head (Flatten or GlobalAveragePooling2D, then Dense)")
        return value


class BackboneParams(PretrainedParams):
    type: Literal["Backbone"]
    arch: str = Field(description="the torchvision model, e.g. resnet18 (`name` names the layer's node in a graph)")

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
    def spec(self) -> BackboneSpec:
        return BACKBONES.get(self.arch).obj

    @property
    def label(self) -> str:
        return self.arch


def build_backbone(p: PretrainedParams, shape: Shape) -> Built:
    """Build the body for inputs of `shape`, with the weights and trainable blocks `p` asks for."""
    spec, label = p.spec, p.label
    height, width = spec.min_size
    if len(shape) != 3 or shape[0] != 3:
        raise ShapeError(f"expects RGB images [3, H, W], received {list(shape)}; "
                         f"set data.channels: 3 (and data.resize) for other images")
    if shape[1] < height or shape[2] < width:
        raise ShapeError(f"needs images of at least {height}x{width}, received {list(shape)}; set data.resize: {height}")
    with torch.device("meta"):
        model = get_model(spec.name)
        body = nn.Sequential(OrderedDict(spec.parts(model)))
        out = tuple(body.eval()(torch.zeros(1, *shape)).shape[1:])
    body.to_empty(device="cpu")
    if p.weights is None or _FROM_CHECKPOINT.get():
        _init_random(body)
    else:
        path = _imagenet_weights(spec) if p.weights == "imagenet" else Path(p.weights).expanduser()
        load_body(body, read_state_dict(path), set(model.state_dict()), spec, str(path))
    blocks = spec.blocks(body)
    if p.trainable_layers is not None and p.trainable_layers > len(blocks):
        raise LayerError(f"trainable_layers: {p.trainable_layers} is more than {label}'s {len(blocks)} blocks")
    module = BackboneModule(label, body, blocks, p)
    if p.trainable and p.trainable_layers is not None:
        module.train_last_blocks(p.trainable_layers)
    return Built(module, out)


@register_layer(VGG16Params)
def vgg16(p: VGG16Params, shape: Shape) -> Built:
    """Keras's VGG16 without its top: torchvision's 13 conv layers, `[3, H, W]` → `[512, H/32, W/32]`."""
    return build_backbone(p, shape)


@register_layer(BackboneParams)
def backbone(p: BackboneParams, shape: Shape) -> Built:
    """A torchvision classification model without its classifier (`name`: see the backbones)."""
    return build_backbone(p, shape)

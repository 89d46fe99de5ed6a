"""Pretrained torchvision feature extractors as layers: `VGG16` and `Backbone(name)`.

The BACKBONES registry (described in `dltrain.schema.backbones`) names each torchvision
classification model a config can use; here each gets how to cut its classifier off (the body keeps torchvision's attribute names, so a
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
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..schema.backbones import BACKBONES, BackboneParams, PretrainedParams, VGG16Params
from .layers import Built, LayerError, Shape, ShapeError, register_layer

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
        from torchvision.models import get_model_weights  # torchvision only when a backbone is built

        return get_model_weights(self.name).DEFAULT

    @property
    def file_name(self) -> str:
        return self.imagenet.url.rsplit("/", 1)[-1]

    @property
    def min_size(self) -> tuple[int, int]:
        height, width = self.imagenet.meta.get("min_size", (1, 1))
        return int(height), int(width)


def _features(model: nn.Module) -> dict[str, nn.Module]:
    return {"features": model.get_submodule("features")}


def _resnet_parts(model: nn.Module) -> dict[str, nn.Module]:
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return {name: model.get_submodule(name) for name in names}


def _pool_blocks(body: nn.Module) -> Blocks:
    """VGG's five conv blocks: the modules up to and including each max-pool."""
    blocks: Blocks = [[]]
    for module in body.get_submodule("features").children():
        blocks[-1].append(module)
        if isinstance(module, nn.MaxPool2d):
            blocks.append([])
    return [block for block in blocks if block]


def _stage_blocks(body: nn.Module) -> Blocks:
    return [[stage] for stage in body.get_submodule("features").children()]


def _resnet_blocks(body: nn.Module) -> Blocks:
    stem = [body.get_submodule(name) for name in ("conv1", "bn1", "relu", "maxpool")]
    return [stem] + [[body.get_submodule(f"layer{i}")] for i in range(1, 5)]


def _register(
    name: str, parts: Callable[[nn.Module], dict[str, nn.Module]], blocks: Callable[[nn.Module], Blocks]
) -> None:
    BACKBONES.implement(name)(BackboneSpec(name, parts, blocks))


_register("vgg16", _features, _pool_blocks)
_register("vgg19", _features, _pool_blocks)
_register("resnet18", _resnet_parts, _resnet_blocks)
_register("resnet50", _resnet_parts, _resnet_blocks)
_register("mobilenet_v3_small", _features, _stage_blocks)
_register("efficientnet_b0", _features, _stage_blocks)


# --- the module ---------------------------------------------------------------------


class BackboneModule(nn.Module):
    """A torchvision body whose frozen blocks stay in eval mode.

    A frozen block's BatchNorm must keep its pretrained running statistics and its
    Dropout must stay off, or "frozen" weights would still drift (and cached features
    would differ from the live ones), so `train()` leaves frozen blocks in eval mode.
    """

    __jit_unused_properties__ = ["is_frozen"]  # training-only: keeps the network scriptable for export

    def __init__(self, label: str, body: nn.Sequential, blocks: Blocks, params: PretrainedParams) -> None:
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
            return self.blocks[len(self.blocks) - count :]
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


def sniff_weights(path: Path) -> str:
    """What a weights file holds, from its first bytes: 'safetensors', 'torch' (a torch.save zip),
    'pickle' (a bare pickle: code could run on loading) or 'unknown'. Nothing is loaded."""
    with open(path, "rb") as handle:
        head = handle.read(9)
        size = handle.seek(0, 2)
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # PROTO opcode, protocols 2-5
        return "pickle"
    header = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if len(head) == 9 and 2 <= header <= size - 8 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


_WEIGHT_KINDS = {
    "torch": "a torch.save file (.pth)",
    "safetensors": "a safetensors file",
    "pickle": "a bare Python pickle, which could run code when loaded",
    "unknown": "neither a torch.save file nor a safetensors file",
}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors`, or from `.pth`/`.pt` without unpickling code.

    The file's first bytes must say what its extension says, so a pickle named
    `.safetensors` (or random bytes named `.pth`) is refused before any loader sees it.
    """
    if not path.is_file():
        raise LayerError(
            f"weights file '{path}' not found; give a .pth or .safetensors state dict, "
            f"`weights: imagenet`, or `weights: null`"
        )
    expected = "safetensors" if path.suffix == ".safetensors" else "torch"
    kind = sniff_weights(path)
    if kind != expected:
        hint = {"safetensors": "rename it to end in .safetensors", "torch": "rename it to end in .pth"}.get(
            kind, "save the weights with safetensors.torch.save_file or torch.save(model.state_dict(), path)"
        )
        raise LayerError(
            f"weights file '{path}' is {_WEIGHT_KINDS[kind]}, not {_WEIGHT_KINDS[expected]} as its "
            f"name says; it was not loaded. If you trust it, {hint}"
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise LayerError(f"reading '{path}' needs the safetensors package: pip install safetensors") from None
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorsError
            raise LayerError(f"'{path}' is not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise LayerError(
            f"'{path}' holds more than tensors; dltrain loads weights with weights_only=True. "
            f"Save a plain state dict: torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise LayerError(f"'{path}' is not a readable state dict ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LayerError(f"'{path}' is not a state dict (a mapping of names to tensors)")
    return state


def _examples(keys: list[str]) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:3])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > 3 else ''})"


def load_body(
    body: nn.Module, state: dict[str, torch.Tensor], model_keys: set[str], spec: BackboneSpec, source: str
) -> None:
    """Load `state` into `body`; keys of the cut-off classifier are ignored, any other mismatch is an error."""
    own = body.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and k not in model_keys]
    if missing or unexpected:
        parts = ([f"missing keys: {_examples(missing)}"] if missing else []) + (
            [f"unexpected keys: {_examples(unexpected)}"] if unexpected else []
        )
        raise LayerError(
            f"the weights in '{source}' do not fit torchvision's {spec.name}: {'; '.join(parts)}. "
            f"Expected its state dict (keys such as '{next(iter(own))}')"
        )
    wrong = [
        f"'{k}' {list(state[k].shape)} (expected {list(v.shape)})" for k, v in own.items() if state[k].shape != v.shape
    ]
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
        elif callable(
            reset := getattr(module, "reset_parameters", None)
        ):  # norm layers: weight 1, bias 0, fresh statistics
            reset()


# --- the layers ---------------------------------------------------------------------


def build_backbone(p: PretrainedParams, shape: Shape) -> Built:
    """Build the body for inputs of `shape`, with the weights and trainable blocks `p` asks for."""
    from torchvision.models import get_model  # torchvision only when a backbone is built

    spec: BackboneSpec = BACKBONES.get(p.backbone).obj
    label = p.label
    height, width = p.min_size
    if len(shape) != 3 or shape[0] != 3:
        raise ShapeError(
            f"expects RGB images [3, H, W], received {list(shape)}; "
            f"set data.channels: 3 (and data.resize) for other images"
        )
    if shape[1] < height or shape[2] < width:
        raise ShapeError(
            f"needs images of at least {height}x{width}, received {list(shape)}; set data.resize: {height}"
        )
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

"""The layer builders: for each Keras layer type described in `dltrain.schema.layers`.

A builder receives its validated parameters and the input shape (batch axis
excluded) and returns the module with its output shape, so every shape is known at
build time and a mismatch names the layer. Shapes are PyTorch's: images `[C, H, W]`,
sequences `[T, F]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from .._registry import tag_value
from ..schema.layers import (
    LAYERS,
    ActivationParams,
    AveragePooling2DParams,
    BatchNormalizationParams,
    Conv1DParams,
    Conv2DParams,
    DenseParams,
    DropoutParams,
    EmbeddingParams,
    FlattenParams,
    GlobalAveragePooling1DParams,
    GlobalAveragePooling2DParams,
    GRUParams,
    KernelParams,
    LayerNormalizationParams,
    LSTMParams,
    MaxPooling1DParams,
    MaxPooling2DParams,
    Pooling2DParams,
    RecurrentParams,
    ReshapeParams,
    SimpleRNNParams,
    SingleBiasParams,
)
from .activations import activation, initialize

Shape = tuple[int, ...]


class LayerError(ValueError):
    """A layer cannot be built from its keys and input; the model builder adds where."""


class ShapeError(LayerError):
    """A layer cannot take the shape it receives; the model builder adds where."""


@dataclass
class Built:
    """A built layer: the module, its output shape, the weights it penalizes, and what it does with a padding mask.

    The model builder routes the mask (`[B, T]`, True at real tokens) by these flags, so
    no config wires it: `makes_mask` derives it from the layer's input ids (id 0 is
    padding), `takes_mask` gets it as `mask=` (and a context's as `context_mask=`), and
    `keeps_mask` hands it on to the next layer because the output keeps the time steps.
    """

    module: nn.Module
    shape: Shape
    penalties: list[tuple[torch.Tensor, float, float]] = field(default_factory=list)
    makes_mask: bool = False
    takes_mask: bool = False
    keeps_mask: bool = False


Builder = Callable[[Any, Any], Built]  # (params, input shape); merge layers take a list of shapes


def register_layer(params: type[BaseModel]) -> Callable[[Builder], Builder]:
    """Attach a builder to the layer type named by its params' `type` literal."""
    return LAYERS.implement(tag_value(params))


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _expect_rank(shape: Shape, rank: int, what: str, hint: str) -> None:
    if len(shape) != rank:
        raise ShapeError(f"expects an input of shape {what}, received {list(shape)}. {hint}")


def _activation_or_none(name: str, shape: Shape) -> nn.Module | None:
    return None if name == "linear" else activation(name, shape)


class _Dense(nn.Linear):
    """`nn.Linear` with its activation applied in the same call.

    One module per layer, not a `Sequential(linear, activation)`: the nesting cost a
    measurable share of a small model's step, and it keeps parameter names flat
    (`layers.3.weight`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool, act: nn.Module | None) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.activation = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight, self.bias)
        return x if self.activation is None else self.activation(x)


class _Conv2d(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow's asymmetric 'same' padding and its activation, in one module."""

    def __init__(
        self,
        channels: int,
        filters: int,
        kernel: tuple[int, int],
        strides: tuple[int, int],
        bias: bool,
        pad: tuple[int, int, int, int],
        act: nn.Module | None,
    ) -> None:
        super().__init__(channels, filters, kernel, strides, bias=bias)
        self.pad = pad  # (left, right, top, bottom), as F.pad takes it
        self.padded = any(pad)
        self.activation = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padded:
            x = F.pad(x, self.pad)
        x = self._conv_forward(x, self.weight, self.bias)
        return x if self.activation is None else self.activation(x)


class _Conv1d(nn.Conv1d):
    """`nn.Conv1d` on `[B, T, F]` (channels moved to axis 1 and back), its padding and activation in one module."""

    def __init__(
        self,
        features: int,
        filters: int,
        kernel: int,
        strides: int,
        bias: bool,
        pad: tuple[int, int],
        act: nn.Module | None,
    ) -> None:
        super().__init__(features, filters, kernel, strides, bias=bias)
        self.pad = pad
        self.padded = any(pad)
        self.activation = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, F, T)
        if self.padded:
            x = F.pad(x, self.pad)
        x = self._conv_forward(x, self.weight, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x.transpose(1, 2)  # (B, T', filters)


def _init_kernel(p: KernelParams, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    initialize(weight, p.kernel_initializer)
    initialize(bias, p.bias_initializer)


def kernel_penalty(penalties: list[tuple[torch.Tensor, float, float]]) -> torch.Tensor:
    """Keras's kernel regularization term, to add to the loss: l1 * sum|w| + l2 * sum w^2 over `(w, l1, l2)`."""
    total = sum(l1 * w.abs().sum() + l2 * w.square().sum() for w, l1, l2 in penalties)
    return total  # type: ignore[return-value]


def _penalties(p: KernelParams, *weights: torch.Tensor) -> list[tuple[torch.Tensor, float, float]]:
    reg = p.kernel_regularizer
    if reg is None or (reg.l1 == 0 and reg.l2 == 0):
        return []
    return [(w, reg.l1, reg.l2) for w in weights]


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding: output ceil(size / stride), the extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


# --- dense and shape layers -----------------------------------------------------------


@register_layer(DenseParams)
def dense(p: DenseParams, shape: Shape) -> Built:
    """Fully connected layer on the last axis (as Keras: `[T, F]` stays a sequence)."""
    if p.units == "auto":  # the model builder puts the target width in its place
        raise LayerError("has units: auto, which only a model (knowing its targets) can resolve")
    units = p.units
    out = (*shape[:-1], units)
    act = _activation_or_none(p.activation, out)
    linear = nn.Linear(shape[-1], units, bias=p.use_bias) if act is None else _Dense(shape[-1], units, p.use_bias, act)
    _init_kernel(p, linear.weight, linear.bias)
    return Built(linear, out, _penalties(p, linear.weight), keeps_mask=True)


@register_layer(FlattenParams)
def flatten(p: FlattenParams, shape: Shape) -> Built:
    """Flatten everything but the batch axis."""
    return Built(nn.Flatten(), (math.prod(shape),))


class _Reshape(nn.Module):
    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


@register_layer(ReshapeParams)
def reshape(p: ReshapeParams, shape: Shape) -> Built:
    """Reshape to `target_shape` (batch axis excluded; one entry may be -1)."""
    target = list(p.target_shape)
    total = math.prod(shape)
    if target.count(-1) > 1 or any(d == 0 or d < -1 for d in target):
        raise ShapeError(f"target_shape {target} may hold one -1 and otherwise positive sizes")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        if total % known:
            raise ShapeError(f"cannot reshape {list(shape)} ({total} values) to {target}")
        target[target.index(-1)] = total // known
    if math.prod(target) != total:
        raise ShapeError(f"cannot reshape {list(shape)} ({total} values) to {target} ({math.prod(target)} values)")
    return Built(_Reshape(tuple(target)), tuple(target))


@register_layer(DropoutParams)
def dropout(p: DropoutParams, shape: Shape) -> Built:
    """Zero a fraction `rate` of the inputs during training."""
    return Built(nn.Dropout(p.rate), shape, keeps_mask=True)


@register_layer(ActivationParams)
def activation_layer(p: ActivationParams, shape: Shape) -> Built:
    """Apply an activation function."""
    return Built(activation(p.activation, shape), shape, keeps_mask=True)


class _ChannelsLast(nn.Module):
    """Apply a channels-first module to `[B, T, F]` by moving F to axis 1 and back."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(1, 2)).transpose(1, 2)


@register_layer(BatchNormalizationParams)
def batch_normalization(p: BatchNormalizationParams, shape: Shape) -> Built:
    """Normalize each feature (or channel of `[C, H, W]`) over the batch.

    `momentum` is Keras's (weight of the old running average): PyTorch's is 1 - it.
    """
    eps, momentum = p.epsilon, 1.0 - p.momentum
    if len(shape) == 3:
        return Built(nn.BatchNorm2d(shape[0], eps=eps, momentum=momentum), shape)
    if len(shape) == 2:
        return Built(_ChannelsLast(nn.BatchNorm1d(shape[1], eps=eps, momentum=momentum)), shape, keeps_mask=True)
    if len(shape) == 1:
        return Built(nn.BatchNorm1d(shape[0], eps=eps, momentum=momentum), shape)
    raise ShapeError(f"expects [F], [T, F] or [C, H, W], received {list(shape)}")


@register_layer(LayerNormalizationParams)
def layer_normalization(p: LayerNormalizationParams, shape: Shape) -> Built:
    """Normalize over the last axis of each sample."""
    return Built(nn.LayerNorm(shape[-1], eps=p.epsilon), shape, keeps_mask=True)


# --- convolutions and pooling ---------------------------------------------------------

_IMAGE_HINT = "Images are channels-first [C, H, W]; add a Reshape (e.g. target_shape: [1, 8, 8]) before it."
_SEQUENCE_HINT = "Sequences are [T, F]; add a Reshape (e.g. target_shape: [8, 8]) before it."


@register_layer(Conv2DParams)
def conv2d(p: Conv2DParams, shape: Shape) -> Built:
    """2-D convolution over `[C, H, W]`; `padding: same` pads as TensorFlow does."""
    _expect_rank(shape, 3, "[C, H, W]", _IMAGE_HINT)
    channels, height, width = shape
    (kh, kw), (sh, sw) = _pair(p.kernel_size), _pair(p.strides)
    top = bottom = left = right = 0
    if p.padding == "same":
        top, bottom = _same_padding(height, kh, sh)
        left, right = _same_padding(width, kw, sw)
        height, width = height + top + bottom, width + left + right
    out = (p.filters, _conv_out(height, kh, sh), _conv_out(width, kw, sw))
    if min(out) < 1:
        raise ShapeError(f"kernel {kh}x{kw} does not fit the input {list(shape)}; use padding: same")
    conv = _Conv2d(
        channels,
        p.filters,
        (kh, kw),
        (sh, sw),
        p.use_bias,
        (left, right, top, bottom),
        _activation_or_none(p.activation, out),
    )
    _init_kernel(p, conv.weight, conv.bias)
    return Built(conv, out, _penalties(p, conv.weight))


@register_layer(Conv1DParams)
def conv1d(p: Conv1DParams, shape: Shape) -> Built:
    """1-D convolution over time: `[T, F]` → `[T', filters]`."""
    _expect_rank(shape, 2, "[T, F]", _SEQUENCE_HINT)
    steps, features = shape
    pad = {"valid": (0, 0), "same": _same_padding(steps, p.kernel_size, p.strides), "causal": (p.kernel_size - 1, 0)}[
        p.padding
    ]
    out_steps = _conv_out(steps + sum(pad), p.kernel_size, p.strides)
    if out_steps < 1:
        raise ShapeError(f"kernel {p.kernel_size} is longer than the sequence {list(shape)}")
    out = (out_steps, p.filters)
    conv = _Conv1d(
        features,
        p.filters,
        p.kernel_size,
        p.strides,
        p.use_bias,
        pad,
        _activation_or_none(p.activation, (p.filters, out_steps)),
    )
    _init_kernel(p, conv.weight, conv.bias)
    return Built(conv, out, _penalties(p, conv.weight))


def _pool2d(pool: type[nn.Module], p: Pooling2DParams, shape: Shape) -> Built:
    _expect_rank(shape, 3, "[C, H, W]", _IMAGE_HINT)
    kernel = _pair(p.pool_size)
    stride = _pair(p.strides) if p.strides is not None else kernel
    out = (shape[0], _conv_out(shape[1], kernel[0], stride[0]), _conv_out(shape[2], kernel[1], stride[1]))
    if min(out) < 1:
        raise ShapeError(f"pool_size {list(kernel)} is larger than the input {list(shape)}")
    return Built(pool(kernel, stride), out)


@register_layer(MaxPooling2DParams)
def max_pooling2d(p: MaxPooling2DParams, shape: Shape) -> Built:
    """Max over `pool_size` windows of `[C, H, W]` (stride defaults to `pool_size`)."""
    return _pool2d(nn.MaxPool2d, p, shape)


@register_layer(AveragePooling2DParams)
def average_pooling2d(p: AveragePooling2DParams, shape: Shape) -> Built:
    """Mean over `pool_size` windows of `[C, H, W]` (stride defaults to `pool_size`)."""
    return _pool2d(nn.AvgPool2d, p, shape)


@register_layer(MaxPooling1DParams)
def max_pooling1d(p: MaxPooling1DParams, shape: Shape) -> Built:
    """Max over windows of time: `[T, F]` → `[T', F]`."""
    _expect_rank(shape, 2, "[T, F]", _SEQUENCE_HINT)
    stride = p.strides or p.pool_size
    steps = _conv_out(shape[0], p.pool_size, stride)
    if steps < 1:
        raise ShapeError(f"pool_size {p.pool_size} is longer than the sequence {list(shape)}")
    return Built(_ChannelsLast(nn.MaxPool1d(p.pool_size, stride)), (steps, shape[1]))


class _MeanOver(nn.Module):
    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dims)


@register_layer(GlobalAveragePooling2DParams)
def global_average_pooling2d(p: GlobalAveragePooling2DParams, shape: Shape) -> Built:
    """Mean over height and width: `[C, H, W]` → `[C]`."""
    _expect_rank(shape, 3, "[C, H, W]", _IMAGE_HINT)
    return Built(_MeanOver((2, 3)), (shape[0],))


class _MaskedMean(nn.Module):
    """Mean over time `(B, T, F) -> (B, F)`; with a padding mask, over the real steps only (as Keras's)."""

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if mask is None:
            return x.mean(dim=1)
        weights = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


@register_layer(GlobalAveragePooling1DParams)
def global_average_pooling1d(p: GlobalAveragePooling1DParams, shape: Shape) -> Built:
    """Mean over time: `[T, F]` → `[F]`; with a padding mask, over the real steps only."""
    _expect_rank(shape, 2, "[T, F]", _SEQUENCE_HINT)
    return Built(_MaskedMean(), (shape[1],), takes_mask=True)


# --- recurrent layers -----------------------------------------------------------------


class _Recurrent(nn.Module):
    """A batch-first RNN that returns the whole sequence or the last output only.

    With `bidirectional`, the last output is Keras's: the forward direction's final
    step joined with the backward direction's final step (which is time 0). With a
    padding mask (one direction), the last output is the one at the last real token.
    """

    def __init__(self, rnn: nn.RNNBase, return_sequences: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.return_sequences = return_sequences

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H * directions)
        if self.return_sequences:
            return out
        if not self.rnn.bidirectional:
            if mask is not None:  # the last real step (padding comes after the tokens)
                last = mask.sum(dim=1).clamp(min=1) - 1  # (B,)
                return out[torch.arange(out.shape[0], device=out.device), last]
            return out[:, -1]
        hidden = self.rnn.hidden_size
        return torch.cat([out[:, -1, :hidden], out[:, 0, hidden:]], dim=-1)


def _recurrent(p: RecurrentParams, shape: Shape, rnn_cls: Callable[..., nn.RNNBase], **kwargs: Any) -> Built:
    _expect_rank(shape, 2, "[T, F]", _SEQUENCE_HINT)
    steps, features = shape
    rnn = rnn_cls(features, p.units, batch_first=True, bias=p.use_bias, bidirectional=p.bidirectional, **kwargs)
    kernels = []
    for name, tensor in rnn.named_parameters():
        if name.startswith("weight_ih"):
            # PyTorch stacks the gates' kernels; Keras initializes the stacked (F, gates*H) kernel.
            initialize(tensor, p.kernel_initializer)
            kernels.append(tensor)
        elif name.startswith("weight_hh"):
            initialize(tensor, p.recurrent_initializer)
        else:
            initialize(tensor, p.bias_initializer)
            if isinstance(p, LSTMParams) and p.unit_forget_bias and name.startswith("bias_ih"):
                with torch.no_grad():
                    tensor[p.units : 2 * p.units].fill_(1.0)  # gate order: input, forget, cell, output
    if isinstance(p, SingleBiasParams) and p.use_bias and not p.recurrent_bias:
        _drop_recurrent_bias(rnn)
    width = p.units * (2 if p.bidirectional else 1)
    out = (steps, width) if p.return_sequences else (width,)
    one_way = not p.bidirectional  # a forward pass never sees the padding after a real step; a backward one does
    return Built(
        _Recurrent(rnn, p.return_sequences),
        out,
        _penalties(p, *kernels),
        takes_mask=one_way and not p.return_sequences,
        keeps_mask=one_way and p.return_sequences,
    )


def _drop_recurrent_bias(rnn: nn.RNNBase) -> None:
    """Keras's one bias: each `bias_hh` becomes a zero buffer (kept in the state dict, never trained).

    For SimpleRNN and LSTM the two biases only appear as their sum, so this changes no
    function the layer can learn, only the count. (Keras's GRU keeps two, as PyTorch's:
    with reset_after the recurrent bias sits inside the reset gate.)
    """
    for name in [n for n, _ in rnn.named_parameters() if n.startswith("bias_hh")]:
        zeros = torch.zeros_like(getattr(rnn, name)).detach()
        delattr(rnn, name)
        rnn.register_buffer(name, zeros)
    rnn._init_flat_weights()  # PyTorch's list of the tensors the kernel reads


@register_layer(SimpleRNNParams)
def simple_rnn(p: SimpleRNNParams, shape: Shape) -> Built:
    """Fully connected recurrent layer: `[T, F]` → `[units]` (or `[T, units]`)."""
    return _recurrent(p, shape, nn.RNN, nonlinearity=p.activation)


@register_layer(LSTMParams)
def lstm(p: LSTMParams, shape: Shape) -> Built:
    """Long short-term memory: `[T, F]` → `[units]` (or `[T, units]`)."""
    return _recurrent(p, shape, nn.LSTM)


@register_layer(GRUParams)
def gru(p: GRUParams, shape: Shape) -> Built:
    """Gated recurrent unit (Keras's reset_after form): `[T, F]` → `[units]` (or `[T, units]`)."""
    return _recurrent(p, shape, nn.GRU)


# --- embeddings (attention and positions: dltrain.nn.attention) ------------------------


class _Embedding(nn.Embedding):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.embedding(x.long(), self.weight)  # not super().forward(): TorchScript cannot call it


def vocabulary(input_dim: int | None) -> int:
    """An embedding's vocabulary size: the model builder fills in the tokenizer's when the config leaves it out."""
    if input_dim is None:
        raise LayerError("needs input_dim (the vocabulary size): this data has no tokenizer to take it from")
    return input_dim


@register_layer(EmbeddingParams)
def embedding(p: EmbeddingParams, shape: Shape) -> Built:
    """Integer token ids `[T]` → vectors `[T, output_dim]`."""
    _expect_rank(shape, 1, "[T] (token ids)", "Give it a sequence of integer ids.")
    module = _Embedding(vocabulary(p.input_dim), p.output_dim)
    initialize(module.weight, p.embeddings_initializer)
    return Built(module, (shape[0], p.output_dim), makes_mask=p.mask_zero)

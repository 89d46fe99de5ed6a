"""The layer registry: each Keras layer type, its parameters, and its builder.

A builder receives its validated parameters and the input shape (batch axis
excluded) and returns the module with its output shape, so every shape is known at
build time and a mismatch names the layer. Shapes are PyTorch's: images `[C, H, W]`,
sequences `[T, F]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import nn

from ._params import Params
from ._registry import Registry
from .activations import ActivationName, InitializerName, activation, initialize

Shape = tuple[int, ...]


class LayerError(ValueError):
    """A layer cannot be built from its keys and input; the model builder adds where."""


class ShapeError(LayerError):
    """A layer cannot take the shape it receives; the model builder adds where."""


@dataclass
class Built:
    """A built layer: the module, its output shape, and the weights it penalizes."""

    module: nn.Module
    shape: Shape
    penalties: list[tuple[nn.Parameter, float, float]] = field(default_factory=list)


Builder = Callable[[Any, Shape], Built]
LAYERS: Registry[Builder] = Registry("layer")

def register_layer(params: type[Params]) -> Callable[[Builder], Builder]:
    """Register a builder under the layer type named by its params' `type` literal."""
    return LAYERS.register_params(params)


# --- parameters shared by many layers -------------------------------------------------

IntPair = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]


class Regularizer(Params):
    """Keras's penalty on a kernel: `l1 * sum(|w|) + l2 * sum(w**2)`, added to the loss."""

    l1: NonNegativeFloat = 0.0
    l2: NonNegativeFloat = 0.0


class LayerParams(Params):
    """Keys every layer accepts."""

    name: str | None = None
    trainable: bool = True


class KernelParams(LayerParams):
    """Keys of layers with a kernel (weights) and a bias."""

    use_bias: bool = True
    kernel_initializer: InitializerName = "glorot_uniform"
    bias_initializer: InitializerName = "zeros"
    kernel_regularizer: Regularizer | None = None


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _expect_rank(shape: Shape, rank: int, what: str, hint: str) -> None:
    if len(shape) != rank:
        raise ShapeError(f"expects an input of shape {what}, received {list(shape)}. {hint}")


def _with_activation(module: nn.Module, name: str, shape: Shape) -> nn.Module:
    return module if name == "linear" else nn.Sequential(module, activation(name, shape))


def _init_kernel(p: KernelParams, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    initialize(weight, p.kernel_initializer)
    initialize(bias, p.bias_initializer)


def _penalties(p: KernelParams, *weights: nn.Parameter) -> list[tuple[nn.Parameter, float, float]]:
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


class DenseParams(KernelParams):
    type: Literal["Dense"]
    units: PositiveInt
    activation: ActivationName = "linear"


@register_layer(DenseParams)
def dense(p: DenseParams, shape: Shape) -> Built:
    """Fully connected layer on the last axis (as Keras: `[T, F]` stays a sequence)."""
    linear = nn.Linear(shape[-1], p.units, bias=p.use_bias)
    _init_kernel(p, linear.weight, linear.bias)
    out = (*shape[:-1], p.units)
    return Built(_with_activation(linear, p.activation, out), out, _penalties(p, linear.weight))


class FlattenParams(LayerParams):
    type: Literal["Flatten"]


@register_layer(FlattenParams)
def flatten(p: FlattenParams, shape: Shape) -> Built:
    """Flatten everything but the batch axis."""
    return Built(nn.Flatten(), (math.prod(shape),))


class ReshapeParams(LayerParams):
    type: Literal["Reshape"]
    target_shape: Annotated[list[int], Field(min_length=1)]


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
        raise ShapeError(
            f"cannot reshape {list(shape)} ({total} values) to {target} ({math.prod(target)} values)"
        )
    return Built(_Reshape(tuple(target)), tuple(target))


class DropoutParams(LayerParams):
    type: Literal["Dropout"]
    rate: Annotated[float, Field(ge=0.0, lt=1.0)]


@register_layer(DropoutParams)
def dropout(p: DropoutParams, shape: Shape) -> Built:
    """Zero a fraction `rate` of the inputs during training."""
    return Built(nn.Dropout(p.rate), shape)


class ActivationParams(LayerParams):
    type: Literal["Activation"]
    activation: ActivationName


@register_layer(ActivationParams)
def activation_layer(p: ActivationParams, shape: Shape) -> Built:
    """Apply an activation function."""
    return Built(activation(p.activation, shape), shape)


class _ChannelsLast(nn.Module):
    """Apply a channels-first module to `[B, T, F]` by moving F to axis 1 and back."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(1, 2)).transpose(1, 2)


class BatchNormalizationParams(LayerParams):
    type: Literal["BatchNormalization"]
    momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.99
    epsilon: Annotated[float, Field(gt=0.0)] = 1e-3


@register_layer(BatchNormalizationParams)
def batch_normalization(p: BatchNormalizationParams, shape: Shape) -> Built:
    """Normalize each feature (or channel of `[C, H, W]`) over the batch.

    `momentum` is Keras's (weight of the old running average): PyTorch's is 1 - it.
    """
    kwargs = {"eps": p.epsilon, "momentum": 1.0 - p.momentum}
    if len(shape) == 3:
        return Built(nn.BatchNorm2d(shape[0], **kwargs), shape)
    if len(shape) == 2:
        return Built(_ChannelsLast(nn.BatchNorm1d(shape[1], **kwargs)), shape)
    if len(shape) == 1:
        return Built(nn.BatchNorm1d(shape[0], **kwargs), shape)
    raise ShapeError(f"expects [F], [T, F] or [C, H, W], received {list(shape)}")


class LayerNormalizationParams(LayerParams):
    type: Literal["LayerNormalization"]
    epsilon: Annotated[float, Field(gt=0.0)] = 1e-3


@register_layer(LayerNormalizationParams)
def layer_normalization(p: LayerNormalizationParams, shape: Shape) -> Built:
    """Normalize over the last axis of each sample."""
    return Built(nn.LayerNorm(shape[-1], eps=p.epsilon), shape)


# --- convolutions and pooling ---------------------------------------------------------

_IMAGE_HINT = "Images are channels-first [C, H, W]; add a Reshape (e.g. target_shape: [1, 8, 8]) before it."
_SEQUENCE_HINT = "Sequences are [T, F]; add a Reshape (e.g. target_shape: [8, 8]) before it."


class Conv2DParams(KernelParams):
    type: Literal["Conv2D"]
    filters: PositiveInt
    kernel_size: IntPair
    strides: IntPair = 1
    padding: Literal["valid", "same"] = "valid"
    activation: ActivationName = "linear"


@register_layer(Conv2DParams)
def conv2d(p: Conv2DParams, shape: Shape) -> Built:
    """2-D convolution over `[C, H, W]`; `padding: same` pads as TensorFlow does."""
    _expect_rank(shape, 3, "[C, H, W]", _IMAGE_HINT)
    channels, height, width = shape
    (kh, kw), (sh, sw) = _pair(p.kernel_size), _pair(p.strides)
    conv = nn.Conv2d(channels, p.filters, (kh, kw), (sh, sw), bias=p.use_bias)
    _init_kernel(p, conv.weight, conv.bias)
    module: nn.Module = conv
    if p.padding == "same":
        top, bottom = _same_padding(height, kh, sh)
        left, right = _same_padding(width, kw, sw)
        height, width = height + top + bottom, width + left + right
        module = nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)
    out = (p.filters, _conv_out(height, kh, sh), _conv_out(width, kw, sw))
    if min(out) < 1:
        raise ShapeError(f"kernel {kh}x{kw} does not fit the input {list(shape)}; use padding: same")
    return Built(_with_activation(module, p.activation, out), out, _penalties(p, conv.weight))


class Conv1DParams(KernelParams):
    type: Literal["Conv1D"]
    filters: PositiveInt
    kernel_size: PositiveInt
    strides: PositiveInt = 1
    padding: Literal["valid", "same", "causal"] = "valid"
    activation: ActivationName = "linear"


@register_layer(Conv1DParams)
def conv1d(p: Conv1DParams, shape: Shape) -> Built:
    """1-D convolution over time: `[T, F]` → `[T', filters]`."""
    _expect_rank(shape, 2, "[T, F]", _SEQUENCE_HINT)
    steps, features = shape
    conv = nn.Conv1d(features, p.filters, p.kernel_size, p.strides, bias=p.use_bias)
    _init_kernel(p, conv.weight, conv.bias)
    module: nn.Module = conv
    pad = {"valid": (0, 0), "same": _same_padding(steps, p.kernel_size, p.strides),
           "causal": (p.kernel_size - 1, 0)}[p.padding]
    if pad != (0, 0):
        module = nn.Sequential(nn.ConstantPad1d(pad, 0.0), conv)
    out_steps = _conv_out(steps + sum(pad), p.kernel_size, p.strides)
    if out_steps < 1:
        raise ShapeError(f"kernel {p.kernel_size} is longer than the sequence {list(shape)}")
    out = (out_steps, p.filters)
    return Built(_ChannelsLast(_with_activation(module, p.activation, (p.filters, out_steps))), out,
                 _penalties(p, conv.weight))


class Pooling2DParams(LayerParams):
    pool_size: IntPair = 2
    strides: IntPair | None = None


class MaxPooling2DParams(Pooling2DParams):
    type: Literal["MaxPooling2D"]


class AveragePooling2DParams(Pooling2DParams):
    type: Literal["AveragePooling2D"]


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


class MaxPooling1DParams(LayerParams):
    type: Literal["MaxPooling1D"]
    pool_size: PositiveInt = 2
    strides: PositiveInt | None = None


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


class GlobalAveragePooling2DParams(LayerParams):
    type: Literal["GlobalAveragePooling2D"]


@register_layer(GlobalAveragePooling2DParams)
def global_average_pooling2d(p: GlobalAveragePooling2DParams, shape: Shape) -> Built:
    """Mean over height and width: `[C, H, W]` → `[C]`."""
    _expect_rank(shape, 3, "[C, H, W]", _IMAGE_HINT)
    return Built(_MeanOver((2, 3)), (shape[0],))


class GlobalAveragePooling1DParams(LayerParams):
    type: Literal["GlobalAveragePooling1D"]


@register_layer(GlobalAveragePooling1DParams)
def global_average_pooling1d(p: GlobalAveragePooling1DParams, shape: Shape) -> Built:
    """Mean over time: `[T, F]` → `[F]`."""
    _expect_rank(shape, 2, "[T, F]", _SEQUENCE_HINT)
    return Built(_MeanOver((1,)), (shape[1],))


# --- recurrent layers -----------------------------------------------------------------


class RecurrentParams(KernelParams):
    units: PositiveInt
    return_sequences: bool = False
    bidirectional: bool = False
    recurrent_initializer: InitializerName = "orthogonal"


class SingleBiasParams(RecurrentParams):
    # PyTorch adds two bias vectors (input and recurrent) that only ever act as their sum; Keras has one.
    recurrent_bias: Annotated[bool, Field(description=(
        "Keep PyTorch's second (recurrent) bias vector: units more parameters (4*units for LSTM) that add "
        "nothing a single bias cannot; false (the default) matches Keras's parameter count."))] = False


class SimpleRNNParams(SingleBiasParams):
    type: Literal["SimpleRNN"]
    activation: Literal["tanh", "relu"] = "tanh"


class LSTMParams(SingleBiasParams):
    type: Literal["LSTM"]
    unit_forget_bias: bool = True


class GRUParams(RecurrentParams):
    type: Literal["GRU"]


class _Recurrent(nn.Module):
    """A batch-first RNN that returns the whole sequence or the last output only.

    With `bidirectional`, the last output is Keras's: the forward direction's final
    step joined with the backward direction's final step (which is time 0).
    """

    def __init__(self, rnn: nn.RNNBase, return_sequences: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.return_sequences = return_sequences

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H * directions)
        if self.return_sequences:
            return out
        if not self.rnn.bidirectional:
            return out[:, -1]
        hidden = self.rnn.hidden_size
        return torch.cat([out[:, -1, :hidden], out[:, 0, hidden:]], dim=-1)


def _recurrent(p: RecurrentParams, shape: Shape, rnn_cls: type[nn.RNNBase], **kwargs: Any) -> Built:
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
    return Built(_Recurrent(rnn, p.return_sequences), out, _penalties(p, *kernels))


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


# --- embeddings and attention ---------------------------------------------------------


class EmbeddingParams(LayerParams):
    type: Literal["Embedding"]
    input_dim: PositiveInt
    output_dim: PositiveInt
    embeddings_initializer: InitializerName = "random_uniform"


class _Embedding(nn.Embedding):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.long())


@register_layer(EmbeddingParams)
def embedding(p: EmbeddingParams, shape: Shape) -> Built:
    """Integer token ids `[T]` → vectors `[T, output_dim]`."""
    _expect_rank(shape, 1, "[T] (token ids)", "Give it a sequence of integer ids.")
    module = _Embedding(p.input_dim, p.output_dim)
    initialize(module.weight, p.embeddings_initializer)
    return Built(module, (shape[0], p.output_dim))


class TransformerEncoderParams(LayerParams):
    type: Literal["TransformerEncoder"]
    num_heads: PositiveInt
    ff_dim: PositiveInt
    num_layers: PositiveInt = 1
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    activation: Literal["relu", "gelu"] = "relu"


@register_layer(TransformerEncoderParams)
def transformer_encoder(p: TransformerEncoderParams, shape: Shape) -> Built:
    """Self-attention encoder blocks over `[T, F]` (F must divide by `num_heads`)."""
    _expect_rank(shape, 2, "[T, F]", _SEQUENCE_HINT)
    if shape[1] % p.num_heads:
        raise ShapeError(f"the feature size {shape[1]} must be divisible by num_heads={p.num_heads}")
    block = nn.TransformerEncoderLayer(
        shape[1], p.num_heads, p.ff_dim, p.dropout, activation=p.activation, batch_first=True
    )
    return Built(nn.TransformerEncoder(block, p.num_layers, enable_nested_tensor=False), shape)


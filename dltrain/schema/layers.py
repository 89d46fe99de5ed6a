"""Layer types (`model.layers[*].type`): Keras's names and keys, described without torch.

Shapes are PyTorch's, batch axis excluded: images `[C, H, W]`, sequences `[T, F]`.
The builders are in `dltrain.nn.layers` (and `dltrain.nn.backbones` for pretrained bodies).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, PlainValidator, PositiveInt
from pydantic_core import PydanticCustomError

from .._params import Params
from .._registry import Registry

LAYERS: Registry[Any] = Registry(
    "layer", implemented_in=("dltrain.nn.layers", "dltrain.nn.attention", "dltrain.nn.backbones", "dltrain.nn.merge")
)
layer = LAYERS.describes()

ActivationName = Literal[
    "linear", "relu", "sigmoid", "softmax", "tanh", "gelu", "elu", "selu", "silu", "swish", "leaky_relu"
]
InitializerName = Literal[
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "random_normal",
    "random_uniform",
    "zeros",
    "ones",
    "torch_default",
]

IntPair = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]


def _activation(default: str = "linear") -> Any:
    return Field(default, description="Activation applied to the output (Keras's names; linear: none).")


class Regularizer(Params):
    """Keras's penalty on a kernel: `l1 * sum(|w|) + l2 * sum(w**2)`, added to the loss."""

    l1: NonNegativeFloat = Field(0.0, description="Weight of the sum of absolute kernel values.")
    l2: NonNegativeFloat = Field(0.0, description="Weight of the sum of squared kernel values.")


class LayerParams(Params):
    """Keys every layer accepts."""

    name: str | None = Field(None, description="A name for the layer in the model summary.")
    trainable: bool = Field(True, description="false freezes the layer's weights (they are not updated).")
    inputs: str | int | list[str | int] | None = Field(
        None,
        description="What this layer takes: names of earlier layers or model inputs, or -1 for the layer above "
        "(the default).",
    )


class KernelParams(LayerParams):
    """Keys of layers with a kernel (weights) and a bias."""

    use_bias: bool = Field(True, description="Add a learned bias to the output.")
    kernel_initializer: InitializerName = Field("glorot_uniform", description="How the kernel starts (Keras's names).")
    bias_initializer: InitializerName = Field("zeros", description="How the bias starts (Keras's names).")
    kernel_regularizer: Regularizer | None = Field(None, description="L1/L2 penalty on the kernel, added to the loss.")


def _units(value: Any) -> int | Literal["auto"]:
    """A positive integer or 'auto', with one message for a bad value (a union would report one per member)."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "Input should be a positive integer or auto")
    if value < 1:
        raise PydanticCustomError("greater_than", "Input should be greater than 0")
    return value


Units = Annotated[int | Literal["auto"], PlainValidator(_units, json_schema_input_type=PositiveInt | Literal["auto"])]

# --- dense and shape layers -----------------------------------------------------------


@layer
class DenseParams(KernelParams):
    """Fully connected layer on the last axis (as Keras: `[T, F]` stays a sequence)."""

    type: Literal["Dense"]
    units: Units = Field(
        description="Output features; auto: the model's target width (the number of classes, or the vocabulary "
        "size of a language model)."
    )
    activation: ActivationName = _activation()


@layer
class FlattenParams(LayerParams):
    """Flatten everything but the batch axis."""

    type: Literal["Flatten"]


@layer
class ReshapeParams(LayerParams):
    """Reshape to `target_shape` (batch axis excluded; one entry may be -1)."""

    type: Literal["Reshape"]
    target_shape: Annotated[
        list[int],
        Field(min_length=1, description="The new shape, batch axis excluded; one entry may be -1 (inferred)."),
    ]


@layer
class DropoutParams(LayerParams):
    """Zero a fraction `rate` of the inputs during training."""

    type: Literal["Dropout"]
    rate: Annotated[float, Field(ge=0.0, lt=1.0, description="Fraction of the inputs set to zero in training.")]


@layer
class ActivationParams(LayerParams):
    """Apply an activation function."""

    type: Literal["Activation"]
    activation: ActivationName = Field(description="The activation (Keras's names).")


@layer
class BatchNormalizationParams(LayerParams):
    """Normalize each feature (or channel of `[C, H, W]`) over the batch."""

    type: Literal["BatchNormalization"]
    momentum: Annotated[
        float,
        Field(
            gt=0.0, lt=1.0, description="Keras's momentum: the weight of the old running average (PyTorch's is 1 - it)."
        ),
    ] = 0.99
    epsilon: Annotated[float, Field(gt=0.0, description="Added to the variance before dividing.")] = 1e-3


@layer
class LayerNormalizationParams(LayerParams):
    """Normalize over the last axis of each sample."""

    type: Literal["LayerNormalization"]
    epsilon: Annotated[float, Field(gt=0.0, description="Added to the variance before dividing.")] = 1e-3


# --- convolutions and pooling ---------------------------------------------------------

_KERNEL = "Window size: one number, or [height, width]."
_STRIDES = "Step between windows: one number, or [height, width]."


@layer
class Conv2DParams(KernelParams):
    """2-D convolution over `[C, H, W]`; `padding: same` pads as TensorFlow does."""

    type: Literal["Conv2D"]
    filters: PositiveInt = Field(description="Output channels.")
    kernel_size: IntPair = Field(description=_KERNEL)
    strides: IntPair = Field(1, description=_STRIDES)
    padding: Literal["valid", "same"] = Field(
        "valid", description="valid: no padding; same: output size ceil(input / strides)."
    )
    activation: ActivationName = _activation()


@layer
class Conv1DParams(KernelParams):
    """1-D convolution over time: `[T, F]` → `[T', filters]`."""

    type: Literal["Conv1D"]
    filters: PositiveInt = Field(description="Output features per step.")
    kernel_size: PositiveInt = Field(description="Window length in steps.")
    strides: PositiveInt = Field(1, description="Step between windows.")
    padding: Literal["valid", "same", "causal"] = Field(
        "valid", description="valid: none; same: output length ceil(T / strides); causal: pad the start only."
    )
    activation: ActivationName = _activation()


class Pooling2DParams(LayerParams):
    """Keys of the 2-D pooling layers."""

    pool_size: IntPair = Field(2, description=_KERNEL)
    strides: IntPair | None = Field(None, description=_STRIDES + " Default: pool_size.")


@layer
class MaxPooling2DParams(Pooling2DParams):
    """Max over `pool_size` windows of `[C, H, W]` (stride defaults to `pool_size`)."""

    type: Literal["MaxPooling2D"]


@layer
class AveragePooling2DParams(Pooling2DParams):
    """Mean over `pool_size` windows of `[C, H, W]` (stride defaults to `pool_size`)."""

    type: Literal["AveragePooling2D"]


@layer
class MaxPooling1DParams(LayerParams):
    """Max over windows of time: `[T, F]` → `[T', F]`."""

    type: Literal["MaxPooling1D"]
    pool_size: PositiveInt = Field(2, description="Window length in steps.")
    strides: PositiveInt | None = Field(None, description="Step between windows (default: pool_size).")


@layer
class GlobalAveragePooling2DParams(LayerParams):
    """Mean over height and width: `[C, H, W]` → `[C]`."""

    type: Literal["GlobalAveragePooling2D"]


@layer
class GlobalAveragePooling1DParams(LayerParams):
    """Mean over time: `[T, F]` → `[F]`; with a padding mask, over the real steps only."""

    type: Literal["GlobalAveragePooling1D"]


# --- recurrent layers -----------------------------------------------------------------


class RecurrentParams(KernelParams):
    """Keys of the recurrent layers."""

    units: PositiveInt = Field(description="Size of the hidden state (output features per direction).")
    return_sequences: bool = Field(False, description="Return every step `[T, units]`, not only the last `[units]`.")
    bidirectional: bool = Field(False, description="Also run backwards in time and join both (2 * units features).")
    recurrent_initializer: InitializerName = Field("orthogonal", description="How the recurrent kernel starts.")


class SingleBiasParams(RecurrentParams):
    """Recurrent layers whose two PyTorch bias vectors (input and recurrent) only ever act as their sum; Keras has one."""

    recurrent_bias: bool = Field(
        False,
        description="Keep PyTorch's second (recurrent) bias vector: units more parameters (4*units for LSTM) that add "
        "nothing a single bias cannot; false (the default) matches Keras's parameter count.",
    )


@layer
class SimpleRNNParams(SingleBiasParams):
    """Fully connected recurrent layer: `[T, F]` → `[units]` (or `[T, units]`)."""

    type: Literal["SimpleRNN"]
    activation: Literal["tanh", "relu"] = Field("tanh", description="The nonlinearity of the recurrence.")


@layer
class LSTMParams(SingleBiasParams):
    """Long short-term memory: `[T, F]` → `[units]` (or `[T, units]`)."""

    type: Literal["LSTM"]
    unit_forget_bias: bool = Field(True, description="Start the forget gate's bias at 1, as Keras does.")


@layer
class GRUParams(RecurrentParams):
    """Gated recurrent unit (Keras's reset_after form): `[T, F]` → `[units]` (or `[T, units]`)."""

    type: Literal["GRU"]


# --- embeddings and attention ---------------------------------------------------------


_MASK_ZERO = (
    "Treat id 0 as padding: the model derives a padding mask from the ids (id == 0) and hands it to every "
    "later layer that takes one (attention, TransformerEncoder/Decoder, GlobalAveragePooling1D), so padding "
    "changes no prediction."
)
_INPUT_DIM = (
    "Vocabulary size: ids run from 0 to input_dim - 1. Default: the tokenizer's vocabulary size (text data); "
    "required otherwise."
)


@layer
class EmbeddingParams(LayerParams):
    """Integer token ids `[T]` → vectors `[T, output_dim]`."""

    type: Literal["Embedding"]
    input_dim: PositiveInt | None = Field(None, description=_INPUT_DIM)
    output_dim: PositiveInt = Field(description="Length of each token's vector.")
    mask_zero: bool = Field(False, description=_MASK_ZERO)
    embeddings_initializer: InitializerName = Field("random_uniform", description="How the vectors start.")


@layer
class PositionalEmbeddingParams(LayerParams):
    """Token ids `[T]` → token vector + position vector `[T, output_dim]`; masks padding (id 0) by default."""

    type: Literal["PositionalEmbedding"]
    input_dim: PositiveInt | None = Field(None, description=_INPUT_DIM)
    output_dim: PositiveInt = Field(description="Length of each token's (and position's) vector.")
    max_length: PositiveInt | None = Field(
        None,
        description="The longest sequence it takes (positions 0 to max_length - 1). Default: the input's length T.",
    )
    kind: Literal["learned", "sinusoidal"] = Field(
        "learned",
        description="learned: a trained vector per position (KerasHub's PositionEmbedding); sinusoidal: the fixed "
        "sine/cosine table of 'Attention Is All You Need' (no parameters).",
    )
    mask_zero: bool = Field(True, description=_MASK_ZERO + " On by default here (Embedding's default is off).")
    embeddings_initializer: InitializerName = Field(
        "glorot_uniform", description="How the token and learned position vectors start."
    )


class ContextParams(LayerParams):
    """A layer that takes one input, or two (`inputs: [query, context]`): the second is what it attends to."""


_DROPOUT = "Dropout rate on the attention weights and each block's outputs (training only)."


@layer
class MultiHeadAttentionParams(ContextParams):
    """Multi-head attention over `[T, F]` → `[T, F]`: self-attention, or cross-attention with `inputs: [query, context]`."""

    type: Literal["MultiHeadAttention"]
    num_heads: PositiveInt = Field(description="Attention heads.")
    key_dim: PositiveInt = Field(description="Size of each head's query and key vectors.")
    value_dim: PositiveInt | None = Field(None, description="Size of each head's value vectors. Default: key_dim.")
    dropout: Annotated[float, Field(ge=0.0, lt=1.0, description="Dropout rate on the attention weights.")] = 0.0
    use_bias: bool = Field(True, description="Add a learned bias to the query, key, value and output projections.")
    causal: bool = Field(
        False, description="Each position attends only to itself and earlier positions (a language model's decoder)."
    )


class TransformerParams(LayerParams):
    """Keys of the Transformer blocks (KerasHub's `TransformerEncoder`/`TransformerDecoder`, stacked)."""

    num_heads: PositiveInt = Field(description="Attention heads (must divide the feature size F; key_dim = F / heads).")
    ff_dim: PositiveInt = Field(
        description="Hidden size of each block's feed-forward network (KerasHub's intermediate_dim)."
    )
    num_layers: PositiveInt = Field(1, description="Blocks stacked.")
    dropout: Annotated[float, Field(ge=0.0, lt=1.0, description=_DROPOUT)] = 0.1
    activation: Literal["relu", "gelu"] = Field("relu", description="Activation of the feed-forward network.")
    layer_norm_epsilon: Annotated[
        float, Field(gt=0.0, description="Added to the variance in each LayerNormalization.")
    ] = 1e-5
    normalize_first: bool = Field(
        False,
        description="Normalize before attention and feed-forward (pre-LN, as GPT-2) instead of after (post-LN, the "
        "original Transformer's and KerasHub's default).",
    )


@layer
class TransformerEncoderParams(TransformerParams):
    """Self-attention encoder blocks over `[T, F]` (F must divide by `num_heads`); add positions before it."""

    type: Literal["TransformerEncoder"]


@layer
class TransformerDecoderParams(TransformerParams, ContextParams):
    """Causal self-attention blocks over `[T, F]`; with `inputs: [sequence, encoder_output]` each block also attends to the encoder."""

    type: Literal["TransformerDecoder"]


# --- merge layers (built in dltrain.nn.merge) -------------------------------------------------


class MergeParams(LayerParams):
    """A layer that combines two or more inputs into one."""


@layer
class AddParams(MergeParams):
    """Sum of the inputs (a residual connection); equal shapes."""

    type: Literal["Add"]


@layer
class MultiplyParams(MergeParams):
    """Element-wise product of the inputs; equal shapes."""

    type: Literal["Multiply"]


@layer
class AverageParams(MergeParams):
    """Element-wise mean of the inputs; equal shapes."""

    type: Literal["Average"]


@layer
class MaximumParams(MergeParams):
    """Element-wise maximum of the inputs; equal shapes."""

    type: Literal["Maximum"]


@layer
class SubtractParams(MergeParams):
    """The first input minus the second; equal shapes."""

    type: Literal["Subtract"]


@layer
class ConcatenateParams(MergeParams):
    """Join the inputs along `axis`; every other axis must match."""

    type: Literal["Concatenate"]
    axis: int | None = Field(
        None,
        description="The axis to join along, without the batch; default: channels of [C, H, W] (0), the last axis "
        "of [T, F] and [F] (Keras's axis=-1).",
    )

"""Attention and positions: `PositionalEmbedding`, `MultiHeadAttention`, `TransformerEncoder`, `TransformerDecoder`.

Every attention runs through `F.scaled_dot_product_attention`, so a GPU picks its flash
kernel (causal, no padding mask) or its memory-efficient one (with a mask). A padding mask arrives as `mask=` (`[B, T]`, True at real
tokens; the model builder routes it, see `Built`), a cross-attention's context as
`context=` with its mask as `context_mask=`. Padded keys are never attended to, so the
outputs at real positions do not depend on how much padding follows them.

Parameter counts are Keras's: the query, key, value and output projections of Keras's
`MultiHeadAttention` (each with a bias), and KerasHub's `TransformerEncoder` and
`TransformerDecoder` blocks (attention with `key_dim = F / num_heads`, two
`LayerNormalization`s, a two-layer feed-forward network; the decoder adds a
cross-attention and its normalization when given an encoder's output).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..schema.layers import (
    MultiHeadAttentionParams,
    PositionalEmbeddingParams,
    TransformerDecoderParams,
    TransformerEncoderParams,
    TransformerParams,
)
from .activations import initialize
from .layers import _SEQUENCE_HINT, Built, LayerError, Shape, ShapeError, _expect_rank, register_layer, vocabulary


def attention_mask(key_mask: Optional[torch.Tensor], causal: bool, queries: int) -> Optional[torch.Tensor]:
    """The boolean mask `scaled_dot_product_attention` takes, `(B, 1, T, S)` (True: may attend); None without padding.

    A query that could attend to nothing (a sequence of padding only) attends to every
    key instead: an all-False row would make the softmax NaN, and its output is padding.
    """
    if key_mask is None:
        return None
    allowed = key_mask[:, None, None, :]  # (B, 1, 1, S)
    if causal:
        steps = torch.ones(queries, key_mask.shape[1], dtype=torch.bool, device=key_mask.device).tril()
        allowed = allowed & steps  # (B, 1, T, S)
    return allowed | ~allowed.any(dim=-1, keepdim=True)


class Attention(nn.Module):
    """Multi-head attention: projections of Keras's shape around one `scaled_dot_product_attention` call."""

    def __init__(
        self,
        dim: int,
        context_dim: int,
        heads: int,
        key_dim: int,
        value_dim: int,
        bias: bool,
        dropout: float,
        causal: bool,
    ) -> None:
        super().__init__()
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.dropout, self.causal = dropout, causal
        self.query = nn.Linear(dim, heads * key_dim, bias=bias)
        self.key = nn.Linear(context_dim, heads * key_dim, bias=bias)
        self.value = nn.Linear(context_dim, heads * value_dim, bias=bias)
        self.output = nn.Linear(heads * value_dim, dim, bias=bias)
        for linear in (self.query, self.key, self.value, self.output):
            initialize(linear.weight, "glorot_uniform")
            initialize(linear.bias, "zeros")

    def forward(
        self, x: torch.Tensor, context: Optional[torch.Tensor] = None, allowed: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        source = x if context is None else context
        batch, steps, keys = x.shape[0], x.shape[1], source.shape[1]
        q = self.query(x).view(batch, steps, self.heads, self.key_dim).transpose(1, 2)  # (B, h, T, k)
        k = self.key(source).view(batch, keys, self.heads, self.key_dim).transpose(1, 2)  # (B, h, S, k)
        v = self.value(source).view(batch, keys, self.heads, self.value_dim).transpose(1, 2)  # (B, h, S, v)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and allowed is None,
        )  # (B, h, T, v)
        out = out.transpose(1, 2).reshape(batch, steps, self.heads * self.value_dim)  # (B, T, h * v)
        return self.output(out)


class MultiHeadAttention(nn.Module):
    """The `MultiHeadAttention` layer: self-attention, or attention to `context` (cross-attention)."""

    def __init__(self, attention: Attention) -> None:
        super().__init__()
        self.attention = attention

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        context: Optional[torch.Tensor] = None,
        context_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        key_mask = mask if context is None else context_mask
        allowed = attention_mask(key_mask, self.attention.causal, x.shape[1])
        return self.attention(x, context, allowed)


def _context(shape: Shape | list[Shape], what: str) -> tuple[Shape, Shape | None]:
    """(query shape, context shape or None) from a builder's input: one shape, or [query, context]."""
    shapes = shape if isinstance(shape, list) else [shape]
    for given in shapes:
        _expect_rank(given, 2, "[T, F]", _SEQUENCE_HINT)
    if len(shapes) > 2:
        raise ShapeError(f"takes [{what}, context]; it was given {len(shapes)} inputs")
    return shapes[0], (shapes[1] if len(shapes) == 2 else None)


@register_layer(MultiHeadAttentionParams)
def multi_head_attention(p: MultiHeadAttentionParams, shape: Shape | list[Shape]) -> Built:
    """Multi-head attention over `[T, F]` → `[T, F]`: self-attention, or cross-attention with `inputs: [query, context]`."""
    query, context = _context(shape, "query")
    attention = Attention(
        query[1],
        (context or query)[1],
        p.num_heads,
        p.key_dim,
        p.value_dim or p.key_dim,
        p.use_bias,
        p.dropout,
        p.causal,
    )
    return Built(MultiHeadAttention(attention), query, takes_mask=True, keeps_mask=True)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.intermediate = nn.Linear(dim, hidden)
        self.output = nn.Linear(hidden, dim)
        self.gelu = activation == "gelu"
        for linear in (self.intermediate, self.output):
            initialize(linear.weight, "glorot_uniform")
            initialize(linear.bias, "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate(x)
        x = F.gelu(x) if self.gelu else F.relu(x)
        return self.output(x)


class _CrossAttention(nn.Module):
    """A decoder block's attention to the encoder's output, with its residual, dropout and normalization."""

    def __init__(self, attention: Attention, norm: nn.LayerNorm, dropout: float, normalize_first: bool) -> None:
        super().__init__()
        self.attention, self.norm, self.drop = attention, norm, nn.Dropout(dropout)
        self.normalize_first = normalize_first

    def forward(self, x: torch.Tensor, context: torch.Tensor, allowed: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm(x) if self.normalize_first else x, context, allowed))
        return x if self.normalize_first else self.norm(x)


class Block(nn.Module):
    """One KerasHub Transformer block: attention (causal in a decoder), cross-attention when given one, feed-forward.

    Each sub-layer is `x + dropout(sublayer(x))`, normalized after the sum (post-LN, the
    original Transformer's) or its input normalized first (`normalize_first`, GPT-2's).
    """

    def __init__(self, p: TransformerParams, dim: int, causal: bool, context_dim: Optional[int]) -> None:
        super().__init__()
        heads, eps, key_dim = p.num_heads, p.layer_norm_epsilon, dim // p.num_heads
        self.normalize_first = p.normalize_first
        self.attention = Attention(dim, dim, heads, key_dim, key_dim, True, p.dropout, causal)
        self.attention_norm = nn.LayerNorm(dim, eps=eps)
        self.cross = nn.ModuleList()  # empty, or the attention to an encoder's output
        if context_dim is not None:
            attention = Attention(dim, context_dim, heads, key_dim, key_dim, True, p.dropout, False)
            self.cross.append(_CrossAttention(attention, nn.LayerNorm(dim, eps=eps), p.dropout, p.normalize_first))
        self.feed_forward = _FeedForward(dim, p.ff_dim, p.activation)
        self.feed_forward_norm = nn.LayerNorm(dim, eps=eps)
        self.drop = nn.Dropout(p.dropout)

    def forward(
        self,
        x: torch.Tensor,
        allowed: Optional[torch.Tensor],
        context: Optional[torch.Tensor],
        context_allowed: Optional[torch.Tensor],
    ) -> torch.Tensor:
        first = self.normalize_first
        x = x + self.drop(self.attention(self.attention_norm(x) if first else x, None, allowed))
        x = x if first else self.attention_norm(x)
        if context is not None:
            for cross in self.cross:
                x = cross(x, context, context_allowed)
        x = x + self.drop(self.feed_forward(self.feed_forward_norm(x) if first else x))
        return x if first else self.feed_forward_norm(x)


class Transformer(nn.Module):
    """`num_layers` blocks; the attention masks are made once for the whole stack."""

    def __init__(self, blocks: list[Block], causal: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.causal = causal

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        context: Optional[torch.Tensor] = None,
        context_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        allowed = attention_mask(mask, self.causal, x.shape[1])
        context_allowed = attention_mask(context_mask, False, x.shape[1])
        for block in self.blocks:
            x = block(x, allowed, context, context_allowed)
        return x


def _transformer(p: TransformerParams, shape: Shape | list[Shape], causal: bool) -> Built:
    query, context = _context(shape, "sequence")
    if query[1] % p.num_heads:
        raise ShapeError(f"the feature size {query[1]} must be divisible by num_heads={p.num_heads}")
    context_dim = context[1] if context is not None else None
    blocks = [Block(p, query[1], causal, context_dim) for _ in range(p.num_layers)]
    return Built(Transformer(blocks, causal), query, takes_mask=True, keeps_mask=True)


@register_layer(TransformerEncoderParams)
def transformer_encoder(p: TransformerEncoderParams, shape: Shape | list[Shape]) -> Built:
    """Self-attention encoder blocks over `[T, F]` (F must divide by `num_heads`); add positions before it."""
    if isinstance(shape, list) and len(shape) > 1:
        raise ShapeError("takes one input (self-attention); TransformerDecoder or MultiHeadAttention take a context")
    return _transformer(p, shape, causal=False)


@register_layer(TransformerDecoderParams)
def transformer_decoder(p: TransformerDecoderParams, shape: Shape | list[Shape]) -> Built:
    """Causal self-attention blocks over `[T, F]`; with `inputs: [sequence, encoder_output]` each block also attends to the encoder."""
    return _transformer(p, shape, causal=True)


def sinusoids(length: int, dim: int, max_wavelength: float = 10000.0) -> torch.Tensor:
    """KerasHub's `SinePositionEncoding` table `(length, dim)`: sines at even features, cosines at odd ones."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    rates = max_wavelength ** (-(torch.arange(dim) // 2 * 2).float() / dim)  # (dim,)
    angles = position * rates  # (L, dim)
    return torch.where(torch.arange(dim) % 2 == 0, torch.sin(angles), torch.cos(angles))


class PositionalEmbedding(nn.Module):
    """Token vectors plus a vector per position (learned, or the fixed sinusoid table)."""

    def __init__(self, vocabulary: int, dim: int, max_length: int, learned: bool) -> None:
        super().__init__()
        self.token = nn.Embedding(vocabulary, dim)
        self.max_length = max_length
        if learned:
            self.position = nn.Parameter(torch.empty(max_length, dim))
        else:
            self.register_buffer("position", sinusoids(max_length, dim), persistent=False)  # (L, dim), not trained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[1] <= self.max_length, "the sequence is longer than the PositionalEmbedding's max_length")
        return self.token(x.long()) + self.position[: x.shape[1]]  # (B, T, dim)


@register_layer(PositionalEmbeddingParams)
def positional_embedding(p: PositionalEmbeddingParams, shape: Shape) -> Built:
    """Token ids `[T]` → token vector + position vector `[T, output_dim]`; masks padding (id 0) by default."""
    _expect_rank(shape, 1, "[T] (token ids)", "Give it a sequence of integer ids.")
    length = p.max_length or shape[0]
    if shape[0] > length:
        raise LayerError(f"takes sequences of up to max_length={length} tokens; the input has {shape[0]}")
    module = PositionalEmbedding(vocabulary(p.input_dim), p.output_dim, length, p.kind == "learned")
    initialize(module.token.weight, p.embeddings_initializer)
    if p.kind == "learned":
        initialize(module.position, p.embeddings_initializer)
    return Built(module, (shape[0], p.output_dim), makes_mask=p.mask_zero)

"""Attention, positions and the padding mask: Keras's parameter counts, padding that changes no
prediction (classification and a language model, plain lists and graphs), causality, and export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_config

from dltrain.config import validate
from dltrain.export import Deployable, write_checked
from dltrain.nn.attention import sinusoids
from dltrain.nn.model import BuiltModel, build_model

VOCAB, LENGTH, CLASSES = 40, 12, 3
SENTENCE = torch.tensor([[5, 9, 17, 3, 22, 8, 31]])  # 7 real tokens (ids > 0)


def config(layers: list[dict[str, Any]], lm: bool = False, **model: Any) -> dict[str, Any]:
    """A config around `layers`: classification of id sequences, or a language model's next tokens."""
    data: dict[str, Any] = {"source": "synthetic", "num_samples": 8, "shape": [LENGTH], "num_classes": CLASSES}
    if lm:
        data = {"source": "text_file", "path": "unused.txt", "sequence_length": LENGTH}
    return {
        "name": "attention",
        "seed": 0,
        "data": data,
        "model": {"layers": layers, **model},
        "compile": {"loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": 1, "device": "cpu"},
    }


def build(layers: list[dict[str, Any]], lm: bool = False, vocab: int | None = VOCAB, **model: Any) -> BuiltModel:
    torch.manual_seed(0)
    width = VOCAB if lm else CLASSES
    return build_model(validate(config(layers, lm, **model), "t.yaml"), (LENGTH,), width, vocab_size=vocab)


def padded(ids: torch.Tensor, length: int) -> torch.Tensor:
    """`ids` followed by padding (id 0) up to `length` tokens."""
    return torch.cat([ids, torch.zeros(ids.shape[0], length - ids.shape[1], dtype=ids.dtype)], dim=1)


def count(built: BuiltModel) -> list[int]:
    return [row.params for row in built.summary]


# --- parameter counts equal Keras's -------------------------------------------------------


def test_multi_head_attention_and_layer_normalization_count_as_keras() -> None:
    built = build(
        [
            {"type": "Embedding", "output_dim": 16},
            {"type": "MultiHeadAttention", "num_heads": 4, "key_dim": 8},
            {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 5, "value_dim": 3, "use_bias": False},
            {"type": "LayerNormalization"},
            {"type": "GlobalAveragePooling1D"},
            {"type": "Dense", "units": "auto"},
        ]
    )
    # Keras MultiHeadAttention(num_heads=h, key_dim=k, value_dim=v) on features F: query and key
    # kernels F*h*k (+ biases h*k), value F*h*v (+ h*v), output h*v*F (+ F).
    # h=4, k=v=8, F=16: 3 * (16*32 + 32) + (32*16 + 16) = 3 * 544 + 528 = 2160
    # h=2, k=5, v=3, no biases: 16*10 + 16*10 + 16*6 + 6*16 = 512
    # LayerNormalization(F=16): gamma and beta, 2 * 16 = 32. Embedding: 40 * 16 = 640.
    assert count(built) == [640, 2160, 512, 32, 0, 16 * CLASSES + CLASSES]


def test_transformer_blocks_count_as_keras_hub() -> None:
    built = build(
        [
            {"type": "PositionalEmbedding", "output_dim": 16, "name": "embed"},
            {"type": "TransformerEncoder", "num_heads": 2, "ff_dim": 32, "name": "encoder"},
            {"type": "TransformerEncoder", "num_heads": 4, "ff_dim": 8, "num_layers": 3},
            {"type": "TransformerDecoder", "num_heads": 2, "ff_dim": 32},
            {"type": "TransformerDecoder", "num_heads": 2, "ff_dim": 32, "inputs": [-1, "encoder"]},
            {"type": "GlobalAveragePooling1D"},
            {"type": "Dense", "units": "auto"},
        ]
    )
    # KerasHub TokenAndPositionEmbedding(vocabulary_size=40, sequence_length=12, embedding_dim=16):
    # 40*16 + 12*16 = 832.
    # KerasHub TransformerEncoder(intermediate_dim=ff, num_heads=h) on F features (key_dim = F/h):
    #   attention 4*F*F + 4*F, two LayerNormalizations 2*2*F, feed-forward F*ff + ff + ff*F + F.
    #   F=16, ff=32: (1024 + 64) + 64 + (512 + 32 + 512 + 16) = 2224
    #   F=16, ff=8:  (1024 + 64) + 64 + (128 + 8 + 128 + 16) = 1432, three blocks: 4296
    # KerasHub TransformerDecoder without an encoder sequence: the same as the encoder, 2224;
    # with one (F_enc = 16) it adds a cross-attention (4*F*F + 4*F = 1088) and its LayerNormalization (32): 3344.
    assert count(built) == [832, 2224, 4296, 2224, 3344, 0, 16 * CLASSES + CLASSES]


def test_sinusoidal_positions_have_no_parameters_and_keras_hub_values() -> None:
    built = build([{"type": "PositionalEmbedding", "output_dim": 8, "kind": "sinusoidal"}, *HEAD])
    assert count(built)[0] == VOCAB * 8
    table = sinusoids(50, 8)
    # KerasHub SinePositionEncoding: position p, feature i: sin (even i) or cos (odd i) of p / 10000^(2*(i//2)/d)
    p, i = 7, 5
    assert table[p, i] == pytest.approx(torch.cos(torch.tensor(p / 10000 ** (2 * (i // 2) / 8))).item(), abs=1e-6)
    assert table[p, 4] == pytest.approx(torch.sin(torch.tensor(p / 10000 ** (4 / 8))).item(), abs=1e-6)


HEAD = [{"type": "GlobalAveragePooling1D"}, {"type": "Dense", "units": "auto", "activation": "softmax"}]


# --- padding changes no prediction -----------------------------------------------------------


CLASSIFIERS: dict[str, list[dict[str, Any]]] = {
    "encoder": [
        {"type": "PositionalEmbedding", "output_dim": 16},
        {"type": "TransformerEncoder", "num_heads": 2, "ff_dim": 32, "num_layers": 2},
        {"type": "Dense", "units": 16, "activation": "relu"},
        *HEAD,
    ],
    "residual_graph": [
        {"type": "PositionalEmbedding", "output_dim": 16, "kind": "sinusoidal", "name": "embed"},
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 8, "name": "attend"},
        {"type": "Add", "inputs": ["embed", "attend"]},
        {"type": "LayerNormalization"},
        *HEAD,
    ],
    "cross_attention": [
        {"type": "Embedding", "output_dim": 16, "mask_zero": True, "name": "embed"},
        {"type": "TransformerEncoder", "num_heads": 2, "ff_dim": 16, "name": "encoder"},
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 8, "inputs": ["embed", "encoder"]},
        {"type": "TransformerDecoder", "num_heads": 2, "ff_dim": 16, "inputs": [-1, "encoder"]},
        *HEAD,
    ],
    "lstm": [
        {"type": "Embedding", "output_dim": 8, "mask_zero": True},
        {"type": "LSTM", "units": 8, "return_sequences": True},
        {"type": "GRU", "units": 8},
        {"type": "Dense", "units": "auto"},
    ],
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_padding_changes_no_class_prediction(name: str) -> None:
    network = build(CLASSIFIERS[name]).network.eval()
    with torch.no_grad():
        outputs = [network(padded(SENTENCE, length)) for length in (7, 9, LENGTH)]
    for other in outputs[1:]:
        torch.testing.assert_close(other, outputs[0], atol=1e-5, rtol=1e-5)


def test_without_mask_zero_padding_does_change_the_prediction() -> None:
    """The control: the same model, but its embedding does not mask, sees the padding."""
    layers = [{**CLASSIFIERS["encoder"][0], "mask_zero": False}, *CLASSIFIERS["encoder"][1:]]
    network = build(layers).network.eval()
    with torch.no_grad():
        short, long = network(padded(SENTENCE, 7)), network(padded(SENTENCE, LENGTH))
    assert (short - long).abs().max() > 1e-3


LANGUAGE_MODEL = [
    {"type": "PositionalEmbedding", "output_dim": 16},
    {"type": "TransformerDecoder", "num_heads": 2, "ff_dim": 32, "num_layers": 2, "normalize_first": True},
    {"type": "LayerNormalization"},
    {"type": "Dense", "units": "auto"},
]


def test_language_model_logits_at_real_positions_ignore_padding() -> None:
    network = build(LANGUAGE_MODEL, lm=True).network.eval()
    with torch.no_grad():
        logits = [network(padded(SENTENCE, length))[:, :7] for length in (7, 10, LENGTH)]  # (1, 7, V)
    assert logits[0].shape == (1, 7, VOCAB)
    for other in logits[1:]:
        torch.testing.assert_close(other, logits[0], atol=1e-5, rtol=1e-5)


def test_decoder_is_causal() -> None:
    """A position's logits do not depend on any later token (what a language model must not see)."""
    network = build(LANGUAGE_MODEL, lm=True).network.eval()
    changed = padded(SENTENCE, LENGTH).clone()
    changed[0, 4:7] = torch.tensor([1, 2, 3])
    with torch.no_grad():
        before, after = network(padded(SENTENCE, LENGTH)), network(changed)
    torch.testing.assert_close(after[:, :4], before[:, :4])
    assert (after[:, 4:7] - before[:, 4:7]).abs().max() > 1e-3


def test_a_sequence_of_padding_only_gives_numbers_not_nan() -> None:
    network = build(CLASSIFIERS["cross_attention"]).network.eval()
    with torch.no_grad():
        assert torch.isfinite(network(torch.zeros(2, LENGTH, dtype=torch.long))).all()


def test_the_mask_is_routed_without_wiring_and_a_plain_list_without_one_stays_sequential() -> None:
    masked = build(CLASSIFIERS["encoder"])
    code = masked.network.layers.code  # the generated forward
    assert "!= 0" in code and code.count("mask = ") == 2  # the encoder and the pooling
    assert not masked.wired  # still shown as a plain list
    unmasked = build([{"type": "Embedding", "output_dim": 4}, {"type": "Flatten"}, {"type": "Dense", "units": 3}])
    assert isinstance(unmasked.network.layers, torch.nn.Sequential)


def test_a_layer_that_drops_the_time_axis_stops_the_mask_with_a_note() -> None:
    built = build([{"type": "Embedding", "output_dim": 4, "mask_zero": True}, {"type": "Flatten"}, HEAD[1]])
    assert any("stops at flatten_1 (layer 1)" in note for note in built.notes), built.notes


# --- defaults from the data, and mistakes ------------------------------------------------


def test_input_dim_and_units_auto_come_from_the_data() -> None:
    built = build([{"type": "Embedding", "output_dim": 4}, *HEAD], vocab=77)
    assert built.summary[0].params == 77 * 4
    assert built.summary[-1].output_shape == (CLASSES,)


def test_input_dim_without_a_tokenizer_is_a_located_error(cli, tmp_path: Path) -> None:
    result = cli("check", write_config(tmp_path, config([{"type": "PositionalEmbedding", "output_dim": 4}, *HEAD])))
    assert result.exit_code == 2
    assert "model.layers[0]" in result.output and "needs input_dim" in result.output
    assert "Traceback" not in result.output


def test_a_third_input_to_attention_is_a_located_error(cli, tmp_path: Path) -> None:
    layers = [
        {"type": "Embedding", "input_dim": VOCAB, "output_dim": 8, "name": "a"},
        {"type": "Dense", "units": 8, "name": "b"},
        {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 4, "inputs": ["a", "b", "a"]},
        {"type": "Dense", "units": 4, "inputs": ["a", "b"]},
        *HEAD,
    ]
    result = cli("check", write_config(tmp_path, config(layers)))
    assert result.exit_code == 2
    assert "MultiHeadAttention (layer 2) takes [query, context]; it was given 3" in result.output
    assert "Dense (layer 3) takes one input; it was given 2" in result.output


def test_a_sequence_longer_than_max_length_is_a_located_error(cli, tmp_path: Path) -> None:
    layers = [{"type": "PositionalEmbedding", "input_dim": VOCAB, "output_dim": 4, "max_length": 8}, *HEAD]
    result = cli("check", write_config(tmp_path, config(layers)))
    assert result.exit_code == 2
    assert "up to max_length=8 tokens; the input has 12" in result.output


# --- export -------------------------------------------------------------------------------------


EXPORTED = [  # every new layer, padding masks (self and cross) and a causal decoder attending to an encoder
    {"type": "PositionalEmbedding", "output_dim": 16, "name": "embed"},
    {"type": "TransformerEncoder", "num_heads": 2, "ff_dim": 16, "name": "encoder"},
    {"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 8, "causal": True, "inputs": ["embed", "encoder"]},
    {"type": "TransformerDecoder", "num_heads": 2, "ff_dim": 16, "normalize_first": True, "inputs": [-1, "encoder"]},
    {"type": "LayerNormalization"},
    *HEAD,
]


@pytest.mark.parametrize("fmt", ["onnx", "pt2", "torchscript"])
def test_attention_models_export_and_match(fmt: str, tmp_path: Path) -> None:
    """Exported with padding in the sample, reloaded as a user would, and compared with PyTorch."""
    sample = torch.cat([padded(SENTENCE, LENGTH), torch.randint(1, VOCAB, (2, LENGTH))])
    built = build(EXPORTED)
    module = Deployable(built.network, built.summary[-1].output_shape).eval()
    assert write_checked(fmt, module, module, sample, tmp_path / f"model.{fmt}") < 1e-4

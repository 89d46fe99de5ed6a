"""Model building: Keras parameter counts, every layer's shapes, initializers, logits."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_config

from dltrain.config import validate
from dltrain.nn.layers import LAYERS
from dltrain.nn.merge import MergeParams
from dltrain.nn.model import build_model


def synthetic_config(shape: list[int], layers: list[dict[str, Any]], classes: int = 10) -> dict[str, Any]:
    return {
        "name": "shapes",
        "seed": 0,
        "data": {"source": "synthetic", "num_samples": 20, "shape": shape, "num_classes": classes},
        "model": {"layers": layers},
        "compile": {"loss": "categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 1, "device": "cpu"},
    }


def check_json(cli, tmp_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    result = cli("check", write_config(tmp_path, config), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_tutorial_dense_model_has_keras_parameter_count(cli, tmp_path: Path) -> None:
    summary = check_json(
        cli,
        tmp_path,
        synthetic_config(
            [784],
            [
                {"type": "Dense", "units": 64, "activation": "relu"},
                {"type": "Dense", "units": 32, "activation": "relu"},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ],
        ),
    )
    assert summary["total_params"] == 52_650
    assert [layer["params"] for layer in summary["layers"]] == [50_240, 2_080, 330]
    assert [layer["output_shape"] for layer in summary["layers"]] == [[64], [32], [10]]


def test_tutorial_cnn_has_keras_parameter_count_channels_first(cli, tmp_path: Path) -> None:
    summary = check_json(
        cli,
        tmp_path,
        synthetic_config(
            [3, 64, 64],
            [
                {"type": "Conv2D", "filters": 32, "kernel_size": [3, 3], "activation": "relu"},
                {"type": "MaxPooling2D", "pool_size": [2, 2]},
                {"type": "Flatten"},
                {"type": "Dense", "units": 128, "activation": "relu"},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ],
        ),
    )
    assert summary["total_params"] == 3_938_570
    assert summary["layers"][0]["output_shape"] == [32, 62, 62]
    assert summary["layers"][2]["output_shape"] == [30752]


def test_tutorial_rnn_has_keras_parameter_count(cli, tmp_path: Path) -> None:
    config = synthetic_config(
        [100, 1],
        [
            {"type": "SimpleRNN", "units": 50, "activation": "relu"},
            {"type": "Dense", "units": 1},
        ],
    )
    config["data"] = {"source": "synthetic", "num_samples": 10, "shape": [100, 1], "regression": True}
    config["compile"] = {"loss": "mse"}
    summary = check_json(cli, tmp_path, config)
    # Keras: 50*(1+50+1) = 2,600 (one bias vector, not PyTorch's two) and Dense 51.
    assert summary["layers"][0]["params"] == 2_600
    assert summary["layers"][1]["params"] == 51
    config["model"]["layers"][0]["recurrent_bias"] = True  # PyTorch's second bias, on request
    assert check_json(cli, tmp_path, config)["layers"][0]["params"] == 2_650


@pytest.mark.parametrize("layer", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_parameter_counts_follow_keras_formulas(cli, tmp_path: Path, layer: str, bidirectional: bool) -> None:
    units, features = 6, 5
    keras = {  # keras.layers.<layer>(units).count_params() on [T, features] inputs (GRU: reset_after=True)
        "SimpleRNN": units * (features + units + 1),
        "LSTM": 4 * units * (features + units + 1),
        "GRU": 3 * units * (features + units + 2),
    }[layer] * (2 if bidirectional else 1)
    config = synthetic_config(
        [7, features],
        [
            {"type": layer, "units": units, "bidirectional": bidirectional},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ],
    )
    assert check_json(cli, tmp_path, config)["layers"][0]["params"] == keras


# One example per registered layer: (params, input shape, expected output shape).
LAYER_CASES: dict[str, tuple[dict[str, Any], list[int], list[int]]] = {
    "Dense": ({"units": 7}, [5, 3], [5, 7]),
    "Flatten": ({}, [2, 3, 4], [24]),
    "Reshape": ({"target_shape": [4, -1]}, [24], [4, 6]),
    "Dropout": ({"rate": 0.3}, [6], [6]),
    "Activation": ({"activation": "gelu"}, [6], [6]),
    "BatchNormalization": ({}, [3, 5, 5], [3, 5, 5]),
    "LayerNormalization": ({}, [5, 4], [5, 4]),
    "Conv2D": ({"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, [1, 7, 7], [4, 4, 4]),
    "Conv1D": ({"filters": 6, "kernel_size": 3, "padding": "same"}, [9, 2], [9, 6]),
    "MaxPooling2D": ({"pool_size": 2}, [3, 9, 8], [3, 4, 4]),
    "AveragePooling2D": ({"pool_size": 3, "strides": 1}, [2, 5, 5], [2, 3, 3]),
    "MaxPooling1D": ({"pool_size": 2}, [9, 3], [4, 3]),
    "GlobalAveragePooling2D": ({}, [5, 4, 4], [5]),
    "GlobalAveragePooling1D": ({}, [7, 3], [3]),
    "SimpleRNN": ({"units": 5, "return_sequences": True}, [6, 2], [6, 5]),
    "LSTM": ({"units": 4, "bidirectional": True}, [6, 2], [8]),
    "GRU": ({"units": 3}, [6, 2], [3]),
    "Embedding": ({"input_dim": 20, "output_dim": 4}, [6], [6, 4]),
    "PositionalEmbedding": ({"input_dim": 20, "output_dim": 4, "kind": "sinusoidal"}, [6], [6, 4]),
    "MultiHeadAttention": ({"num_heads": 2, "key_dim": 3, "causal": True}, [5, 4], [5, 4]),
    "TransformerEncoder": ({"num_heads": 2, "ff_dim": 8}, [5, 4], [5, 4]),
    "TransformerDecoder": ({"num_heads": 2, "ff_dim": 8, "num_layers": 2}, [5, 4], [5, 4]),
    "VGG16": ({"weights": None}, [3, 32, 48], [512, 1, 1]),
    "Backbone": ({"name": "resnet18", "weights": None}, [3, 64, 64], [512, 2, 2]),
}


def test_every_registered_layer_has_a_shape_case() -> None:
    merges = {e.name for e in LAYERS if issubclass(e.params, MergeParams)}  # cases in test_graph.py
    missing = set(LAYERS.names()) - set(LAYER_CASES) - merges
    assert not missing, f"add a case to LAYER_CASES (or a test module of its own) for: {missing}"


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_declared_shape_matches_forward(name: str) -> None:
    params, in_shape, out_shape = LAYER_CASES[name]
    entry = LAYERS.get(name)
    built = entry.obj(entry.params.model_validate({"type": name, **params}), tuple(in_shape))
    assert list(built.shape) == out_shape
    x = torch.randint(0, 20, (2, *in_shape)) if name.endswith("Embedding") else torch.randn(2, *in_shape)
    built.module.eval()
    assert list(built.module(x).shape) == [2, *out_shape]


def test_dense_starts_with_keras_glorot_uniform_and_zero_bias() -> None:
    entry = LAYERS.get("Dense")
    built = entry.obj(entry.params.model_validate({"type": "Dense", "units": 300}), (200,))
    weight, bias = built.module.weight, built.module.bias
    limit = math.sqrt(6 / (200 + 300))
    assert weight.abs().max() <= limit
    assert weight.abs().max() > 0.95 * limit  # uniform over the whole range, not PyTorch's kaiming
    assert torch.count_nonzero(bias) == 0


def test_final_softmax_is_split_off_and_applied_only_to_outputs(tmp_path: Path) -> None:
    raw = synthetic_config([6], [{"type": "Dense", "units": 3, "activation": "softmax"}], classes=3)
    loaded = validate(raw, "t.yaml")
    built = build_model(loaded, (6,), 3)
    assert built.network.output_activation == "softmax"
    logits = built.network(torch.randn(4, 6) * 10)
    assert not torch.allclose(logits.sum(dim=1), torch.ones(4))
    assert torch.allclose(built.network.probabilities(logits).sum(dim=1), torch.ones(4))
    assert not any(isinstance(m, torch.nn.Softmax) for m in built.network.modules())


def test_softmax_is_kept_for_non_cross_entropy_losses() -> None:
    raw = synthetic_config([6], [{"type": "Dense", "units": 3, "activation": "softmax"}], classes=3)
    raw["data"] = {"source": "synthetic", "num_samples": 10, "shape": [6], "regression": True, "outputs": 3}
    raw["compile"] = {"loss": "mse"}
    built = build_model(validate(raw, "t.yaml"), (6,), 3)
    assert built.network.output_activation is None
    assert any(isinstance(m, torch.nn.Softmax) for m in built.network.modules())

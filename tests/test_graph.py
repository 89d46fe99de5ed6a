"""Graph models (SPEC §6): named inputs, merge layers, Keras parameter counts, located wiring errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_config
from torch import nn

from dltrain import api
from dltrain.nn.layers import LAYERS
from dltrain.nn.merge import MergeParams


def digits_graph(layers: list[dict[str, Any]], **model: Any) -> dict[str, Any]:
    return {
        "name": "graph",
        "seed": 0,
        "data": {"source": "digits", "as_image": True, "normalize": "scale"},
        "model": {"layers": layers, **model},
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.01},
            "loss": "categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": 2, "batch_size": 64, "validation_split": 0.2, "device": "cpu"},
    }


RESIDUAL = [
    {"name": "c0", "type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"name": "c1", "type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"name": "c2", "type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same"},
    {"name": "res", "type": "Add", "inputs": ["c0", "c2"]},
    {"type": "GlobalAveragePooling2D"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


def check_json(cli, tmp_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    result = cli("check", write_config(tmp_path, config), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_residual_block_has_keras_parameter_count_and_inputs(cli, tmp_path: Path) -> None:
    summary = check_json(cli, tmp_path, digits_graph(RESIDUAL))
    # Keras: Conv2D params = kh*kw*in_channels*filters + filters; Add, pooling: 0; Dense = in*units + units
    expected = [3 * 3 * 1 * 8 + 8, 3 * 3 * 8 * 8 + 8, 3 * 3 * 8 * 8 + 8, 0, 0, 8 * 10 + 10]  # 80, 584, 584, 0, 0, 90
    assert [layer["params"] for layer in summary["layers"]] == expected
    assert summary["total_params"] == 1338
    assert summary["layers"][3]["inputs"] == ["c0", "c2"]
    assert summary["layers"][0]["inputs"] == ["input"] and summary["layers"][0]["name"] == "c0"
    assert summary["layers"][3]["output_shape"] == [8, 8, 8]


def test_inception_pair_has_keras_parameter_count(cli, tmp_path: Path) -> None:
    layers = [
        {"name": "a", "type": "Conv2D", "filters": 4, "kernel_size": 1, "activation": "relu", "inputs": "input"},
        {"name": "b", "type": "Conv2D", "filters": 6, "kernel_size": 3, "padding": "same", "inputs": "input"},
        {"name": "cat", "type": "Concatenate", "inputs": ["a", "b"]},  # channels: 4 + 6
        {"type": "Conv2D", "filters": 4, "kernel_size": 1},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]
    summary = check_json(cli, tmp_path, digits_graph(layers))
    # 1x1 conv: 1*1*1*4+4 = 8; 3x3 conv: 3*3*1*6+6 = 60; concat: 0; 1x1 conv on 10 channels: 10*4+4 = 44;
    # flatten 4*8*8 = 256; Dense: 256*10+10 = 2570
    assert [layer["params"] for layer in summary["layers"]] == [8, 60, 0, 44, 0, 2570]
    assert summary["total_params"] == 8 + 60 + 44 + 2570
    assert summary["layers"][2]["output_shape"] == [10, 8, 8]


def test_plain_list_is_the_sequential_it_was(tmp_path: Path) -> None:
    layers = [
        {"type": "Flatten"},
        {"type": "Dense", "units": 16, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]
    plain = api.check(write_config(tmp_path, digits_graph(layers), "plain.yaml"))[1]
    explicit = [{**layers[0], "inputs": "input"}, {**layers[1], "inputs": -1}, {**layers[2], "inputs": [-1]}]
    wired = api.check(write_config(tmp_path, digits_graph(explicit), "explicit.yaml"))[1]
    for built in (plain, wired):
        assert type(built.network.layers) is nn.Sequential and not built.wired
    assert list(plain.network.state_dict()) == list(wired.network.state_dict())
    graph = api.check(write_config(tmp_path, digits_graph(RESIDUAL), "res.yaml"))[1]
    assert isinstance(graph.network.layers, torch.fx.GraphModule) and graph.wired


def test_residual_model_trains_resumes_exactly_and_exports(cli, tmp_path: Path) -> None:
    config = digits_graph(RESIDUAL)
    three = write_config(tmp_path, {**config, "fit": {**config["fit"], "epochs": 3}}, "three.yaml")
    two = write_config(tmp_path, config, "two.yaml")
    assert cli("fit", three, "--run-dir", "full").exit_code == 0
    assert cli("fit", two, "--run-dir", "part").exit_code == 0
    resumed = cli("fit", "--resume", "part", "--set", "fit.epochs=3")
    assert resumed.exit_code == 0, resumed.output
    full = torch.load("full/last.pt", weights_only=True)
    part = torch.load("part/last.pt", weights_only=True)
    assert [r["loss"] for r in full["history"]] == [r["loss"] for r in part["history"]]
    for key, value in full["model"].items():
        assert torch.equal(value, part["model"][key]), key
    assert full["history"][-1]["val_loss"] < full["history"][0]["val_loss"] - 0.1  # it learns
    report = cli("evaluate", "full", "--json")
    assert report.exit_code == 0 and "confusion_matrix" in json.loads(report.stdout)
    for fmt in ("onnx", "torchscript"):
        exported = cli("export", "full", "--format", fmt, "-o", f"model.{fmt}")
        assert exported.exit_code == 0, exported.output


GOOD = """\
seed: 0
data: {source: digits, as_image: true}
model:
  layers:
    - {name: c1, type: Conv2D, filters: 4, kernel_size: 3, padding: same}
    - {name: c2, type: Conv2D, filters: 4, kernel_size: 3, padding: same}
    - {name: res, type: Add, inputs: [c1, c2]}
    - {name: flat, type: Flatten}
    - {name: out, type: Dense, units: 10, activation: softmax}
compile: {loss: categorical_crossentropy}
"""

MALFORMED = {
    "unknown name": (("inputs: [c1, c2]", "inputs: [c1, c3]"), 7, "'c3', which names no model input or earlier layer"),
    "forward reference": (
        (
            "padding: same}\n    - {name: c2, type: Conv2D, filters: 4, kernel_size: 3, padding: same}",
            "padding: same, inputs: c2}\n    - {name: c2, type: Conv2D, filters: 4, kernel_size: 3, "
            "padding: same, inputs: input}",
        ),
        5,
        "defined later (layer 1, config.yaml:6)",
    ),
    "cycle": (("padding: same}\n    - {name: res", "padding: same, inputs: res}\n    - {name: res"), 6, "a cycle"),
    "dead branch": (
        ("{name: flat, type: Flatten}", "{name: flat, type: Flatten, inputs: c1}"),
        7,
        "reaches no model output",
    ),
    "merge shapes": (
        ("name: c2, type: Conv2D, filters: 4", "name: c2, type: Conv2D, filters: 5"),
        7,
        "c1 [4, 8, 8], c2 [5, 8, 8]",
    ),
    "merge without inputs": (
        ("{name: res, type: Add, inputs: [c1, c2]}", "{name: res, type: Add}"),
        7,
        "name them, e.g. inputs: [a, b]",
    ),
    "duplicate name": (("name: c2, type: Conv2D", "name: c1, type: Conv2D"), 6, "already names layer 0"),
    "unknown output": (("compile:", "  outputs: [outt]\ncompile:"), 10, "Did you mean 'out'?"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_graph_exits_2_naming_the_line(cli, tmp_path: Path, case: str) -> None:
    (old, new), line, message = MALFORMED[case]
    assert old in GOOD
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    result = cli("check", path)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"config.yaml:{line}" in text and message in text, text


def test_the_good_graph_checks(cli, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(GOOD)
    result = cli("check", tmp_path / "config.yaml")
    assert result.exit_code == 0, result.output
    assert "c1, c2" in result.output


# One example per merge layer: (params, input shapes, expected output shape, expected value from 1s, 2s, 4s...).
MERGE_CASES: dict[str, tuple[dict[str, Any], list[list[int]], list[int], float]] = {
    "Add": ({}, [[3, 4], [3, 4], [3, 4]], [3, 4], 1 + 2 + 4),
    "Subtract": ({}, [[5], [5]], [5], 1 - 2),
    "Multiply": ({}, [[2, 2, 2], [2, 2, 2]], [2, 2, 2], 1 * 2),
    "Average": ({}, [[5], [5], [5]], [5], (1 + 2 + 4) / 3),
    "Maximum": ({}, [[5], [5]], [5], 2),
    "Concatenate": ({}, [[2, 4, 4], [3, 4, 4]], [5, 4, 4], 1),  # default axis: the channels of [C, H, W]
}


def test_every_merge_layer_has_a_case() -> None:
    assert {e.name for e in LAYERS if issubclass(e.params, MergeParams)} == set(MERGE_CASES)


@pytest.mark.parametrize("name", sorted(MERGE_CASES))
def test_merge_layer_shape_and_value(name: str) -> None:
    params, shapes, out_shape, first = MERGE_CASES[name]
    entry = LAYERS.get(name)
    built = entry.obj(entry.params.model_validate({"type": name, **params}), [tuple(s) for s in shapes])
    assert list(built.shape) == out_shape
    out = built.module([torch.full((2, *s), 2.0**i) for i, s in enumerate(shapes)])
    assert list(out.shape) == [2, *out_shape]
    assert out.flatten()[0].item() == pytest.approx(first)


def test_concatenate_axis_counts_without_the_batch() -> None:
    entry = LAYERS.get("Concatenate")
    built = entry.obj(entry.params.model_validate({"type": "Concatenate", "axis": 0}), [(3, 2), (4, 2)])
    assert built.shape == (7, 2)
    assert built.module([torch.zeros(1, 3, 2), torch.ones(1, 4, 2)]).shape == (1, 7, 2)


def test_resnet_preset_trains_and_check_plots_it(cli, tmp_path: Path) -> None:
    from conftest import CONFIGS

    plotted = cli("check", CONFIGS / "digits_resnet.yaml", "--plot", "model.png")
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "model.png").read_bytes()[:4] == b"\x89PNG"
    run = api.fit(CONFIGS / "digits_resnet.yaml", ["fit.epochs=3", "fit.device=cpu"], run_dir="resnet")
    assert run.history[-1]["accuracy"] > 0.6 and run.history[-1]["val_accuracy"] > 0.4


def test_ddp_on_a_graph_model_equals_one_process(cli, tmp_path: Path) -> None:
    from conftest import tiny_digits_config
    from test_distributed import PER_RANK, RANK_ENV, assert_same_epochs, history

    def graph_config(batch_size: int) -> dict[str, Any]:
        config = tiny_digits_config(batch_size=batch_size)
        config["model"]["layers"] = [
            {"name": "a", "type": "Dense", "units": 32, "activation": "relu"},
            {"name": "b", "type": "Dense", "units": 32, "activation": "relu"},
            {"type": "Add", "inputs": ["a", "b"]},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ]
        return config

    single = write_config(tmp_path, graph_config(2 * PER_RANK), "single.yaml")
    assert cli("fit", single, "--run-dir", tmp_path / "one").exit_code == 0
    double = write_config(tmp_path, graph_config(PER_RANK), "double.yaml")
    ddp = cli.subprocess(
        "fit", double, "--devices", "2", "--device", "cpu", "--run-dir", tmp_path / "two", cwd=tmp_path, env=RANK_ENV
    )
    assert ddp.returncode == 0, ddp.stderr
    assert_same_epochs(history(tmp_path / "two"), history(tmp_path / "one"))


def test_backbone_takes_arch_and_its_name_names_the_node() -> None:
    from dltrain.config import validate

    def backbone(**keys: Any) -> Any:
        raw = digits_graph(
            [
                {"type": "Backbone", "weights": None, **keys},
                {"type": "Flatten"},
                {"type": "Dense", "units": 10, "activation": "softmax"},
            ]
        )
        return validate(raw, "t.yaml").config.model.layers[0]

    named = backbone(arch="resnet18", name="body")
    assert (named.arch, named.name) == ("resnet18", "body")
    assert backbone(name="resnet18").arch == "resnet18"  # the form from before graphs still reads

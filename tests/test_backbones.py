"""Transfer learning: VGG16 and torchvision backbones, weight files, freezing, unfreezing, cached features.

There is no network here: each test writes the weight files it needs (torchvision's
keys and shapes, random values), into a path or into a temporary TORCH_HOME cache.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from conftest import write_config
from safetensors.torch import save_file

from dltrain.train.checkpoint import load


def torchvision_state(name: str, part: str | None = None) -> dict[str, torch.Tensor]:
    """Random weights with the keys and shapes of torchvision's `name` (only `part`, when given)."""
    with torch.device("meta"):
        model = torchvision.models.get_model(name)
    module = getattr(model, part) if part else model
    module.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in module.state_dict().items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=generator) * 0.05
            value = noise.abs() + 0.5 if key.endswith("running_var") else noise
        else:
            value = torch.zeros_like(value)
        state[f"{part}.{key}" if part else key] = value
    return state


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "vgg16_features.pth"
    torch.save(torchvision_state("vgg16", "features"), path)
    return path


@pytest.fixture(scope="module")
def resnet18_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same random ResNet-18 (non-trivial BatchNorm statistics) as .pth and as .safetensors."""
    folder = tmp_path_factory.mktemp("weights")
    state = torchvision_state("resnet18")
    torch.save(state, folder / "resnet18.pth")
    save_file(state, str(folder / "resnet18.safetensors"))
    return folder / "resnet18.pth", folder / "resnet18.safetensors"


def config(layer: dict[str, Any], head: list[dict[str, Any]] | None = None, **fit: Any) -> dict[str, Any]:
    return {
        "name": "transfer",
        "seed": 0,
        "data": {"source": "synthetic", "num_samples": 60, "shape": [3, 32, 32], "num_classes": 3},
        "model": {
            "layers": [
                layer,
                *(
                    head
                    or [
                        {"type": "Flatten"},
                        {"type": "Dense", "units": 16, "activation": "relu"},
                        {"type": "Dropout", "rate": 0.2},
                        {"type": "Dense", "units": 3, "activation": "softmax"},
                    ]
                ),
            ]
        },
        "compile": {"loss": "categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 2, "batch_size": 16, "validation_split": 0.25, "device": "cpu", **fit},
    }


def check_json(cli, path: Path) -> dict[str, Any]:
    result = cli("check", path, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def body(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The backbone's tensors in a dltrain checkpoint, under torchvision's key names."""
    model = load(checkpoint).full_state()  # frozen blocks come from the run's frozen-*.pt
    prefix = "layers.0.body."
    return {k[len(prefix) :]: v for k, v in model.items() if k.startswith(prefix)}


def test_vgg16_without_top_has_keras_parameter_count_and_check_shows_frozen(cli, tmp_path: Path) -> None:
    layer = {"type": "VGG16", "weights": None, "include_top": False, "trainable": False}
    summary = check_json(cli, write_config(tmp_path, config(layer)))
    assert summary["layers"][0] == {
        "type": "VGG16",
        "output_shape": [512, 1, 1],
        "params": 14_714_688,
        "trainable_params": 0,
    }
    assert summary["frozen_params"] == 14_714_688
    assert summary["trainable_params"] == summary["total_params"] - 14_714_688
    assert any("14,714,688 of 14,714,688 parameters frozen" in note for note in summary["notes"])
    human = cli("check", write_config(tmp_path, config(layer)))
    assert "Frozen: 14,714,688" in " ".join(human.output.split())


def test_list_models_shows_backbones(cli) -> None:
    entries = json.loads(cli("list-models", "--json").stdout)
    names = {e["name"] for e in entries["backbones"]}
    assert {"vgg16", "vgg19", "resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0"} <= names
    assert "vgg16-397923af.pth" in next(e["summary"] for e in entries["backbones"] if e["name"] == "vgg16")
    assert {"VGG16", "Backbone"} <= {e["name"] for e in entries["layers"]}


def test_frozen_vgg16_from_a_path_is_unchanged_by_fit_and_not_needed_to_evaluate(
    cli, tmp_path: Path, vgg16_file: Path
) -> None:
    weights = tmp_path / "vgg16.pth"
    weights.write_bytes(vgg16_file.read_bytes())
    layer = {"type": "VGG16", "weights": str(weights), "trainable": False}
    result = cli("fit", write_config(tmp_path, config(layer, epochs=1)), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "normalize: imagenet applied by default" in " ".join(result.output.split())
    loaded = torch.load(weights, weights_only=True)
    saved = body(tmp_path / "run" / "last.pt")
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in loaded)

    weights.unlink()  # evaluate rebuilds the model from the checkpoint alone
    report = cli("evaluate", tmp_path / "run" / "last.pt", "--json")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["samples"] == 12


def test_imagenet_weights_come_from_the_torch_home_cache(cli, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = torchvision_state("mobilenet_v3_small")  # the whole model: its classifier keys are ignored
    torch.save(state, cache / "mobilenet_v3_small-047dcff4.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    layer = {"type": "Backbone", "name": "mobilenet_v3_small", "weights": "imagenet", "trainable": False}
    head = [{"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 3, "activation": "softmax"}]
    result = cli("fit", write_config(tmp_path, config(layer, head)), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    saved = body(tmp_path / "run" / "last.pt")
    expected = {k: v for k, v in state.items() if k.startswith("features.")}
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in expected)


def test_missing_imagenet_weights_name_the_file_and_the_alternatives(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    for variable in ("https_proxy", "HTTPS_PROXY"):  # a closed port: the download fails at once, offline or not
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    result = cli("fit", write_config(tmp_path, config({"type": "VGG16", "trainable": False})))
    assert result.exit_code == 2
    text = result.output
    assert f"not found at '{tmp_path / 'empty' / 'hub' / 'checkpoints' / 'vgg16-397923af.pth'}'" in text
    assert "weights: null" in text and "weights: PATH" in text
    assert "config.yaml:" in text and "Traceback" not in text
    assert not (tmp_path / "runs").exists()


def test_weights_that_do_not_fit_are_a_clear_error(cli, tmp_path: Path, resnet18_files: tuple[Path, Path]) -> None:
    layer = {"type": "VGG16", "weights": str(resnet18_files[0]), "trainable": False}
    result = cli("check", write_config(tmp_path, config(layer)))
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "missing keys: 26 ('features.0.weight'" in text
    assert "unexpected keys: 122 ('conv1.weight'" in text


@pytest.mark.parametrize(
    "layer, data, message",
    [
        ({"type": "VGG16", "weights": None, "unfreeze_at_epoch": 2}, None, "unfreeze_at_epoch needs trainable: false"),
        ({"type": "VGG16", "weights": None, "include_top": True}, None, "include_top: true"),
        ({"type": "Backbone", "name": "resnet19", "weights": None}, None, "Did you mean 'resnet18'?"),
        (
            {"type": "VGG16", "weights": None, "trainable_layers": 6},
            None,
            "trainable_layers: 6 is more than VGG16's 5 blocks",
        ),
        (
            {"type": "VGG16", "weights": None},
            {"source": "digits"},
            "takes images [C, H, W]; this data's samples are [64]",
        ),
    ],
)
def test_backbone_key_errors(
    cli, tmp_path: Path, layer: dict[str, Any], data: dict[str, Any] | None, message: str
) -> None:
    cfg = config(layer)
    cfg["data"] = data or cfg["data"]
    result = cli("check", write_config(tmp_path, cfg))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_pretrained_backbone_first_gets_channels_resize_and_imagenet_by_default(
    cli, tmp_path: Path, vgg16_file: Path
) -> None:
    cfg = config({"type": "VGG16", "weights": str(vgg16_file), "trainable": False})
    cfg["data"] = {"source": "digits", "as_image": True}
    cfg["model"]["layers"][-1]["units"] = 10
    summary = check_json(cli, write_config(tmp_path, cfg))
    notes = " ".join(summary["notes"])
    assert "data.normalize: imagenet applied by default" in notes
    assert "data.channels: 3 applied by default" in notes
    assert "data.resize: [32, 32] applied by default" in notes
    assert summary["layers"][0]["output_shape"] == [512, 1, 1]


def test_cached_features_train_exactly_like_the_uncached_run(
    cli, tmp_path: Path, resnet18_files: tuple[Path, Path]
) -> None:
    pth, safetensors = resnet18_files
    runs = {}
    for name, weights, cache in (("cached", safetensors, True), ("uncached", pth, False)):
        layer = {
            "type": "Backbone",
            "name": "resnet18",
            "weights": str(weights),
            "trainable": False,
            "cache_features": cache,
        }
        result = cli("fit", write_config(tmp_path, config(layer), f"{name}.yaml"), "--run-dir", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert ("computed once" in result.output) == cache
        runs[name] = tmp_path / name
    cached, uncached = history(runs["cached"]), history(runs["uncached"])
    assert len(cached) == len(uncached) == 2
    for a, b in zip(cached, uncached):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    assert cached[-1]["loss"] < cached[0]["loss"]
    test_metrics = [json.loads((runs[n] / "metrics.json").read_text())["test"] for n in ("cached", "uncached")]
    assert test_metrics[0]["accuracy"] == test_metrics[1]["accuracy"]
    # frozen BatchNorm stayed in eval mode: its running statistics are still the file's
    loaded = torch.load(pth, weights_only=True)
    for run in runs.values():
        saved = body(run / "last.pt")
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_unfreeze_at_epoch_releases_exactly_the_named_blocks(
    cli, tmp_path: Path, resnet18_files: tuple[Path, Path]
) -> None:
    pth = resnet18_files[0]
    layer = {
        "type": "Backbone",
        "name": "resnet18",
        "weights": str(pth),
        "trainable": False,
        "unfreeze_at_epoch": 2,
        "trainable_layers": 1,
        "backbone_lr_mult": 0.1,
    }
    path = write_config(tmp_path, config(layer, epochs=1))
    summary = check_json(cli, path)
    assert summary["layers"][0]["trainable_params"] == 0
    assert any("the last 1 of 5 blocks (8,393,728 parameters) unfreeze at epoch 2" in n for n in summary["notes"])

    assert cli("fit", path, "--run-dir", tmp_path / "run").exit_code == 0
    loaded = torch.load(pth, weights_only=True)
    after_one = body(tmp_path / "run" / "last.pt")
    assert all(torch.equal(after_one[k], loaded[k]) for k in after_one)

    result = cli("fit", "--resume", tmp_path / "run", "--set", "fit.epochs=2")
    assert result.exit_code == 0, result.output
    assert "epoch 2: unfroze the last 1 of 5 blocks of resnet18" in " ".join(result.output.split())
    after_two = body(tmp_path / "run" / "last.pt")
    changed = {k for k in after_two if not torch.equal(after_two[k], loaded[k])}
    assert changed == {k for k in after_two if k.startswith("layer4.")}
    groups = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-4])


def test_a_backbone_model_exports_to_torchscript(cli, tmp_path: Path) -> None:
    layer = {"type": "Backbone", "name": "resnet18", "weights": None, "trainable": False}
    head = [{"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 3, "activation": "softmax"}]
    assert (
        cli("fit", write_config(tmp_path, config(layer, head, epochs=1)), "--run-dir", tmp_path / "run").exit_code == 0
    )
    result = cli("export", tmp_path / "run" / "best.pt", "--format", "torchscript")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best.torchscript").is_file()

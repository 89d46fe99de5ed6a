"""Image sources on real files: torchvision's formats, image folders, augmentation, and `predict` on PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_config
from data_files import blob_images, write_cifar10, write_image_folder, write_mnist, write_png

from dltrain.data.augment import Augment, AugmentParams

CNN = [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 4, "activation": "softmax"},
]


def image_config(data: dict, layers: list | None = None, **fit) -> dict:
    return {
        "name": "images",
        "seed": 0,
        "data": data,
        "model": {"layers": layers or CNN},
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.005},
            "loss": "categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": 4, "batch_size": 32, "device": "cpu", **fit},
    }


def fit_and_evaluate(cli, tmp_path: Path, config: dict) -> dict:
    result = cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    report = cli("evaluate", tmp_path / "run", "--json")
    assert report.exit_code == 0, report.output
    return json.loads(report.stdout)


@pytest.mark.parametrize("source,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_trains_from_idx_files(cli, tmp_path: Path, source: str, folder: str) -> None:
    write_mnist(tmp_path / "data", folder)
    data = {"source": source, "root": "data", "normalize": "scale", "flatten": True}
    layers = [
        {"type": "Dense", "units": 32, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]  # torchvision's 10 classes
    report = fit_and_evaluate(cli, tmp_path, image_config(data, layers, epochs=3))
    assert report["samples"] == 100  # torchvision's t10k files are the test split
    assert report["accuracy"] >= 0.9
    assert (tmp_path / "data" / folder / "raw" / "train-images-idx3-ubyte").is_file()  # unpacked from .gz


def test_cifar10_trains_from_python_batches_with_augmentation(cli, tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data")
    data = {
        "source": "cifar10",
        "root": "data",
        "normalize": "scale",
        "augment": {"random_flip": "horizontal", "random_crop": {"padding": 2}},
    }
    report = fit_and_evaluate(cli, tmp_path, image_config(data, CNN[:-1] + [{**CNN[-1], "units": 10}], epochs=5))
    assert report["samples"] == 100
    assert report["accuracy"] >= 0.8
    assert list(report["per_class"])[:4] == ["airplane", "automobile", "bird", "cat"]


@pytest.mark.parametrize(
    "source,expected",
    [
        ("mnist", "train-images-idx3-ubyte"),
        ("cifar10", "data_batch_1"),
    ],
)
def test_missing_torchvision_files_name_the_folder_and_files(cli, tmp_path: Path, source: str, expected: str) -> None:
    config = image_config({"source": source, "root": "nowhere"})
    result = cli("fit", write_config(tmp_path, config))
    assert result.exit_code == 2
    assert "nowhere" in result.output and expected in result.output and "download: true" in result.output
    assert "Traceback" not in result.output


def test_corrupt_idx_files_are_named(cli, tmp_path: Path) -> None:
    write_mnist(tmp_path / "data")
    (tmp_path / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    result = cli("check", write_config(tmp_path, image_config({"source": "mnist", "root": "data"})))
    assert result.exit_code == 2 and "could not be read" in result.output and "Traceback" not in result.output


def test_image_folder_trains_and_predicts_class_names_for_pngs(cli, tmp_path: Path) -> None:
    names = ("circle", "square", "star", "triangle")
    write_image_folder(tmp_path / "shapes", names, {"train": 24, "val": 4, "test": 6})
    data = {
        "source": "image_folder",
        "path": "shapes",
        "image_size": 16,
        "normalize": "imagenet",
        "num_workers": 1,
        "augment": {"random_flip": "horizontal", "random_rotation": 5},
    }
    config = image_config(data, epochs=6)
    report = fit_and_evaluate(cli, tmp_path, config)
    assert report["samples"] == 24 and list(report["per_class"]) == list(names)
    assert report["accuracy"] >= 0.9

    images, labels = blob_images(8, 4, 3, 32, seed=7)  # a different size: predict resizes as training did
    files = [write_png(tmp_path / f"new{i}.png", image) for i, image in enumerate(images)]
    result = cli("predict", tmp_path / "run", *files, "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["input"] for p in predictions] == [f.name for f in files]
    assert [p["prediction"] for p in predictions] == [names[label] for label in labels]
    assert all(len(p["top_k"]) == 2 and p["top_k"][0][0] == p["prediction"] for p in predictions)

    table = cli("predict", tmp_path / "run", files[0])
    assert table.exit_code == 0 and names[labels[0]] in table.output

    (tmp_path / "shapes").rename(tmp_path / "gone")  # predict needs the checkpoint alone, not the training data
    alone = cli("predict", tmp_path / "run", *files, "--json")
    assert alone.exit_code == 0, alone.output
    again = json.loads(alone.stdout)["predictions"]
    assert [(p["input"], p["prediction"]) for p in again] == [(p["input"], p["prediction"]) for p in predictions]


def test_image_folder_without_train_folder_is_one_clear_error(cli, tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    result = cli("fit", write_config(tmp_path, image_config({"source": "image_folder", "path": "photos"})))
    assert result.exit_code == 2
    assert "photos/train" in result.output and "<class>" in result.output


def test_a_broken_image_file_is_named(cli, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "shapes", ("a", "b"), {"train": 4})
    (tmp_path / "shapes" / "train" / "a" / "broken.png").write_bytes(b"not a png")
    result = cli("check", write_config(tmp_path, image_config({"source": "image_folder", "path": "shapes"})))
    assert result.exit_code == 2 and "broken.png" in result.output


def test_augment_on_flat_data_is_rejected(cli, tmp_path: Path) -> None:
    config = image_config(
        {"source": "digits", "augment": {"random_flip": "horizontal"}},
        [{"type": "Dense", "units": 10, "activation": "softmax"}],
    )
    result = cli("check", write_config(tmp_path, config))
    assert result.exit_code == 2 and "data.augment" in result.output and "[64]" in result.output


def test_flips_and_padded_crops_move_whole_pixels() -> None:
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 5, dtype=torch.float32).view(2, 3, 6, 5) + 1
    batch = x.repeat(16, 1, 1, 1)
    flipped = Augment(AugmentParams(random_flip="horizontal"))(batch)
    same = torch.isclose(flipped, batch, atol=1e-4).flatten(1).all(1)
    mirrored = torch.isclose(flipped, batch.flip(-1), atol=1e-4).flatten(1).all(1)
    assert bool((same | mirrored).all()) and same.any() and mirrored.any()

    cropped = Augment(AugmentParams(random_crop={"padding": 2}))(batch)
    for out, image in zip(cropped, batch):  # a whole-pixel shift of the zero-padded image
        padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
        assert any(
            torch.allclose(out, padded[:, dy : dy + 6, dx : dx + 5], atol=1e-4) for dy in range(5) for dx in range(5)
        )
    rotated = Augment(AugmentParams(random_rotation=0.0, random_flip="vertical"))(batch)
    assert rotated.shape == batch.shape


def test_image_folder_model_exports_checked_on_decoded_images(cli, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "shapes", ("a", "b"), {"train": 6, "test": 2}, size=8)
    data = {"source": "image_folder", "path": "shapes", "image_size": 8, "normalize": "scale"}
    config = image_config(data, CNN[:-1] + [{**CNN[-1], "units": 2}], epochs=1)
    config["fit"]["num_workers"] = 0  # SPEC's spelling of the DataLoader workers
    assert cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "run").exit_code == 0
    result = cli("export", tmp_path / "run", "--format", "torchscript", "-o", tmp_path / "model.ts")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.ts").is_file()


def test_augmentation_changes_training_batches_only(tmp_path: Path) -> None:
    from dltrain.build import build_trainer
    from dltrain.config import load_config
    from dltrain.data.batches import make_batches

    data = {"source": "digits", "as_image": True, "normalize": "scale", "augment": {"random_crop": {"padding": 2}}}
    loaded = load_config(write_config(tmp_path, image_config(data, CNN[:-1] + [{**CNN[-1], "units": 10}])))
    trainer = build_trainer(loaded)
    split = trainer.splits["train"]
    plain = make_batches(split, 64, False, 0, torch.device("cpu"))
    augmented = make_batches(split, 64, False, 0, torch.device("cpu"), augment=trainer.augment)
    (x, y), (xa, ya) = next(plain.epoch(1)), next(augmented.epoch(1))
    assert torch.equal(y, ya) and not torch.equal(x, xa)  # same samples, moved pixels
    assert trainer.evaluate(trainer.splits["test"]) == trainer.evaluate(trainer.splits["test"])


def test_image_folder_with_a_frozen_backbone_caches_decoded_features(cli, tmp_path: Path) -> None:
    names = ("a", "b", "c", "d")
    write_image_folder(tmp_path / "shapes", names, {"train": 6, "test": 2})
    layers = [
        {"type": "Backbone", "name": "resnet18", "weights": None, "trainable": False},
        {"type": "GlobalAveragePooling2D"},
        {"type": "Dense", "units": 4, "activation": "softmax"},
    ]
    data = {"source": "image_folder", "path": "shapes", "image_size": 16, "normalize": "imagenet", "num_workers": 0}
    result = cli("fit", write_config(tmp_path, image_config(data, layers, epochs=2)), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "computed once" in " ".join(result.output.split())
    png = write_png(tmp_path / "x.png", blob_images(1, 4, 3, 16)[0][0])
    predicted = cli("predict", tmp_path / "run", png, "--json")
    assert predicted.exit_code == 0 and json.loads(predicted.stdout)["predictions"][0]["prediction"] in names

"""`fit.validation_split`: a fixed, seeded draw (stratified for classification), Keras's last
fraction only when asked, and validation files given explicitly (npz arrays, a CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import tiny_digits_config, write_config
from data_files import write_image_folder, write_series, write_table

from dltrain import api, build
from dltrain.config import from_resolved, load_config
from dltrain.data.splits import stratified_split, validation_indices


def _bundle(tmp_path: Path, config: dict, *overrides: str):
    data, _ = build.prepare(load_config(write_config(tmp_path, config), list(overrides)))
    return data


def _classes(split) -> set[int]:
    return set(split.y.tolist())


def test_stratified_split_takes_each_class_in_proportion_and_is_fixed() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])  # sorted by class, as an image folder reads it
    keep, held = stratified_split(labels, 0.2, seed=7)
    assert np.bincount(labels[held]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    again = stratified_split(labels, 0.2, seed=7)
    assert held.tolist() == again[1].tolist()
    assert held.tolist() != stratified_split(labels, 0.2, seed=8)[1].tolist()  # the seed matters
    assert len(stratified_split(np.array([0, 0, 0, 1]), 0.2, seed=0)[1]) == 1  # at least one sample


def test_chronological_data_validates_on_the_last_fraction_and_last_mode_asks_for_it() -> None:
    y = np.arange(10) % 2
    assert validation_indices(y, 0.3, "auto", True, chronological=True)[1].tolist() == [7, 8, 9]
    assert validation_indices(y, 0.3, "last", True, chronological=False)[1].tolist() == [7, 8, 9]
    assert validation_indices(y, 0.3, "random", True, chronological=True)[1].tolist() != [7, 8, 9]


def image_config(path: str, **fit) -> dict:
    return {
        "name": "img",
        "seed": 0,
        "data": {"source": "image_folder", "path": path, "image_size": 8, "normalize": "scale"},
        "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 3, "activation": "softmax"}]},
        "compile": {"optimizer": "adam", "loss": "categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 1, "validation_split": 0.2, "device": "cpu", **fit},
    }


def test_image_folder_validation_draws_from_every_class(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "shapes", ("a", "b", "c"), {"train": 20}, size=8)  # files sorted by class
    data = _bundle(tmp_path, image_config("shapes"))
    assert _classes(data.val) == {0, 1, 2}
    assert min(np.bincount(data.val.y.numpy())) >= 3  # about 20% of the ~16 per class left after the test split
    last = _bundle(tmp_path, image_config("shapes", validation_mode="last"))
    assert _classes(last.val) == {2}  # Keras's last fraction of class-sorted files: one class


def test_sorted_csv_validation_draws_from_every_class(tmp_path: Path) -> None:
    write_table(tmp_path / "flowers.csv")
    lines = (tmp_path / "flowers.csv").read_text().splitlines()
    (tmp_path / "sorted.csv").write_text(
        "\n".join([lines[0], *sorted(lines[1:], key=lambda r: r.split(",")[3])]) + "\n"
    )
    config = {
        "name": "t",
        "seed": 0,
        "data": {"source": "csv", "path": "sorted.csv", "target": "species"},
        "model": {"layers": [{"type": "Dense", "units": 3, "activation": "softmax"}]},
        "compile": {"loss": "categorical_crossentropy"},
        "fit": {"validation_split": 0.2, "device": "cpu"},
    }
    assert _classes(_bundle(tmp_path, config).val) == {0, 1, 2}
    assert _classes(_bundle(tmp_path, config, "fit.validation_mode=last").val) == {2}


def test_digits_validation_accuracy_is_close_to_test_accuracy(tmp_path: Path) -> None:
    config = tiny_digits_config(epochs=15, batch_size=32)
    config["model"]["layers"][0]["units"] = 64
    result = api.fit(write_config(tmp_path, config), run_dir=tmp_path / "run")
    val, test = result.results["val"]["accuracy"], result.results["test"]["accuracy"]
    assert test > 0.9
    assert abs(val - test) < 0.03, (val, test)  # the last fraction of digits validates ~7 points low


def test_timeseries_validation_stays_chronological(tmp_path: Path) -> None:
    write_series(tmp_path / "series.csv", steps=120)
    config = {
        "name": "ts",
        "seed": 0,
        "data": {"source": "timeseries_csv", "path": "series.csv", "target": "load", "window": 5, "test_split": 0.2},
        "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 1}]},
        "compile": {"loss": "mse"},
        "fit": {"validation_split": 0.25, "device": "cpu"},
    }
    data = _bundle(tmp_path, config)
    # the first validation window is the last training window moved on by one time step
    assert torch.equal(data.val.x[0, :-1], data.train.x[-1, 1:])
    assert len(data.val) == round((len(data.train) + len(data.val)) * 0.25)


def test_npz_validation_arrays_are_the_validation_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.normal(size=(40, 4)),
        y_train=np.arange(40) % 2,
        x_test=rng.normal(size=(10, 4)),
        y_test=np.arange(10) % 2,
        x_val=rng.normal(size=(7, 4)),
        y_val=np.arange(7) % 2,
    )
    config = {
        "name": "n",
        "seed": 0,
        "data": {"source": "npz", "path": "d.npz"},
        "model": {"layers": [{"type": "Dense", "units": 2, "activation": "softmax"}]},
        "compile": {"loss": "categorical_crossentropy"},
        "fit": {"device": "cpu"},
    }
    data = _bundle(tmp_path, config)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 7, 10)
    assert (len(_bundle(tmp_path, config, "data.x_val_key=none", "data.y_val_key=none").train),) == (40,)


def test_csv_validation_file_is_the_validation_set(tmp_path: Path) -> None:
    write_table(tmp_path / "train.csv", count=120, seed=0)
    write_table(tmp_path / "val.csv", count=30, seed=1)
    config = {
        "name": "t",
        "seed": 0,
        "data": {"source": "csv", "path": "train.csv", "target": "species", "validation_path": "val.csv"},
        "model": {"layers": [{"type": "Dense", "units": 3, "activation": "softmax"}]},
        "compile": {"loss": "categorical_crossentropy"},
        "fit": {"device": "cpu"},
    }
    data = _bundle(tmp_path, config)
    assert (len(data.train), len(data.val), len(data.test)) == (96, 30, 24)
    assert data.val.x.shape[1] == data.train.x.shape[1]  # one-hot columns fitted on train, applied to val


def test_checkpoints_from_before_validation_mode_keep_the_last_fraction(tmp_path: Path) -> None:
    loaded = load_config(write_config(tmp_path, tiny_digits_config()))
    stored = loaded.resolved()
    assert stored["fit"]["validation_mode"] == "auto"
    del stored["fit"]["validation_mode"]  # as a checkpoint written before the option existed
    assert from_resolved(stored).config.fit.validation_mode == "last"

"""Streamed Parquet with text class labels: the names and class indices of the in-memory path, from one pass over
the target column; missing labels and text features named, a regression loss on names refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import write_config

from dltrain import api
from dltrain.build import prepare
from dltrain.config import load_config
from dltrain.data.streaming import StreamSplit
from dltrain.errors import DataError

NAMES = np.array(["dog", "cat", "bird"])  # first seen in this order; sorted: bird, cat, dog


def write_animals(folder: Path, rows: int = 300) -> None:
    """Two Parquet files of 3 numeric features and a text label; the second file meets the labels in another order."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(rows, 3)).astype(np.float32)
    label = NAMES[(x @ rng.normal(size=(3, 3))).argmax(axis=1)]
    table = pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "animal": label.tolist()})
    folder.mkdir()
    pq.write_table(table.slice(0, 170), folder / "part-0.parquet", row_group_size=50)
    pq.write_table(table.slice(170).take(np.arange(130)[::-1]), folder / "part-1.parquet", row_group_size=40)


def config(streaming: bool, **data: Any) -> dict[str, Any]:
    return {
        "seed": 0,
        "data": {"source": "parquet", "path": "animals", "target": "animal", "streaming": streaming, **data},
        "model": {"layers": [{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dense", "units": 3}]},
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 2, "batch_size": 32, "validation_split": 0.2, "device": "cpu", "shuffle": False},
    }


def test_text_labels_stream_as_the_in_memory_path_reads_them(tmp_path: Path) -> None:
    write_animals(tmp_path / "animals")
    memory, _ = prepare(load_config(write_config(tmp_path, config(False), "memory.yaml")))
    streamed, _ = prepare(load_config(write_config(tmp_path, config(True), "streamed.yaml")))
    assert isinstance(streamed.train, StreamSplit) and not isinstance(memory.train, StreamSplit)
    assert streamed.class_names == memory.class_names == ["bird", "cat", "dog"]
    for split in ("train", "val", "test"):
        assert torch.equal(streamed.split(split).y, memory.split(split).y), split
    assert set(streamed.train.y.tolist()) == {0, 1, 2}

    api.fit(tmp_path / "streamed.yaml", run_dir="streamed")
    api.fit(tmp_path / "memory.yaml", run_dir="memory")
    saved = torch.load(tmp_path / "streamed" / "best.pt", weights_only=True)
    assert saved["class_names"] == ["bird", "cat", "dog"]
    metrics = {
        name: json.loads((tmp_path / name / "metrics.json").read_text())["test"] for name in ("streamed", "memory")
    }
    assert metrics["streamed"]["accuracy"] == pytest.approx(metrics["memory"]["accuracy"], abs=1e-6)


def test_labels_written_as_numbers_stay_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "animals"
    folder.mkdir()
    table = pa.table({"a": np.arange(60, dtype=np.float32), "animal": [str(i % 3) for i in range(60)]})
    pq.write_table(table, folder / "part-0.parquet", row_group_size=20)
    bundle, _ = prepare(load_config(write_config(tmp_path, config(True))))
    assert bundle.class_names == ["0", "1", "2"] and bundle.train.y.dtype == torch.int64


@pytest.mark.parametrize(
    "problem, expected",
    [
        ("missing label", "part-1.parquet' row 8, column 'animal': missing target"),
        ("text feature", "column(s) 'colour' are not numbers; streaming reads numeric features only"),
        ("regression", "the targets are class names (e.g. 'bird'), but the loss is for regression"),
    ],
)
def test_label_mistakes_are_named(tmp_path: Path, problem: str, expected: str) -> None:
    write_animals(tmp_path / "animals")
    run = config(True)
    if problem == "missing label":
        table = pq.read_table(tmp_path / "animals" / "part-1.parquet")
        labels = table.column("animal").to_pylist()
        labels[7] = None
        table = table.set_column(3, "animal", pa.array(labels, pa.string()))
        pq.write_table(table, tmp_path / "animals" / "part-1.parquet", row_group_size=40)
    elif problem == "text feature":
        for part in (tmp_path / "animals").glob("*.parquet"):
            table = pq.read_table(part)
            pq.write_table(table.append_column("colour", pa.array(["red"] * table.num_rows)), part)
    else:
        run["compile"]["loss"] = "mse"
    with pytest.raises(DataError) as error:
        prepare(load_config(write_config(tmp_path, run)))
    assert expected in str(error.value)


def test_a_hugging_face_dataset_streams_text_labels_with_the_names_of_every_split(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    write_animals(tmp_path / "animals")
    parts = {
        name: pq.read_table(tmp_path / "animals" / f"part-{i}.parquet") for i, name in enumerate(["train", "test"])
    }
    parts["test"] = parts["test"].filter(pa.compute.not_equal(parts["test"].column("animal"), "bird"))  # fewer names
    datasets.DatasetDict({name: datasets.Dataset(table) for name, table in parts.items()}).save_to_disk(
        str(tmp_path / "saved")
    )
    data = {"source": "hf", "path": "saved", "features": ["a", "b", "c"]}
    bundles = {}
    for streaming in (True, False):
        run = config(streaming)
        run["data"] = {**data, "target": "animal", "streaming": streaming}
        bundles[streaming], _ = prepare(load_config(write_config(tmp_path, run, f"{streaming}.yaml")))
    assert isinstance(bundles[True].train, StreamSplit)
    assert bundles[True].class_names == bundles[False].class_names == ["bird", "cat", "dog"]
    for split in ("train", "val", "test"):
        assert torch.equal(bundles[True].split(split).y, bundles[False].split(split).y), split
    assert set(bundles[True].test.y.tolist()) == {1, 2}  # cat and dog counted among all three names

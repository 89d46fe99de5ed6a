"""The `parquet`, `npy` and `hf` sources on small files the tests write: training, columns, and broken files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
from conftest import write_config
from data_files import blob_images, write_table

from dltrain.config import load_config
from dltrain.data import load_data


def model_config(data: dict, units: int, epochs: int = 20) -> dict:
    return {
        "name": "large",
        "seed": 0,
        "data": data,
        "model": {
            "layers": [
                {"type": "Dense", "units": 16, "activation": "relu"},
                {"type": "Dense", "units": units, "activation": "softmax"},
            ]
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.01},
            "loss": "categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": epochs, "batch_size": 32, "validation_split": 0.2, "device": "cpu"},
    }


def write_parquet_parts(folder: Path, parts: int = 2, count: int = 240) -> Path:
    """The flowers table (tests/data_files) as `parts` Parquet files in `folder`."""
    table = pacsv.read_csv(write_table(folder.parent / "flowers.csv", count=count))
    folder.mkdir()
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")
    return folder


def loaded(tmp_path: Path, data: dict):
    config = load_config(write_config(tmp_path, model_config(data, 3), "load.yaml")).config
    return load_data(config.data, "classification", 0.2)


def test_parquet_folder_trains_and_reads_as_the_csv_does(cli, tmp_path: Path) -> None:
    write_parquet_parts(tmp_path / "flowers")
    data = {
        "source": "parquet",
        "path": "flowers",
        "target": "species",
        "features": ["petal_length", "petal_width", "soil"],
    }
    result = cli(
        "fit",
        write_config(tmp_path, model_config({**data, "normalize": "standardize"}, 3)),
        "--run-dir",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert checkpoint["class_names"] == ["setosa", "versicolor", "virginica"]
    assert checkpoint["preprocessing"]["table"]["categories"] == {"soil": ["clay", "loam", "sand"]}
    assert json.loads(cli("evaluate", tmp_path / "run", "--json").stdout)["accuracy"] >= 0.9
    new = pa.table({"soil": ["clay", "peat"], "petal_width": [0.3, 2.0], "petal_length": [1.4, 5.6]})
    pq.write_table(new, tmp_path / "new.parquet")
    result = cli("predict", tmp_path / "run", tmp_path / "new.parquet", "--json")
    assert result.exit_code == 0, result.output
    assert [p["prediction"] for p in json.loads(result.stdout)["predictions"]] == ["setosa", "virginica"]

    from_glob = loaded(tmp_path, {**data, "path": "flowers/part-*.parquet"})
    from_csv = loaded(tmp_path, {**data, "source": "csv", "path": "flowers.csv"})
    assert torch.equal(from_glob.train.x, from_csv.train.x) and torch.equal(from_glob.test.y, from_csv.test.y)


def test_npy_files_are_memory_mapped_and_train(cli, tmp_path: Path) -> None:
    images, labels = blob_images(240, 3, 1, 8)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels)
    data = {"source": "npy", "x": "x.npy", "y": "y.npy", "normalize": "scale", "flatten": True}
    from dltrain.data.arrays import npy
    from dltrain.schema.data import NpyParams

    assert isinstance(npy(NpyParams(**data)).x_train, np.memmap)
    result = cli("fit", write_config(tmp_path, model_config(data, 3, epochs=15)), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert json.loads(cli("evaluate", tmp_path / "run", "--json").stdout)["accuracy"] >= 0.9


@pytest.mark.parametrize(
    ("source", "damage", "named"),
    [
        ("parquet", "absent column", "part-1.parquet"),
        ("parquet", "corrupt", "part-0.parquet"),
        ("npy", "corrupt", "y.npy"),
        ("npy", "short", "y.npy"),
    ],
)
def test_broken_files_exit_2_naming_the_file(cli, tmp_path: Path, source: str, damage: str, named: str) -> None:
    if source == "parquet":
        folder = write_parquet_parts(tmp_path / "flowers", count=40)
        data = {"source": source, "path": "flowers", "target": "species", "features": ["petal_length", "soil"]}
        if damage == "absent column":
            pq.write_table(pq.read_table(folder / "part-1.parquet").drop_columns(["soil"]), folder / "part-1.parquet")
        else:
            (folder / "part-0.parquet").write_bytes(b"PAR1 this is not a parquet file")
    else:
        np.save(tmp_path / "x.npy", np.zeros((40, 4), dtype=np.float32))
        np.save(tmp_path / "y.npy", np.zeros(40 if damage == "corrupt" else 30, dtype=np.int64))
        if damage == "corrupt":
            (tmp_path / "y.npy").write_bytes((tmp_path / "y.npy").read_bytes()[:20])
        data = {"source": source, "x": "x.npy", "y": "y.npy"}
    result = cli("check", write_config(tmp_path, model_config(data, 3)))
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output


def test_hf_dataset_saved_to_disk_trains_on_its_image_and_table_columns(cli, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    images, labels = blob_images(300, 3, 1, 8)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["small", "mid", "large"])}
    )
    rows = [{"image": image[0], "label": int(label)} for image, label in zip(images, labels)]
    split = {"train": rows[:240], "test": rows[240:]}
    datasets.DatasetDict(
        {name: datasets.Dataset.from_list(part, features=features) for name, part in split.items()}
    ).save_to_disk(str(tmp_path / "blobs"))
    data = {"source": "hf", "path": "blobs", "image": "image", "normalize": "scale", "flatten": True}
    result = cli("fit", write_config(tmp_path, model_config(data, 3, epochs=15)), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert checkpoint["class_names"] == ["small", "mid", "large"] and checkpoint["input_shape"] == [64]
    report = json.loads(cli("evaluate", tmp_path / "run", "--json").stdout)
    assert report["accuracy"] >= 0.9 and report["samples"] == 60

    table = pacsv.read_csv(write_table(tmp_path / "flowers.csv", count=120))
    datasets.Dataset(table).save_to_disk(str(tmp_path / "flowers"))
    data = {"source": "hf", "path": "flowers", "target": "species", "features": ["petal_length", "soil"]}
    bundle = loaded(tmp_path, data)
    assert bundle.class_names == ["setosa", "versicolor", "virginica"] and bundle.input_shape == (4,)
    result = cli("check", write_config(tmp_path, model_config({**data, "features": ["petal_length", "sol"]}, 3)))
    assert result.exit_code == 2 and "has no column 'sol'. Did you mean 'soil'?" in result.output
    for arrow in (tmp_path / "flowers").glob("*.arrow"):
        arrow.write_bytes(b"not an arrow file")
    for path in ("flowers", "no_such_dataset"):
        result = cli("check", write_config(tmp_path, model_config({**data, "path": path}, 3)))
        assert result.exit_code == 2 and f"data.path: '{path}' is neither" in result.output, result.output

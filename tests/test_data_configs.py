"""Every bundled config for a data source trains one epoch on small files put where it says."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONFIGS
from data_files import write_cifar10, write_image_folder, write_mnist, write_series, write_table


def data_dir() -> Path:
    Path("data").mkdir(exist_ok=True)
    return Path("data")


FILES = {
    "mnist_mlp": lambda: write_mnist(Path("data")),
    "fashion_mnist_cnn": lambda: write_mnist(Path("data"), "FashionMNIST"),
    "cifar10_cnn": lambda: write_cifar10(Path("data"), per_batch=20, test=20),
    "image_folder_cnn": lambda: write_image_folder(Path("data/images"), ("cats", "dogs"), {"train": 10}, size=20),
    "csv_tabular": lambda: write_table(data_dir() / "flowers.csv", count=60),
    "timeseries_lstm": lambda: write_series(data_dir() / "series.csv", steps=120),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_bundled_data_config_trains_on_files_where_it_says(cli, tmp_path: Path, name: str) -> None:
    config = CONFIGS / f"{name}.yaml"
    assert config.read_text().startswith(f"# dltrain fit configs/{name}.yaml")
    missing = cli("check", config)
    assert missing.exit_code == 2 and "data" in missing.output  # before the files are there: where to put them
    FILES[name]()
    result = cli("fit", config, "--set", "fit.epochs=1", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best.pt").is_file()

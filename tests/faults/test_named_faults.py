"""Fault injection, models with named inputs and several outputs: named arrays that are not finite
numbers, hold no rows, disagree in rows or name one input twice, CSV tables naming a column twice or
holding an infinite cell, at fit and at predict, end in one message and exit 2, and the checkpoint
predicted from is left byte for byte as it was.

Self-contained beside the other fault files (only conftest's `cli`); one tiny run serves every case.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from conftest import assert_refused
from sklearn.datasets import load_digits
from test_multi_io import two_by_two
from test_named_tables import HEADER, flowers, write
from test_named_tables import config as table_config

from dltrain import api


def _arrays(rows: int = 120) -> dict[str, np.ndarray]:
    digits = load_digits()
    x, y = digits.data[:rows].astype(np.float32), digits.target[:rows]
    return {
        "x_train_image": x.reshape(-1, 1, 8, 8),
        "x_train_extra": x.reshape(-1, 8, 8)[:, :4].mean(axis=2),
        "y_train_digit": y,
        "y_train_even": (y % 2 == 0).astype(np.float32),
    }


def _config(path: Path) -> dict[str, Any]:
    config = two_by_two(epochs=1)
    config["data"] = {"source": "npz", "path": str(path), "normalize": "scale"}
    return config


def _write(folder: Path, config: dict[str, Any]) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def named_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a two-input, two-output graph trained one epoch on 120 digits."""
    folder = tmp_path_factory.mktemp("named")
    np.savez(folder / "named.npz", **_arrays())
    return api.fit(_write(folder, _config(folder / "named.npz")), run_dir=folder / "run").run_dir / "best.pt"


A = _arrays()
# name -> (the training arrays, words of the message)
FIT_ARRAYS: dict[str, tuple[Callable[[], dict[str, np.ndarray]], list[str]]] = {
    "object input": (
        lambda: {**A, "x_train_extra": np.array([None] * 120, dtype=object)},
        ["'x_train_extra' cannot be read", "numeric arrays"],
    ),
    "NaN input": (
        lambda: {**A, "x_train_extra": np.where(np.eye(120, 4) > 0, np.nan, 1.0).astype(np.float32)},
        ["input 'extra'", "missing or infinite", "index (0, 0)"],
    ),
    "no rows": (lambda: {k: v[:0] for k, v in A.items()}, ["no samples"]),
}


@pytest.mark.parametrize("case", list(FIT_ARRAYS))
def test_named_training_arrays_that_are_not_finite_numbers_are_refused(cli, tmp_path: Path, case: str) -> None:
    make, words = FIT_ARRAYS[case]
    np.savez(tmp_path / "bad.npz", **make())
    config = _config(tmp_path / "bad.npz")
    assert_refused(cli("fit", _write(tmp_path, config)), *words)
    assert not (tmp_path / "runs").exists()


def test_every_loss_weight_zero_is_refused_with_its_line(cli, tmp_path: Path) -> None:
    np.savez(tmp_path / "named.npz", **A)
    config = copy.deepcopy(_config(tmp_path / "named.npz"))
    config["compile"]["loss_weights"] = {"digit": 0, "even": 0.0}
    assert_refused(cli("check", _write(tmp_path, config)), "config.yaml:", "compile.loss_weights", "nothing would")


X = {"image": A["x_train_image"][:10], "extra": A["x_train_extra"][:10]}
PREDICT_ARRAYS: dict[str, tuple[dict[str, np.ndarray], list[str]]] = {
    "one input named twice": ({**X, "x_image": X["image"]}, ["input 'image'", "image and x_image", "keep one"]),
    "rows differ": ({**X, "extra": X["extra"][:5]}, ["different numbers of samples", "'extra': 5"]),
    "object input": ({**X, "extra": np.array([None] * 10, dtype=object)}, ["'extra' cannot be read"]),
    "NaN input": ({**X, "extra": np.full((10, 4), np.nan, np.float32)}, ["input 'extra'", "missing or infinite"]),
    "text input": ({**X, "extra": np.array([["a"] * 4] * 10)}, ["input 'extra'", "text"]),
    "no rows": ({k: v[:0] for k, v in X.items()}, ["no samples"]),
}


@pytest.mark.parametrize("case", list(PREDICT_ARRAYS))
def test_predict_refuses_named_arrays_it_cannot_use(cli, named_run: Path, tmp_path: Path, case: str) -> None:
    arrays, words = PREDICT_ARRAYS[case]
    np.savez(tmp_path / "new.npz", **arrays)
    before = named_run.read_bytes()
    assert_refused(cli("predict", named_run, tmp_path / "new.npz"), "new.npz", *words)
    assert named_run.read_bytes() == before


def test_the_same_arrays_well_formed_predict(cli, named_run: Path, tmp_path: Path) -> None:
    """The control: the file the cases damage is accepted as given."""
    np.savez(tmp_path / "new.npz", **X)
    result = cli("predict", named_run, tmp_path / "new.npz", "--json")
    assert result.exit_code == 0, result.output


# --- named CSV tables ------------------------------------------------------------------------

GOOD = flowers(1, seed=5)[0]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of two named inputs read from CSV columns (one categorical), two outputs, one epoch."""
    folder = tmp_path_factory.mktemp("tables")
    for name, count, seed in (("train", 90, 0), ("val", 20, 1), ("test", 20, 2)):
        write(folder / f"{name}.csv", flowers(count, seed))
    config = table_config(**{key: str(folder / f"{name}.csv") for key, name in PATHS.items()})
    config["fit"]["epochs"] = 1
    return api.fit(_write(folder, config), run_dir=folder / "run").run_dir / "best.pt"


PATHS = {"path": "train", "validation_path": "val", "test_path": "test"}
# the CSV text -> words of the message (at fit as the training file, at predict as the new rows)
TABLES: dict[str, tuple[str, list[str]]] = {
    "a column named twice": (
        f"{HEADER},petal_length\n" + ",".join([*GOOD, "9"]) + "\n",
        ["line 1", "'petal_length' twice", "columns 1 and 7"],
    ),
    "an infinite cell": (
        f"{HEADER}\n" + ",".join(["inf", *GOOD[1:]]) + "\n",
        ["line 2, column 'petal_length'", "infinite value"],
    ),
}


@pytest.mark.parametrize("case", list(TABLES))
def test_predict_refuses_named_csv_rows_it_cannot_read(cli, table_run: Path, tmp_path: Path, case: str) -> None:
    text, words = TABLES[case]
    (tmp_path / "new.csv").write_text(text, encoding="utf-8")
    before = table_run.read_bytes()
    assert_refused(cli("predict", table_run, tmp_path / "new.csv"), "new.csv", *words)
    assert table_run.read_bytes() == before


@pytest.mark.parametrize("case", list(TABLES))
def test_fit_refuses_a_named_csv_it_cannot_read(cli, tmp_path: Path, case: str) -> None:
    text, words = TABLES[case]
    width = text.splitlines()[0].count(",") + 1  # every row as wide as the header
    rows = "\n".join(",".join([*row, "9"][:width]) for row in flowers(40, seed=0))
    (tmp_path / "train.csv").write_text(text + rows + "\n", encoding="utf-8")
    config = table_config(path="train.csv", validation_path=None, test_path=None)
    assert_refused(cli("check", _write(tmp_path, config)), "train.csv", *words)


def test_features_beside_named_inputs_are_refused_as_ambiguous(cli, tmp_path: Path) -> None:
    write(tmp_path / "train.csv", flowers(40, seed=0))
    config = table_config(path="train.csv", validation_path=None, test_path=None, features=["petal_length"])
    assert_refused(cli("check", _write(tmp_path, config)), "config.yaml:", "features", "inputs", "not both")

"""Inputs read as they are (headerless CSV rows, channels-last arrays), binary class names
carried to every report, and data printed as written (rich markup, pipes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from conftest import tiny_digits_config, write_config

from dltrain import api


def npz_config(path: str, units: int, loss: str, layers: list | None = None, **data) -> dict:
    head = {"type": "Dense", "units": units, "activation": "sigmoid" if loss == "binary_crossentropy" else "softmax"}
    return {
        "name": "n",
        "seed": 0,
        "data": {"source": "npz", "path": path, **data},
        "model": {"layers": [*(layers or [{"type": "Dense", "units": 8, "activation": "relu"}]), head]},
        "compile": {"optimizer": {"type": "adam", "lr": 0.01}, "loss": loss, "metrics": ["accuracy"]},
        "fit": {"epochs": 3, "batch_size": 16, "device": "cpu"},
    }


def write_rows(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(120, 4)).astype(np.float32)  # small integers: a headerless first row repeats values
    np.savez(tmp_path / "rows.npz", x_train=x, y_train=(x[:, 0] > x[:, 3]).astype(np.int64))
    return tmp_path / "rows.npz"


def test_predict_reads_a_headerless_numeric_csv_by_position(cli, tmp_path: Path) -> None:
    write_rows(tmp_path)
    api.fit(write_config(tmp_path, npz_config("rows.npz", 2, "categorical_crossentropy")), run_dir=tmp_path / "run")
    rows = np.array([[0, 0, 1, 2], [2, 1, 0, 0], [1, 2, 2, 1]], dtype=np.float32)
    np.save(tmp_path / "rows.npy", rows)
    (tmp_path / "plain.csv").write_text("\n".join(",".join(str(int(v)) for v in r) for r in rows) + "\n")
    (tmp_path / "named.csv").write_text("a,b,c,d\n" + (tmp_path / "plain.csv").read_text())
    expected = json.loads(cli("predict", tmp_path / "run", "rows.npy", "--json").stdout)["predictions"]
    for name in ("plain.csv", "named.csv"):
        result = cli("predict", tmp_path / "run", name, "--json")
        assert result.exit_code == 0, result.output
        got = json.loads(result.stdout)["predictions"]
        assert [r["top_k"] for r in got] == [r["top_k"] for r in expected]  # every row, every column in place


def test_binary_classifier_names_its_classes_in_predict_evaluate_plot_and_export(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lines = ["a,b,colour,label"]
    for i in range(160):
        a, b = rng.normal(size=2)
        lines.append(f"{a:.3f},{b:.3f},{['red', 'blue'][i % 2]},{'yes' if a + b > 0 else 'no'}")
    (tmp_path / "bin.csv").write_text("\n".join(lines) + "\n")
    config = {
        "name": "b",
        "seed": 0,
        "data": {"source": "csv", "path": "bin.csv", "target": "label"},
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "units": 1, "activation": "sigmoid"},
            ]
        },
        "compile": {"optimizer": {"type": "adam", "lr": 0.02}, "loss": "binary_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 8, "validation_split": 0.2, "device": "cpu"},
    }
    api.fit(write_config(tmp_path, config), run_dir=tmp_path / "run")
    (tmp_path / "new.csv").write_text("a,b,colour\n2,2,red\n-2,-2,blue\n")
    predictions = json.loads(cli("predict", tmp_path / "run", "new.csv", "--json").stdout)["predictions"]
    assert [p["prediction"] for p in predictions] == ["yes", "no"]

    result = cli("evaluate", tmp_path / "run", "--json", "--plot", tmp_path / "cm.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report["per_class"]) == ["no", "yes"]
    assert sum(map(sum, report["confusion_matrix"])) == report["samples"]
    assert (tmp_path / "cm.png").stat().st_size > 1000

    result = cli("export", tmp_path / "run", "--format", "torchscript", "-o", tmp_path / "b.ts")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "b.ts.json").read_text())
    assert meta["output"]["kind"] == "probability" and meta["class_names"] == ["no", "yes"]
    assert meta["preprocessing"][0] == {
        **meta["preprocessing"][0],
        "op": "one_hot",
        "features": ["a", "b", "colour"],
        "categories": {"colour": ["blue", "red"]},
    }


def test_channels_last_arrays_are_transposed_when_asked(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(60, 8, 8, 3), dtype=np.uint8)
    y = (x[..., 0].mean(axis=(1, 2)) > x[..., 2].mean(axis=(1, 2))).astype(np.int64)
    np.savez(tmp_path / "hwc.npz", x_train=x, y_train=y)
    conv = [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"}, {"type": "Flatten"}]
    config = npz_config("hwc.npz", 2, "categorical_crossentropy", conv, channels_last=True, normalize="scale")
    result = api.fit(write_config(tmp_path, config), run_dir=tmp_path / "run")
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert checkpoint["input_shape"] == [3, 8, 8] and checkpoint["preprocessing"]["raw_shape"] == [8, 8, 3]
    np.save(tmp_path / "one.npy", x[0])  # predict takes new arrays in the layout of the training file
    one = json.loads(cli("predict", tmp_path / "run", "one.npy", "--json").stdout)["predictions"][0]
    network = api.restore(tmp_path / "run" / "best.pt").network
    with torch.inference_mode():  # the same sample, transposed by hand to [C, H, W] and scaled
        expected = network(torch.from_numpy(x[:1]).permute(0, 3, 1, 2).float() / 255).softmax(-1)[0]
    assert one["prediction"] == str(int(expected.argmax()))
    assert abs(one["top_k"][0][1] - float(expected.max())) < 1e-5
    assert result.results["test"]["loss"] > 0


def test_data_is_printed_as_written_and_pipes_get_whole_lines(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_digits_config(epochs=1))
    result = cli.subprocess("fit", config, "--run-dir", "exp[lr0.1]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "Run directory: exp[lr0.1]" in out and "→ exp[lr0.1]" in out
    epoch = next(line for line in out.splitlines() if line.startswith("Epoch   1"))
    assert "val_accuracy" in epoch and epoch.rstrip().endswith("s")  # one line, not wrapped at 80 columns
    assert "`[units]`" in cli("list-models").stdout  # a table cell, not rich markup
    layers = json.loads(cli("list-models", "--json").stdout)["layers"]
    assert any("[units]" in item["summary"] for item in layers)

"""Models with named inputs or several outputs, deployed: exported to every format, served, predicted from CSV.

The digits two-input and two-output presets are trained once per module (one epoch);
each export is reloaded the way a user would (by the names in its JSON) and compared
with `predict --json`; servers are real child processes on 127.0.0.1, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from conftest import CONFIGS, REPO, Cli, write_config
from data_files import write_table
from sklearn.datasets import load_digits

from dltrain import api
from dltrain.data.named import _digit_features
from dltrain.inference import apply_steps
from dltrain.serve.process import running_server

ENV = {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
COUNT = 12  # samples predicted, exported and served
ATOL = 1e-5  # an export, or a sample batched by the server, against `predict`'s rounded probabilities


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two presets after one epoch, and the samples to ask them about (an .npz by input name)."""
    root = tmp_path_factory.mktemp("named")
    for preset in ("digits_two_inputs", "digits_two_outputs"):
        api.fit(CONFIGS / f"{preset}.yaml", ["fit.epochs=1", "fit.device=cpu"], run_dir=str(root / preset))
    x = load_digits().data[:COUNT].astype(np.float32)
    np.savez(root / "samples.npz", image=x.reshape(-1, 1, 8, 8), extra=_digit_features(x))
    return {
        "inputs": root / "digits_two_inputs",
        "outputs": root / "digits_two_outputs",
        "samples": root / "samples.npz",
    }


def predict_json(model: Path, *inputs: Path) -> list[dict[str, Any]]:
    result = Cli()("predict", model, *inputs, "--json", "--top-k", "10")  # every class: the whole distribution
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["predictions"]


def probabilities(row: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each output's probabilities in a `predict --json` row, by output name (a class's in class order)."""
    found = {}
    for name, group in row["outputs"].items():
        if "top_k" in group:
            found[name] = np.array([p for _, p in sorted(group["top_k"], key=lambda c: int(c[0]))])
        else:
            found[name] = np.array([group["probability"]])
    return found


def run_export(path: Path, fmt: str, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The exported file run as a user would: inputs by the JSON's names and steps, in its order."""
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    feed = [apply_steps(arrays[i["name"]], i["preprocessing"]).astype(np.float32) for i in meta["inputs"]]
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {i["name"]: x for i, x in zip(meta["inputs"], feed)})
    module = torch.export.load(str(path)).module() if fmt == "pt2" else torch.jit.load(str(path))
    return [t.detach().numpy() for t in module(*map(torch.from_numpy, feed))]


@pytest.mark.parametrize("fmt", ["onnx", "pt2", "torchscript"])
@pytest.mark.parametrize("which", ["inputs", "outputs"])
def test_every_format_exports_named_models_with_their_names_and_matches_predict(
    runs: dict[str, Path], tmp_path: Path, fmt: str, which: str
) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    target = tmp_path / f"model.{fmt}"
    result = Cli()("export", runs[which], "--format", fmt, "-o", target)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    inputs = ["image", "extra"] if which == "inputs" else ["image"]
    outputs = ["digit"] if which == "inputs" else ["digit", "even"]
    assert meta["format"] == fmt and [i["name"] for i in meta["inputs"]] == inputs
    assert [o["name"] for o in meta["outputs"]] == outputs and meta["check"]["max_abs_diff"] <= meta["check"]["atol"]
    with np.load(runs["samples"]) as archive:
        arrays = {name: archive[name] for name in inputs}
    got = run_export(target, fmt, arrays)
    expected = [probabilities(row) for row in predict_json(runs[which], runs["samples"])]
    assert len(got) == len(outputs)
    for name, values in zip(outputs, got):
        assert values.shape[0] == COUNT
        assert np.allclose(values, [e[name] for e in expected], atol=ATOL), name


def test_a_checkpoint_and_an_onnx_export_serve_one_group_per_output(runs: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    assert Cli()("export", runs["inputs"], "--format", "onnx", "-o", tmp_path / "two_inputs.onnx").exit_code == 0
    with np.load(runs["samples"]) as archive:
        arrays = {name: archive[name] for name in archive}
    for model, names in ((runs["outputs"], ["image"]), (tmp_path / "two_inputs.onnx", ["image", "extra"])):
        expected = predict_json(model if model.suffix != ".onnx" else runs["inputs"], runs["samples"])
        instances = [{name: arrays[name][i].tolist() for name in names} for i in range(COUNT)]
        with running_server(model, module="dltrain", log=tmp_path / "server.log", env=ENV) as server:
            meta = httpx.get(server.url + "/metadata").json()
            assert list(meta["input"]["inputs"]) == names
            assert meta["process"]["torch_imported"] == (model.suffix != ".onnx")  # onnxruntime alone serves an export
            assert [o["name"] for o in meta["outputs"]] == list(expected[0]["outputs"])
            rows = httpx.post(server.url + "/predict", json={"instances": instances, "top_k": 10}).json()["predictions"]
            columns = {name: [item[name] for item in instances] for name in names}
            by_column = httpx.post(server.url + "/predict", json={"inputs": columns, "top_k": 10}).json()["predictions"]
            assert by_column == rows
            assert [r["prediction"] for r in rows] == [e["prediction"] for e in expected]
            for got, want in zip(rows, expected):
                for name, values in probabilities(got).items():
                    assert np.allclose(values, probabilities(want)[name], atol=ATOL)

            bad = [
                {name: instances[0][name] for name in names[:-1]},  # the last input missing
                {**instances[0], "colour": [1.0]},  # an input the model does not have
                {**instances[0], names[-1]: [1.0, 2.0]},  # the wrong shape
                instances[0][names[0]],  # one input's value, not an object by input name
            ]
            refused = httpx.post(server.url + "/predict", json={"instances": bad})
            assert refused.status_code == 422
            detail = refused.json()["detail"]
            assert [e["loc"] for e in detail] == [
                ["body", "instances", 0, names[-1]],
                ["body", "instances", 1, "colour"],
                ["body", "instances", 2, names[-1]],
                ["body", "instances", 3],
            ]
            assert (
                f"input '{names[-1]}' is missing" in detail[0]["msg"] and "unknown input 'colour'" in detail[1]["msg"]
            )
            assert f"input '{names[-1]}': expected numbers of shape" in detail[2]["msg"]
            assert "one value per input" in detail[3]["msg"] and "received a list" in detail[3]["msg"]
            short = {**columns, names[0]: columns[names[0]][:2]}  # with one input: just two samples
            uneven = httpx.post(server.url + "/predict", json={"inputs": short})
            if len(names) > 1:
                assert uneven.status_code == 422 and "different numbers of samples" in uneven.text
            else:
                assert len(uneven.json()["predictions"]) == 2
            both = httpx.post(server.url + "/predict", json={"inputs": columns, "instances": instances})
            assert both.status_code == 422 and "exactly one of instances" in both.text


def test_predict_reads_a_csv_of_the_training_columns_and_says_what_to_give_otherwise(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    cli = Cli()
    write_table(tmp_path / "flowers.csv", count=120)
    config = {
        "name": "table",
        "seed": 0,
        "data": {
            "source": "csv",
            "path": str(tmp_path / "flowers.csv"),
            "inputs": {"length": ["petal_length"], "sizes": ["petal_width", "height"]},
            "target": {"species": "species"},
            "normalize": "standardize",
        },
        "model": {
            "inputs": {"length": [1], "sizes": [2]},
            "layers": [
                {"type": "Concatenate", "inputs": ["length", "sizes"]},
                {"name": "species", "type": "Dense", "units": 3, "activation": "softmax"},
            ],
        },
        "compile": {"optimizer": {"type": "adam", "lr": 0.05}, "loss": "categorical_crossentropy"},
        "fit": {"epochs": 2, "batch_size": 32, "device": "cpu"},
    }
    assert cli("fit", write_config(tmp_path, config), "--run-dir", tmp_path / "run").exit_code == 0
    table = np.genfromtxt(tmp_path / "flowers.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    np.savez(
        tmp_path / "same.npz",
        length=table["petal_length"].reshape(-1, 1),
        sizes=np.stack([table["petal_width"], table["height"]], axis=1),
    )
    from_csv = predict_json(tmp_path / "run", tmp_path / "flowers.csv")
    assert len(from_csv) == 120 and from_csv == predict_json(tmp_path / "run", tmp_path / "same.npz")

    shown = cli("predict", tmp_path / "run", tmp_path / "flowers.csv")  # the table: a column per output
    assert shown.exit_code == 0 and "species" in shown.output and from_csv[0]["prediction"]["species"] in shown.output
    text = cli("predict", tmp_path / "run", "--text", "a flower")
    assert text.exit_code == 2 and "--text" in text.output and "training columns" in " ".join(text.output.split())

    no_column = tmp_path / "short.csv"
    no_column.write_text("petal_length,petal_width\n1.0,0.2\n", encoding="utf-8")
    missing = cli("predict", tmp_path / "run", no_column)
    assert missing.exit_code == 2 and "height" in missing.output

    for model, given, expected in (
        (tmp_path / "run", "rows.npy", "training columns (length: petal_length; sizes: petal_width, height)"),
        (runs["outputs"], "rows.csv", "was not trained from CSV columns"),
    ):
        (tmp_path / given).write_text("1\n", encoding="utf-8")
        refused = cli("predict", model, tmp_path / given)
        assert refused.exit_code == 2 and expected in " ".join(refused.output.split()), refused.output
        assert ".npz files holding one array per input" in " ".join(refused.output.split())

"""`dltrain export`: each format written, reloaded the way a user would (without dltrain),
and matching the PyTorch model within the stated tolerance on every digit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from conftest import CONFIGS, tiny_digits_config, write_config
from sklearn.datasets import load_digits

from dltrain import api
from dltrain.errors import RunError
from dltrain.export import ATOL, RTOL, Deployable, check_batch, write_checked

MODELS = ["digits_mlp", "digits_cnn", "digits_rnn"]  # dense, CNN and RNN
FORMATS = ["onnx", "pt2", "torchscript"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real checkpoint per model: 3 epochs of the shipped preset on the digits."""
    root = tmp_path_factory.mktemp("runs")
    for name in MODELS:
        api.fit(CONFIGS / f"{name}.yaml", ["fit.epochs=3", "fit.device=cpu"], run_dir=root / name)
    return {name: root / name / "best.pt" for name in MODELS}


def prepared_digits(meta: dict) -> np.ndarray:
    """All 1,797 raw digits, preprocessed from the JSON alone, as a user without dltrain would."""
    x = load_digits().data
    for step in meta["preprocessing"]:
        if step["op"] == "flatten":
            x = x.reshape(len(x), -1)
        elif step["op"] == "divide":
            x = x / step["value"]
        elif step["op"] == "standardize":
            x = (x - np.asarray(step["mean"])) / np.asarray(step["std"])
    return x.reshape(len(x), *meta["input"]["shape"][1:]).astype(np.float32)


def run_exported(fmt: str, path: Path, meta: dict, x: np.ndarray) -> np.ndarray:
    """The exported file run by its own runtime, given only the JSON beside it."""
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {meta["input"]["name"]: x})[0]
    module = torch.export.load(str(path)).module() if fmt == "pt2" else torch.jit.load(str(path))
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def pytorch_probabilities(checkpoint: Path, x: np.ndarray) -> np.ndarray:
    """What dltrain's own model says for the same inputs (its final softmax applied)."""
    network = api.restore(checkpoint).network.eval()
    with torch.inference_mode():
        return network.probabilities(network(torch.from_numpy(x))).numpy()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("model", MODELS)
def test_export_reloads_and_matches_pytorch(cli, trained, tmp_path: Path, model: str, fmt: str) -> None:
    target = tmp_path / f"{model}.{fmt}"
    result = cli("export", trained[model], "--format", fmt, "-o", target)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / f"{model}.{fmt}.json").read_text())
    assert meta["format"] == fmt and meta["file"] == target.name
    assert meta["output"]["kind"] == "probabilities" and meta["class_names"] == [str(i) for i in range(10)]
    assert meta["check"] == {"samples": 64, "max_abs_diff": meta["check"]["max_abs_diff"], "atol": ATOL, "rtol": RTOL}
    assert meta["check"]["max_abs_diff"] <= ATOL

    x = prepared_digits(meta)  # 1,797 rows: the export was traced on 64, so the batch axis is dynamic
    got = run_exported(fmt, target, meta, x)
    expected = pytorch_probabilities(trained[model], x)
    assert got.shape == (1797, 10)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # the softmax is in the graph
    accuracy = (got.argmax(axis=1) == load_digits().target).mean()
    assert accuracy > 0.7, accuracy  # 3 epochs: a trained model, not random weights (0.1)


def test_onnx_batch_axis_is_symbolic(cli, trained, tmp_path: Path) -> None:
    assert cli("export", trained["digits_cnn"], "--format", "onnx", "-o", tmp_path / "m.onnx").exit_code == 0
    dims = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 8, 8]


def test_export_defaults_beside_the_checkpoint(cli, trained) -> None:
    result = cli("export", trained["digits_mlp"].parent, "--format", "pt2")  # a run directory: best.pt
    assert result.exit_code == 0, result.output
    assert (trained["digits_mlp"].parent / "best.pt2").is_file()
    assert (trained["digits_mlp"].parent / "best.pt2.json").is_file()


def test_mismatching_export_is_refused_and_leaves_nothing(trained, tmp_path: Path) -> None:
    trainer = api.restore(trained["digits_mlp"])
    reference = Deployable(trainer.network, 10).eval()
    _, untrained = api.check(CONFIGS / "digits_mlp.yaml")  # same layers, its initial weights
    other = Deployable(untrained.network, 10).eval()
    target = tmp_path / "model.pt2"
    target.write_bytes(b"an earlier export")
    with pytest.raises(RunError, match="does not match the PyTorch model"):
        write_checked("pt2", other, reference, check_batch(trainer.data), target)
    assert target.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]


def test_export_of_a_regression_and_an_in_graph_adapter(cli, tmp_path: Path) -> None:
    image = tiny_digits_config(epochs=1)
    image["data"].update({"as_image": True, "channels": 3, "resize": 12, "normalize": "imagenet"})
    image["model"]["layers"][0] = {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"}
    image["model"]["layers"].insert(1, {"type": "GlobalAveragePooling2D"})
    assert cli("fit", write_config(tmp_path, image), "--run-dir", tmp_path / "image").exit_code == 0
    assert cli("export", tmp_path / "image", "--format", "onnx").exit_code == 0
    meta = json.loads((tmp_path / "image" / "best.onnx.json").read_text())
    assert meta["input"]["shape"] == [None, 1, 8, 8]  # the raw digit: channels and resize run in the graph
    assert meta["in_graph"] == "channels 1→3, resize to [12, 12], ImageNet normalization"
    assert meta["preprocessing"] == [{"op": "divide", "value": 16.0, "what": "x = x / value"}]

    regression = ["fit.epochs=1", "data.num_samples=200", "fit.device=cpu"]
    api.fit(CONFIGS / "synthetic_sequence_regression.yaml", regression, run_dir=tmp_path / "reg")
    assert cli("export", tmp_path / "reg", "--format", "torchscript").exit_code == 0
    meta = json.loads((tmp_path / "reg" / "best.torchscript.json").read_text())
    assert meta["task"] == "regression" and meta["class_names"] is None
    assert meta["output"] == {"name": "output", "shape": [None, 1], "kind": "values", "activation": None}


def test_unknown_format_is_a_usage_error(cli, trained) -> None:
    result = cli("export", trained["digits_mlp"], "--format", "tflite")
    assert result.exit_code == 2
    assert "unknown export format 'tflite'" in result.output and "onnx, pt2, torchscript" in result.output


def test_onnx_without_its_packages_says_what_to_install(
    cli, trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if `dltrain[export]` were not installed
    result = cli("export", trained["digits_mlp"], "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2
    assert "pip install 'dltrain[export]'" in result.output and "onnxruntime" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_export_never_overwrites_the_checkpoint(cli, trained) -> None:
    checkpoint = trained["digits_rnn"]
    before = checkpoint.read_bytes()
    result = cli("export", checkpoint, "--format", "torchscript", "-o", checkpoint)
    assert result.exit_code == 2 and "the checkpoint itself" in result.output
    assert checkpoint.read_bytes() == before

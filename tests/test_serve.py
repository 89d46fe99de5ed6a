"""`dltrain serve` over real HTTP on 127.0.0.1: every input kind answers as `predict --json` does.

Models are trained once per module (tiny, in-process); each server is a real child
process on a free port, stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import REPO, Cli, tiny_digits_config, write_config
from data_files import blob_images, write_png, write_table
from sklearn.datasets import load_digits

from dltrain.serve.process import ServerProcess, running_server
from dltrain.serve.spec import InputSpec, InstanceError

pytestmark = pytest.mark.slow
ENV = {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
ATOL = 2e-6  # a sample batched with others may differ from its row in `predict` by float32 rounding


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny trained models: digits MLP (numbers; and its ONNX export), digits CNN (images), flowers (records)."""
    root = tmp_path_factory.mktemp("models")
    cli = Cli()
    flowers = {
        "name": "flowers",
        "seed": 0,
        "data": {
            "source": "csv",
            "path": str(write_table(root / "flowers.csv")),
            "target": "species",
            "features": ["petal_length", "petal_width", "soil"],
            "normalize": "standardize",
        },
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "units": 3, "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": {"type": "adam", "lr": 0.01}, "loss": "categorical_crossentropy"},
        "fit": {"epochs": 5, "batch_size": 32, "device": "cpu"},
    }
    cnn = tiny_digits_config(epochs=2)
    cnn["data"]["as_image"] = True
    cnn["model"]["layers"] = [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ]
    for name, config in (("mlp", tiny_digits_config()), ("cnn", cnn), ("flowers", flowers)):
        result = cli("fit", write_config(root, config, f"{name}.yaml"), "--run-dir", root / name)
        assert result.exit_code == 0, result.output
    exported = cli("export", root / "mlp", "--format", "onnx")
    assert exported.exit_code == 0, exported.output
    return {"mlp": root / "mlp", "onnx": root / "mlp" / "best.onnx", "cnn": root / "cnn", "flowers": root / "flowers"}


def predict_json(model: Path, *inputs: Path) -> list[dict[str, Any]]:
    result = Cli()("predict", model, *inputs, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["predictions"]


def assert_rows_close(got: list[dict[str, Any]], expected: list[dict[str, Any]], atol: float = ATOL) -> None:
    """The same predictions and classes in the same order; probabilities within `atol`."""
    assert [(r["input"], r["prediction"], [c for c, _ in r["top_k"]]) for r in got] == [
        (r["input"], r["prediction"], [c for c, _ in r["top_k"]]) for r in expected
    ]
    for g, e in zip(got, expected):
        assert np.allclose([p for _, p in g["top_k"]], [p for _, p in e["top_k"]], atol=atol), (g, e)


def digits(count: int) -> np.ndarray:
    return load_digits().data[:count].astype(np.float32)  # (N, 64), values 0..16


def server(model: Path, *args: str, tmp_path: Path, module: str = "dltrain") -> Any:
    return running_server(model, *args, module=module, log=tmp_path / "server.log", env=ENV)


def test_checkpoint_server_numbers_match_predict_single_batched_and_64_clients(
    models: dict[str, Path], tmp_path: Path
) -> None:
    x = digits(64)
    np.save(tmp_path / "many.npy", x)
    expected = predict_json(models["mlp"], tmp_path / "many.npy")
    with server(models["mlp"], "--max-instances", "100", "--max-request-mb", "0.05", tmp_path=tmp_path) as srv:
        batch = httpx.post(srv.url + "/predict", json={"instances": x[:8].tolist()}).json()["predictions"]
        assert batch == expected[:8]  # one request of 8 is one forward pass of 8, as in predict

        async def one(client: httpx.AsyncClient, i: int) -> dict[str, Any]:
            response = await client.post("/predict", json={"instances": [x[i].tolist()]})
            assert response.status_code == 200, response.text
            return {**response.json()["predictions"][0], "input": i}

        async def clients() -> list[dict[str, Any]]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=srv.url, limits=limits, timeout=60) as client:
                return await asyncio.gather(*(one(client, i) for i in range(64)))

        assert_rows_close(asyncio.run(clients()), expected)
        meta = httpx.get(srv.url + "/metadata").json()
        assert meta["serving"]["batches"] < meta["serving"]["samples"] == 8 + 64  # some requests shared a batch
        assert meta["task"] == "classification" and meta["class_names"] == [str(i) for i in range(10)]
        assert meta["input"]["shape"] == [64] and meta["preprocessing"] == [
            {"op": "divide", "value": 16.0, "what": "x = x / value"}
        ]
        schema = httpx.get(srv.url + "/openapi.json").json()["components"]["schemas"]["PredictRequest"]
        assert schema["properties"]["instances"]["items"]["anyOf"][0]["minItems"] == 64

        bad = httpx.post(srv.url + "/predict", json={"instances": [x[0].tolist(), [1, 2], "seven", [1.0] * 63 + ["a"]]})
        assert bad.status_code == 422 and "Traceback" not in bad.text
        assert [e["loc"] for e in bad.json()["detail"]] == [["body", "instances", i] for i in (1, 2, 3)]
        assert "shape [64]; received shape [2]" in bad.json()["detail"][0]["msg"]
        for body in ({"instances": []}, {"rows": [[0] * 64]}, {"instances": [[0] * 64], "top_k": 0}):
            response = httpx.post(srv.url + "/predict", json=body)
            assert response.status_code == 422 and response.json()["detail"][0]["loc"][0] == "body", body
        not_json = httpx.post(srv.url + "/predict", content=b"{nope", headers={"content-type": "application/json"})
        assert not_json.status_code == 422
        nan = httpx.post(
            srv.url + "/predict",
            content=b'{"instances": [[NaN' + b", 0" * 63 + b"]]}",
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 422 and "finite" in nan.text
        too_many = httpx.post(srv.url + "/predict", json={"instances": [[0] * 64] * 101})
        assert too_many.status_code == 413 and "--max-instances" in too_many.text
        too_big = httpx.post(srv.url + "/predict", json={"instances": [[1.2345678] * 64] * 99})
        assert too_big.status_code == 413 and "--max-request-mb" in too_big.text
        files = httpx.post(srv.url + "/predict/files", files=[("files", ("a.png", b"png"))])
        assert files.status_code == 422 and "not images" in files.text
        assert httpx.get(srv.url + "/health").json() == {"status": "ok"}  # still serving after all that


def test_image_server_base64_and_uploads_match_predict(models: dict[str, Path], tmp_path: Path) -> None:
    images, _ = blob_images(6, 4, 1, 12, seed=3)  # 12x12 grey PNGs: resized to 8x8 as predict does
    paths = [write_png(tmp_path / f"d{i}.png", image) for i, image in enumerate(images)]
    expected = predict_json(models["cnn"], *paths)
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in paths]
    with server(models["cnn"], tmp_path=tmp_path) as srv:
        body = {"instances": [encoded[0], {"b64": encoded[1]}, *encoded[2:]]}
        got = httpx.post(srv.url + "/predict", json=body).json()["predictions"]
        assert got == [{**row, "input": i} for i, row in enumerate(expected)]
        uploads = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
        assert httpx.post(srv.url + "/predict/files", files=uploads).json()["predictions"] == expected

        bad = httpx.post(srv.url + "/predict", json={"instances": [encoded[0], "%%%", {"b64": "aGVsbG8="}]})
        detail = bad.json()["detail"]
        assert bad.status_code == 422 and [e["loc"] for e in detail] == [
            ["body", "instances", 1],
            ["body", "instances", 2, "b64"],
        ]
        assert "base64" in detail[0]["msg"] and "not a readable image" in detail[1]["msg"]
        broken = httpx.post(srv.url + "/predict/files", files=[uploads[0], ("files", ("notes.txt", b"hello"))])
        assert broken.status_code == 422
        assert broken.json()["detail"][0]["loc"] == ["body", "files", 1, "notes.txt"]


def test_table_server_records_match_predict(models: dict[str, Path], tmp_path: Path) -> None:
    rows = [
        {"petal_length": 1.4, "petal_width": 0.3, "soil": "clay"},
        {"petal_length": "5.6", "petal_width": 2.0, "soil": "peat", "species": "ignored"},  # CSV-style cells
        {"soil": " sand", "petal_width": 1.1, "petal_length": 3.5},
    ]
    (tmp_path / "new.csv").write_text("soil,petal_width,petal_length\nclay,0.3,1.4\npeat,2.0,5.6\n sand,1.1,3.5\n")
    expected = predict_json(models["flowers"], tmp_path / "new.csv")
    with server(models["flowers"], tmp_path=tmp_path) as srv:
        assert httpx.post(srv.url + "/predict", json={"instances": rows}).json()["predictions"] == expected
        meta = httpx.get(srv.url + "/metadata").json()["input"]
        assert meta["kind"] == "table" and meta["features"] == ["petal_length", "petal_width", "soil"]
        bad = httpx.post(
            srv.url + "/predict",
            json={
                "instances": [rows[0], {"petal_length": 1.0, "petal_width": 0.2}, {**rows[0], "petal_width": "wide"}]
            },
        )
        detail = bad.json()["detail"]
        assert bad.status_code == 422 and [e["loc"] for e in detail] == [
            ["body", "instances", 1, "soil"],
            ["body", "instances", 2, "petal_width"],
        ]
        assert "missing" in detail[0]["msg"] and "'wide' is not a number" in detail[1]["msg"]


def test_onnx_server_imports_no_torch_agrees_with_predict_and_finishes_in_flight_on_sigterm(
    models: dict[str, Path], tmp_path: Path
) -> None:
    x = digits(16)
    np.save(tmp_path / "x.npy", x)
    expected = predict_json(models["mlp"], tmp_path / "x.npy")
    # `dltrain serve` (the CLI imports the library lazily), two worker processes
    srv = ServerProcess(models["onnx"], "--workers", "2", module="dltrain", log=tmp_path / "server.log", env=ENV)
    try:
        srv.wait_healthy()
        meta = httpx.get(srv.url + "/metadata").json()
        assert meta["runtime"] == "onnxruntime" and meta["process"]["torch_imported"] is False
        assert_rows_close(
            httpx.post(srv.url + "/predict", json={"instances": x.tolist()}, timeout=60).json()["predictions"],
            expected,
            atol=1e-5,
        )

        body = json.dumps({"instances": x[:1].tolist()}).encode()

        def slow_body() -> Any:  # the request is still arriving when SIGTERM does
            yield body[:100]
            time.sleep(1.0)
            yield body[100:]

        answer: dict[str, Any] = {}
        request = threading.Thread(
            target=lambda: answer.update(
                response=httpx.post(
                    srv.url + "/predict", content=slow_body(), headers={"content-type": "application/json"}, timeout=60
                )
            )
        )
        request.start()
        time.sleep(0.4)
        srv.process.terminate()  # SIGTERM to the parent, which stops its workers gracefully
        request.join(60)
        assert answer["response"].status_code == 200, srv.output()
        assert answer["response"].json()["predictions"][0]["prediction"] == expected[0]["prediction"]
        srv.process.wait(60)
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/health")
    finally:
        srv.stop()


def test_start_up_errors_are_one_message_and_exit_2(models: dict[str, Path], tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    result = cli("serve", tmp_path / "bad.pt")
    assert result.exit_code == 2 and "not a readable checkpoint" in result.output

    shutil.copy(models["onnx"], tmp_path / "model.onnx")
    result = cli("serve", tmp_path / "model.onnx")
    assert result.exit_code == 2 and "model.onnx.json" in result.output and "dltrain export" in result.output

    meta = json.loads(Path(str(models["onnx"]) + ".json").read_text())
    (tmp_path / "model.onnx.json").write_text(json.dumps({**meta, "class_names": ["a", "b", "c"]}))
    result = cli("serve", tmp_path / "model.onnx")
    assert result.exit_code == 2 and "failed its self-check" in result.output and "names 3 classes" in result.output

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = cli("serve", models["onnx"], "--port", port)
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is already in use" in result.output

    result = cli("serve", models["onnx"], "--max-batch", "0")
    assert result.exit_code == 2 and "--max-batch must be 1 or more" in result.output
    assert "Traceback" not in result.output


def test_series_records_read_as_the_window_predict_builds() -> None:
    spec = InputSpec((3, 2), table={"columns": ["temp", "load"], "window": 3})
    window = [{"temp": 0.1, "load": 1.0}, {"temp": 0.2, "load": "1.5"}, {"temp": 0.3, "load": 2.0, "date": "d3"}]
    assert spec.read(window).tolist() == np.array([[0.1, 1.0], [0.2, 1.5], [0.3, 2.0]], dtype=np.float32).tolist()
    assert spec.read([[0, 1], [2, 3], [4, 5]]).shape == (3, 2)
    with pytest.raises(InstanceError) as error:
        spec.read(window[:1] + [{"temp": 0.2}] + window[2:])
    assert error.value.field == "1.load" and "missing" in error.value.message

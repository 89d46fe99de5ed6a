"""Text data end to end: sources, tokenizers fitted on the training split, classification, a language
model, predict --text, generate, export with the tokenizer, exact resume, and clear errors."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from conftest import REPO, write_config
from test_resume import _assert_same_run

from dltrain import api
from dltrain.data import load_data
from dltrain.data.text import windows
from dltrain.data.tokenize import fit_tokenizer, from_json
from dltrain.errors import DataError
from dltrain.schema.data import TextCsvParams, TextFileParams, TextFolderParams, TokenizerParams
from dltrain.serve.process import running_server
from dltrain.train import checkpoint

GOOD = ["great", "lovely", "superb", "fine", "happy", "bright", "warm", "kind"]
BAD = ["awful", "dreadful", "poor", "sad", "grim", "cold", "rude", "dull"]
FILLER = ["the", "film", "was", "a", "story", "and", "cast", "very", "quite", "with", "plot"]


def sentiment_rows(n: int = 160, seed: int = 0) -> list[tuple[str, str]]:
    """Short sentences whose class is told by their sentiment words (seeded)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.choices(FILLER, k=rng.randint(3, 8)) + rng.choices(GOOD if label == "positive" else BAD, k=2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def classifier_config(data: dict[str, Any], epochs: int = 6) -> dict[str, Any]:
    return {
        "name": "text",
        "seed": 0,
        "data": data,
        "model": {
            "layers": [
                {"type": "Embedding", "input_dim": 64, "output_dim": 16},
                {"type": "GlobalAveragePooling1D"},
                {"type": "Dense", "units": 2, "activation": "softmax"},
            ]
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.05},
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": epochs, "batch_size": 16, "validation_split": 0.2, "device": "cpu"},
    }


def lm_config(path: Path, vocab: int, epochs: int = 2) -> dict[str, Any]:
    return {
        "name": "lm",
        "seed": 0,
        "data": {"source": "text_file", "path": str(path), "sequence_length": 16, "tokenizer": {"type": "char"}},
        "model": {
            "layers": [
                {"type": "Embedding", "input_dim": 64, "output_dim": 16},
                {"type": "LSTM", "units": 32, "return_sequences": True},
                {"type": "Dropout", "rate": 0.1},
                {"type": "Dense", "units": vocab},
            ]
        },
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.02},
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": epochs, "batch_size": 32, "validation_split": 0.1, "device": "cpu"},
    }


PROSE = "".join(
    f"def step_{i}(value):\n    return value * {i % 7} + {i % 5}\n\n" for i in range(120)
)  # 4 kB of regular running text


# --- tokenizers -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["word", "char", "bpe", "wordpiece"])
def test_every_tokenizer_pads_with_id_0_and_reads_back(kind: str) -> None:
    texts = [text for text, _ in sentiment_rows(40)]
    tokenizer = fit_tokenizer(TokenizerParams(type=kind, vocab_size=300), texts)
    assert tokenizer.id_to_token(0) == "[PAD]" and tokenizer.id_to_token(1) == "[UNK]"
    ids = tokenizer.encode(texts[0], add_special_tokens=False).ids
    assert ids and 0 not in ids
    again = from_json(tokenizer.to_str())  # what a checkpoint stores
    assert again.encode(texts[0], add_special_tokens=False).ids == ids
    if kind in ("char", "bpe"):  # lossless: decoding gives the text back
        assert again.decode(ids) == texts[0]


def test_tokenizer_is_fitted_on_the_training_split_only(tmp_path: Path) -> None:
    rows = sentiment_rows(60)
    rows = [(f"{text} zzz{i}", label) for i, (text, label) in enumerate(rows)]  # one word unique to each row
    params = TextCsvParams(source="text_csv", path=write_csv(tmp_path / "t.csv", rows), tokenizer={"max_length": 16})
    data = load_data(params, "classification", 0.2)
    vocab = from_json(data.preprocessing.tokenizer).get_vocab()
    assert data.test is not None and data.val is not None
    held = len(data.test) + len(data.val)
    unique = [f"zzz{i}" for i in range(len(rows))]
    assert sum(word in vocab for word in unique) == len(rows) - held  # no word of a held-out text
    assert data.train.x.dtype == torch.int64 and data.train.x.shape[1] == 16
    assert data.vocab_size == len(vocab) and data.target_width == 2


def test_language_model_windows_predict_the_next_token() -> None:
    ids = np.arange(10, dtype=np.int64)
    x, y = windows(ids, 4, 3)
    assert x.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6]]
    assert y.tolist() == [[1, 2, 3, 4], [4, 5, 6, 7]]


# --- classification ---------------------------------------------------------------------


def test_text_csv_trains_predicts_text_and_exports_with_its_tokenizer(cli, tmp_path: Path) -> None:
    data = {"source": "text_csv", "path": str(write_csv(tmp_path / "s.csv", sentiment_rows())),
            "tokenizer": {"type": "word", "max_length": 12, "lowercase": True}}  # fmt: skip
    config = write_config(tmp_path, classifier_config(data))
    assert cli("fit", config, "--run-dir", "run").exit_code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9

    (tmp_path / "review.txt").write_text("A GREAT film with a superb cast", encoding="utf-8")
    result = cli("predict", "run", "review.txt", "--text", "awful and dull plot", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["predictions"]
    assert [r["input"] for r in rows] == ["review.txt", "awful and dull plot"]
    assert [r["prediction"] for r in rows] == ["positive", "negative"]

    exported = cli("export", "run/best.pt", "--format", "onnx")
    assert exported.exit_code == 0, exported.output
    meta = json.loads((tmp_path / "run" / "best.onnx.json").read_text())
    assert meta["input"]["dtype"] == "int64" and meta["class_names"] == ["negative", "positive"]
    import onnxruntime
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(tmp_path / "run" / meta["tokenizer"]))
    ids = np.array([tokenizer.encode("awful and dull plot", add_special_tokens=False).ids], dtype=np.int64)
    session = onnxruntime.InferenceSession(str(tmp_path / "run" / "best.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"input": ids})[0][0]
    assert probabilities[0] == pytest.approx(dict(rows[1]["top_k"])["negative"], abs=1e-5)

    # the torch-free ONNX server reads text instances with the tokenizer beside the export
    env = {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with running_server(tmp_path / "run" / "best.onnx", log=tmp_path / "server.log", env=env) as server:
        served = httpx.post(server.url + "/predict", json={"instances": ["awful and dull plot"]}).json()
        assert httpx.get(server.url + "/metadata").json()["input"]["kind"] == "text"
    assert served["predictions"][0]["prediction"] == "negative"
    assert served["predictions"][0]["top_k"][0][1] == pytest.approx(rows[1]["top_k"][0][1], abs=1e-5)


def test_text_folder_reads_its_own_splits(cli, tmp_path: Path) -> None:
    for split, rows in (("train", sentiment_rows(60)), ("val", sentiment_rows(10, 1)), ("test", sentiment_rows(10, 2))):
        for i, (text, label) in enumerate(rows):
            folder = tmp_path / "reviews" / split / label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.txt").write_text(text, encoding="utf-8")
    data = load_data(TextFolderParams(source="text_folder", path=tmp_path / "reviews"), "classification", 0.2)
    assert data.class_names == ["negative", "positive"]
    assert (len(data.train), len(data.val or []), len(data.test or [])) == (60, 10, 10)


# --- language model ---------------------------------------------------------------------


def test_language_model_trains_generates_deterministically_and_resumes_exactly(cli, tmp_path: Path) -> None:
    (tmp_path / "code.txt").write_text(PROSE, encoding="utf-8")
    vocab = load_data(
        TextFileParams(source="text_file", path=tmp_path / "code.txt", sequence_length=16, tokenizer={"type": "char"}),
        "classification",
        0.1,
    ).vocab_size
    assert vocab is not None

    def config(epochs: int, name: str) -> Path:
        return write_config(tmp_path, lm_config(tmp_path / "code.txt", vocab, epochs), name)

    assert cli("fit", config(4, "four.yaml"), "--run-dir", "full").exit_code == 0
    assert cli("fit", config(2, "two.yaml"), "--run-dir", "part").exit_code == 0
    resumed = cli("fit", "--resume", "part", "--set", "fit.epochs=4")
    assert resumed.exit_code == 0, resumed.output
    full = torch.load("full/last.pt", weights_only=True)
    _assert_same_run(full, torch.load("part/last.pt", weights_only=True))
    assert full["tokenizer"] == torch.load("part/last.pt", weights_only=True)["tokenizer"]
    history = full["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"] and 0 < history[-1]["val_accuracy"] <= 1

    args = ("generate", "full", "--prompt", "def step_", "--max-tokens", "30", "--temperature", "0.8")
    first, again = cli(*args, "--seed", "3"), cli(*args, "--seed", "3")
    assert first.exit_code == 0, first.output
    assert first.output == again.output and first.output.startswith("def step_") and len(first.output) > 20
    assert cli("predict", "full", "--text", "x").exit_code == 2  # a language model is not a classifier


# --- errors -----------------------------------------------------------------------------


def _load_error(params: Any) -> str:
    with pytest.raises(DataError) as error:
        load_data(params, "classification", 0.2)
    return str(error.value)


def test_a_missing_column_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", sentiment_rows(10), ("review", "label"))
    message = _load_error(TextCsvParams(source="text_csv", path=path, text="reviews"))
    assert "no column 'reviews'" in message and "review" in message


def test_an_empty_text_is_named_by_file_and_line(tmp_path: Path) -> None:
    rows = sentiment_rows(10)
    rows[3] = ("   ", "positive")
    message = _load_error(TextCsvParams(source="text_csv", path=write_csv(tmp_path / "s.csv", rows)))
    assert "line 5" in message and "empty text" in message


def test_bytes_that_are_not_utf8_are_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"text,label\ngood film,positive\nbad \xff\xfe film,negative\n")
    message = _load_error(TextCsvParams(source="text_csv", path=path))
    assert "s.csv' line 3" in message and "UTF-8" in message
    (tmp_path / "c.txt").write_bytes(b"one\ntwo\n\xc3\x28\n")
    message = _load_error(TextFileParams(source="text_file", path=tmp_path / "c.txt"))
    assert "c.txt' line 3" in message


def test_texts_longer_than_max_length_without_truncation_are_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", sentiment_rows(20))
    params = TextCsvParams(source="text_csv", path=path, tokenizer={"max_length": 4, "truncation": False})
    message = _load_error(params)
    assert "s.csv' line" in message and "max_length=4" in message


def test_generate_refuses_a_classifier(cli, tmp_path: Path) -> None:
    data = {"source": "text_csv", "path": str(write_csv(tmp_path / "s.csv", sentiment_rows(40)))}
    assert cli("fit", write_config(tmp_path, classifier_config(data, epochs=1)), "--run-dir", "run").exit_code == 0
    result = cli("generate", "run", "--prompt", "hello")
    assert result.exit_code == 2 and "text classifier" in result.output
    evaluated = cli("evaluate", "run", "--json")  # the data read again, tokenized with the stored tokenizer
    assert evaluated.exit_code == 0, evaluated.output
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["accuracy"]
    assert json.loads(evaluated.output)["accuracy"] == pytest.approx(stored)
    assert api.predict("run", [], texts=["great"])["predictions"][0]["prediction"] in ("positive", "negative")


def test_padding_changes_no_prediction_of_a_trained_transformer(cli, tmp_path: Path) -> None:
    data = {"source": "text_csv", "path": str(write_csv(tmp_path / "s.csv", sentiment_rows(60))),
            "tokenizer": {"max_length": 24}}  # fmt: skip
    config = classifier_config(data, epochs=2)
    config["model"]["layers"] = [
        {"type": "PositionalEmbedding", "output_dim": 16},
        {"type": "TransformerEncoder", "num_heads": 2, "ff_dim": 32},
        {"type": "GlobalAveragePooling1D"},
        {"type": "Dense", "units": "auto", "activation": "softmax"},
    ]
    assert cli("fit", write_config(tmp_path, config), "--run-dir", "run").exit_code == 0
    saved = checkpoint.load("run")
    network, tokenizer = api.restore_network(saved), from_json(saved.tokenizer)
    tokenizer.no_padding()
    ids = tokenizer.encode("a superb film with a lovely cast", add_special_tokens=False).ids
    padded = [torch.tensor([ids + [0] * (length - len(ids))]) for length in (len(ids), 12, 24)]
    with torch.inference_mode():
        outputs = [network(x) for x in padded]
    for other in outputs[1:]:
        torch.testing.assert_close(other, outputs[0], rtol=0, atol=1e-6)
    predicted = api.predict("run", [], texts=["a superb film with a lovely cast"])["predictions"][0]
    best = outputs[0].softmax(-1).max().item()
    assert dict(predicted["top_k"])[predicted["prediction"]] == pytest.approx(best, abs=1e-5)


def test_a_tokenizer_json_is_used_as_it_is(tmp_path: Path) -> None:
    rows = sentiment_rows(40)
    fitted = fit_tokenizer(TokenizerParams(type="wordpiece", vocab_size=120), [text for text, _ in rows])
    fitted.save(str(tmp_path / "tokenizer.json"))
    path = write_csv(tmp_path / "s.csv", rows)
    params = TextCsvParams(
        source="text_csv", path=path, tokenizer={"path": tmp_path / "tokenizer.json", "max_length": 9}
    )
    data = load_data(params, "classification", 0.2)
    assert data.vocab_size == fitted.get_vocab_size() and data.train.x.shape[1] == 9
    assert from_json(data.preprocessing.tokenizer).get_vocab() == fitted.get_vocab()
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    message = _load_error(TextCsvParams(source="text_csv", path=path, tokenizer={"path": tmp_path / "bad.json"}))
    assert "bad.json' is not a readable tokenizer.json" in message

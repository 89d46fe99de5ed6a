"""Fault injection, text models: texts that cannot be tokenized (empty, lone surrogates from a JSON
escape or a command line of other bytes), temperatures that are not numbers, and text data too small
to leave a training sample, each one message and exit 2 (a 422 reason for the server's reader).

Self-contained beside the other fault files (only conftest's `cli`); one tiny run of each kind.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import assert_refused

from dltrain import api
from dltrain.serve.spec import InputSpec, InstanceError, read_text_instance
from dltrain.train import checkpoint

PROSE = "".join(f"def step_{i}(value):\n    return value * {i % 7}\n\n" for i in range(60))


def _write(folder: Path, config: dict[str, Any], name: str) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _classifier(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": 0,
        "data": data,
        "model": {
            "layers": [
                {"type": "Embedding", "input_dim": 64, "output_dim": 8},
                {"type": "GlobalAveragePooling1D"},
                {"type": "Dense", "units": 2, "activation": "softmax"},
            ]
        },
        "compile": {"loss": "sparse_categorical_crossentropy"},
        "fit": {"epochs": 1, "batch_size": 16, "validation_split": 0.2, "device": "cpu"},
    }


def _rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """best.pt of a tiny text classifier and of a tiny character language model."""
    folder = tmp_path_factory.mktemp("text")
    words = ["good fine film", "bad dull plot", "fine good cast", "dull bad story"]
    _rows(folder / "s.csv", [(words[i % 4], "pos" if i % 2 == 0 else "neg") for i in range(40)])
    data = {"source": "text_csv", "path": str(folder / "s.csv"), "tokenizer": {"type": "word", "max_length": 8}}
    classifier = api.fit(_write(folder, _classifier(data), "cls.yaml"), run_dir=folder / "cls").run_dir
    (folder / "prose.txt").write_text(PROSE, encoding="utf-8")
    lm = _classifier({"source": "text_file", "path": str(folder / "prose.txt"), "sequence_length": 8})
    lm["data"]["tokenizer"] = {"type": "char"}
    lm["model"]["layers"] = [
        {"type": "Embedding", "input_dim": 64, "output_dim": 8},
        {"type": "LSTM", "units": 8, "return_sequences": True},
        {"type": "Dense", "units": "auto"},
    ]
    language = api.fit(_write(folder, lm, "lm.yaml"), run_dir=folder / "lm").run_dir
    return {"classifier": classifier / "best.pt", "lm": language / "best.pt"}


@pytest.mark.parametrize(("temperature", "shown"), [("nan", "nan"), ("inf", "inf"), ("-1", "-1")])
def test_generate_refuses_a_temperature_that_is_not_a_finite_number(cli, runs, temperature: str, shown: str) -> None:
    result = cli("generate", runs["lm"], "--prompt", "def ", "--max-tokens", "3", "--temperature", temperature)
    assert_refused(result, "--temperature", "finite", shown)


def test_generate_refuses_a_prompt_of_other_bytes(cli, runs) -> None:
    """A command line of non-UTF-8 bytes reaches Python as lone surrogates (surrogateescape)."""
    assert_refused(cli("generate", runs["lm"], "--prompt", "def \udcff", "--max-tokens", "3"), "--prompt", "UTF-8")


@pytest.mark.parametrize(("text", "words"), [("", ["--text #1", "empty"]), ("ok \udcff", ["--text #1", "UTF-8"])])
def test_predict_refuses_texts_it_cannot_read(cli, runs, text: str, words: list[str]) -> None:
    before = runs["classifier"].read_bytes()
    assert_refused(cli("predict", runs["classifier"], "--text", text), *words)
    assert runs["classifier"].read_bytes() == before


def test_predict_refuses_an_empty_text_file(cli, runs, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    assert_refused(cli("predict", runs["classifier"], tmp_path / "empty.txt"), "empty.txt", "empty")


@pytest.mark.parametrize("text", ["", "\udcff"])
def test_the_servers_reader_refuses_the_same_texts(runs, text: str) -> None:
    """What `serve` turns into a 422 (a JSON "\\udcff" escape decodes to this lone surrogate)."""
    saved = checkpoint.load(runs["classifier"])
    spec = InputSpec.from_state(saved.preprocessing, saved.tokenizer, "text")
    with pytest.raises(InstanceError, match="empty|UTF-8"):
        read_text_instance(text, spec)


def test_text_too_small_to_leave_a_training_sample_is_refused(cli, tmp_path: Path) -> None:
    _rows(tmp_path / "two.csv", [("hello there", "a"), ("bye now", "b")])
    config = _classifier({"source": "text_csv", "path": "two.csv"})
    assert_refused(cli("fit", _write(tmp_path, config, "config.yaml")), "no training sample is left", "2 in all")

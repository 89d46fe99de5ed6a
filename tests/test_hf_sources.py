"""The `hf` source beyond tables and images: a text column tokenized as `text_csv`'s is, and a dataset
loaded by name from a local Hugging Face cache the test prepares (offline: nothing is downloaded)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import write_config
from test_text import classifier_config, sentiment_rows

from dltrain.config import load_config
from dltrain.data import load_data
from dltrain.data.tokenize import from_json

datasets = pytest.importorskip("datasets")

HASH = "0123456789abcdef0123456789abcdef01234567"  # a Hub commit: the last level of a prepared cache folder


def save_reviews(folder: Path, rows: int = 160) -> None:
    """Sentiment texts as a saved `DatasetDict`: train and test splits, a ClassLabel target, a word unique to each
    row (so a vocabulary tells which texts it was fitted on)."""
    labels = datasets.ClassLabel(names=["negative", "positive"])
    features = datasets.Features({"review": datasets.Value("string"), "label": labels})
    texts = [(f"{text} zz{i}", label) for i, (text, label) in enumerate(sentiment_rows(rows))]
    parts = {"train": texts[: rows * 3 // 4], "test": texts[rows * 3 // 4 :]}
    datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"review": [t for t, _ in part], "label": [labels.str2int(label) for _, label in part]},
                features=features,
            )
            for name, part in parts.items()
        }
    ).save_to_disk(str(folder))


def text_data(path: str) -> dict:
    return {"source": "hf", "path": path, "text": "review", "tokenizer": {"max_length": 12, "lowercase": True}}


def text_config(data: dict, epochs: int = 6) -> dict:
    """test_text's classifier, its Embedding sized by the fitted vocabulary (every row adds a word)."""
    config = classifier_config(data, epochs)
    del config["model"]["layers"][0]["input_dim"]
    return config


def test_a_text_column_trains_with_the_tokenizer_of_its_training_split(cli, tmp_path: Path) -> None:
    save_reviews(tmp_path / "reviews")
    config = write_config(tmp_path, text_config(text_data("reviews")))
    bundle = load_data(load_config(config).config.data, "classification", 0.2)
    vocab = from_json(bundle.preprocessing.tokenizer).get_vocab()
    assert bundle.train.x.dtype == torch.int64 and bundle.input_shape == (12,)
    assert bundle.test is not None and len(bundle.test) == 40  # the dataset's own test split
    assert sum(f"zz{i}" in vocab for i in range(160)) == len(bundle.train)  # train rows' words only
    assert all(f"zz{i}" not in vocab for i in range(120, 160))  # never a word of the test split

    assert cli("fit", config, "--run-dir", "run").exit_code == 0
    saved = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert saved["class_names"] == ["negative", "positive"] and saved["tokenizer"] is not None
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["accuracy"]
    assert stored >= 0.9
    evaluated = cli("evaluate", "run", "--json")  # read again, tokenized with the stored tokenizer
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["accuracy"] == pytest.approx(stored)
    result = cli("predict", "run", "--text", "A GREAT film with a superb cast", "--text", "awful and dull", "--json")
    assert result.exit_code == 0, result.output
    assert [r["prediction"] for r in json.loads(result.output)["predictions"]] == ["positive", "negative"]


def test_text_column_mistakes_are_named(cli, tmp_path: Path) -> None:
    save_reviews(tmp_path / "reviews", rows=40)
    for data, expected in (
        ({**text_data("reviews"), "text": "reviw"}, "has no column 'reviw'. Did you mean 'review'?"),
        ({**text_data("reviews"), "text": "label"}, "column 'label' of 'reviews[train]' holds int64 values, not text"),
        ({**text_data("reviews"), "features": ["label"]}, "received text and features"),
        ({**text_data("reviews"), "streaming": True}, "tokenized in memory"),
    ):
        result = cli("check", write_config(tmp_path, text_config(data)))
        assert result.exit_code == 2 and expected in result.output, result.output
        assert "Traceback" not in result.output


def prepare_cache(cache: Path, name: str, source: Path) -> None:
    """What `load_dataset(name)` leaves in `HF_DATASETS_CACHE` after a download: the Parquet builder's Arrow
    files under `<name>/default/0.0.0/<commit>/` (here prepared from local Parquet files: no network)."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    files = {}
    for split, dataset in datasets.load_from_disk(str(source)).items():
        files[split] = str(source.parent / f"{name}-{split}.parquet")
        dataset.to_parquet(files[split])
    builder = Parquet(data_files=files, dataset_name=name, config_id="default", hash=HASH, cache_dir=str(cache))
    builder.download_and_prepare()


def test_a_dataset_in_the_local_cache_is_loaded_by_name_offline(cli, tmp_path: Path) -> None:
    save_reviews(tmp_path / "saved")
    prepare_cache(tmp_path / "hf" / "datasets", "tiny_reviews", tmp_path / "saved")
    assert list((tmp_path / "hf" / "datasets" / "tiny_reviews" / "default" / "0.0.0" / HASH).glob("*.arrow"))
    work = tmp_path / "work"  # no folder named tiny_reviews here: the name can only come from the cache
    work.mkdir()
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    env |= {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    config = write_config(work, text_config(text_data("tiny_reviews"), epochs=3))
    result = cli.subprocess("fit", config, "--run-dir", "run", cwd=work, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.8

    # A name with its owner, as the Hub names most datasets, is cached as `owner___name`.
    cache = tmp_path / "hf" / "datasets"
    (cache / "tiny_reviews").rename(cache / "someone___tiny_reviews")
    owned = write_config(work, text_config(text_data("someone/tiny_reviews"), epochs=3), "owned.yaml")
    result = cli.subprocess("check", owned, cwd=work, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # The cached rows, read by name: the data report counts them.
    assert re.search(r"train\W+96\b", result.stdout) and re.search(r"test\W+40\b", result.stdout), result.stdout

    empty = {**env, "HF_DATASETS_CACHE": str(tmp_path / "empty")}
    result = cli.subprocess("check", config, cwd=work, env=empty)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "data.path: 'tiny_reviews' is neither" in result.stderr + result.stdout
    assert str(tmp_path / "empty") in result.stderr + result.stdout and "Traceback" not in result.stderr

"""The two text presets against the baselines issue 13 names, on the same splits.

    python -m bench.text_baselines [--runs DIR]

- `stdlib_docstrings` classification: TF-IDF (words and word pairs) + scikit-learn's
  LogisticRegression, fitted on the training split the preset trains on (validation
  texts left out, as the preset does not train on them), scored on the same test split.
- `stdlib_char_gpt` language model: the unigram entropy of the tokens of the validation and test parts
  (each token's frequency in the training part, add-one smoothed), in bits per token;
  the preset's losses (nats per token) are converted to bits.

Each preset is trained with `dltrain fit` (in a temporary folder, or `--runs`) and its
`metrics.json` read; the numbers are printed as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from dltrain.config import load_config
from dltrain.data.stdlib import stdlib_docstrings, stdlib_source
from dltrain.data.text import classified_splits, running_splits
from dltrain.data.tokenize import encode_running, from_json

PRESETS = Path(__file__).resolve().parents[1] / "dltrain" / "configs"


def fit(preset: str, runs: Path) -> dict:
    run = runs / preset
    subprocess.run(
        [sys.executable, "-m", "dltrain", "fit", str(PRESETS / f"{preset}.yaml"), "--run-dir", str(run)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads((run / "metrics.json").read_text())


def tfidf_baseline(preset: str) -> float:
    """Test accuracy of TF-IDF + logistic regression on the preset's own training and test texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    config = load_config(PRESETS / f"{preset}.yaml").config
    raw = stdlib_docstrings(config.data)
    train, _, test = classified_splits(raw, config.data, config.fit.validation_split, config.fit.validation_mode)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
    model = LogisticRegression(max_iter=2000, C=10.0)
    model.fit(vectorizer.fit_transform(train.texts), train.labels)
    return float(np.mean(model.predict(vectorizer.transform(test.texts)) == np.array(test.labels)))


def unigram_bits(preset: str, tokenizer_json: str) -> tuple[float, float]:
    """Bits per token of the (validation, test) parts under the training part's token frequencies (add-one smoothed)."""
    config = load_config(PRESETS / f"{preset}.yaml").config
    raw = stdlib_source(config.data)
    train, val, test = running_splits(raw.running or "", config.data, config.fit.validation_split)
    tokenizer = from_json(tokenizer_json)
    vocab = tokenizer.get_vocab_size()
    counts = np.bincount(encode_running(tokenizer, train), minlength=vocab) + 1.0
    probabilities = counts / counts.sum()

    def bits(text: str) -> float:
        return float(-np.log2(probabilities[encode_running(tokenizer, text)]).mean())

    return bits(val or ""), bits(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=None, help="Keep the runs here (default: a temporary folder).")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        classifier = fit("stdlib_docstrings_transformer", runs)
        lm = fit("stdlib_char_gpt", runs)
        saved = torch.load(runs / "stdlib_char_gpt" / "best.pt", weights_only=True)
        report = {
            "classification_test_accuracy": round(classifier["test"]["accuracy"], 4),
            "tfidf_logreg_test_accuracy": round(tfidf_baseline("stdlib_docstrings_transformer"), 4),
            "lm_test_bits_per_token": round(lm["test"]["loss"] / math.log(2), 4),
            "lm_val_bits_per_token": round(lm["val"]["loss"] / math.log(2), 4),
        }
        unigram_val, unigram_test = unigram_bits("stdlib_char_gpt", saved["tokenizer"])
        report["unigram_val_bits_per_token"] = round(unigram_val, 4)
        report["unigram_test_bits_per_token"] = round(unigram_test, 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

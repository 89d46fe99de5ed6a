"""Text runs stopped mid-epoch resume to exactly the uninterrupted run: a Transformer classifier
(padding masked) stopped by Ctrl-C, and a GPT-style character language model killed after a
`fit.checkpoint_every` save. Both small versions of the presets, with dropout, on tiny data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from conftest import write_config
from test_named_resume import cut_and_resume
from test_preemption import At, Killed, _kill
from test_resume import CtrlCAt
from test_text import PROSE, sentiment_rows, write_csv


def transformer(data: dict[str, Any], block: dict[str, Any], head: list[dict[str, Any]]) -> dict[str, Any]:
    """Token and position embedding, one Transformer block with dropout, then `head`."""
    return {
        "name": "text",
        "seed": 0,
        "data": data,
        "model": {"layers": [{"type": "PositionalEmbedding", "output_dim": 16}, block, *head]},
        "compile": {
            "optimizer": {"type": "adam", "lr": 0.01},
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "fit": {"epochs": 2, "batch_size": 16, "validation_split": 0.2, "device": "cpu"},
    }


def test_a_text_classifier_stopped_by_ctrl_c_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    data = {"source": "text_csv", "path": str(write_csv(tmp_path / "s.csv", sentiment_rows(120))),
            "tokenizer": {"type": "word", "max_length": 12, "lowercase": True}}  # fmt: skip
    block = {"type": "TransformerEncoder", "num_heads": 2, "ff_dim": 32, "dropout": 0.2}
    head = [{"type": "GlobalAveragePooling1D"}, {"type": "Dense", "units": "auto", "activation": "softmax"}]
    saved = cut_and_resume(write_config(tmp_path, transformer(data, block, head)), CtrlCAt(2, 3), KeyboardInterrupt)
    assert saved.epoch == 1 and saved.partial["step"] == 3 and saved.tokenizer  # type: ignore[index]
    assert torch.load("whole/last.pt", weights_only=True)["tokenizer"] == saved.tokenizer


def test_a_character_language_model_killed_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    (tmp_path / "code.txt").write_text(PROSE[:2400], encoding="utf-8")
    data = {"source": "text_file", "path": "code.txt", "sequence_length": 16, "tokenizer": {"type": "char"}}
    block = {"type": "TransformerDecoder", "num_heads": 2, "ff_dim": 32, "num_layers": 1, "dropout": 0.2}
    config = transformer(data, block, [{"type": "Dense", "units": "auto"}])
    config["fit"].update(validation_split=0.1, checkpoint_every={"steps": 2})
    saved = cut_and_resume(write_config(tmp_path, config), At(2, 5, _kill), Killed)  # last.pt: step 4's
    assert saved.epoch == 1 and saved.partial["step"] == 4  # type: ignore[index]
    history = torch.load("whole/last.pt", weights_only=True)["history"]
    assert 0 < history[-1]["accuracy"] <= 1 and history[-1]["loss"] < history[0]["loss"]  # per token, and learning

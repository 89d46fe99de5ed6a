"""The loss is chosen for the output's shape when the trainer is built: PyTorch's own cross-entropy for
`[C]` outputs, and for a language model's `[T, V]` outputs the tokens flattened into the batch,
which gives the same numbers as cross-entropy with the classes on axis 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_digits_config, write_config
from test_text import PROSE

from dltrain.build import build_trainer
from dltrain.config import load_config
from dltrain.nn.losses import build_loss
from dltrain.schema.losses import SparseCategoricalParams


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_per_token_cross_entropy_equals_cross_entropy_over_axis_1(smoothing: float) -> None:
    params = SparseCategoricalParams(type="sparse_categorical_crossentropy", label_smoothing=smoothing)
    logits = torch.randn(4, 9, 17, generator=torch.Generator().manual_seed(0), requires_grad=True)  # (B, T, V)
    target = torch.randint(0, 17, (4, 9), generator=torch.Generator().manual_seed(1))  # (B, T)
    flat = build_loss(params, (9, 17))(logits, target)
    (flat_grad,) = torch.autograd.grad(flat, logits)
    over_axis_1 = F.cross_entropy(logits.transpose(1, 2), target, label_smoothing=smoothing)  # (B, V, T)
    (grad,) = torch.autograd.grad(over_axis_1, logits)
    assert flat.item() == pytest.approx(over_axis_1.item(), abs=1e-6)
    assert torch.allclose(flat_grad, grad, atol=1e-7)
    assert type(build_loss(params, (17,))) is torch.nn.CrossEntropyLoss  # [C] outputs: no Python of ours per step


def test_a_language_models_loss_and_token_accuracy_are_the_per_token_ones(tmp_path: Path) -> None:
    (tmp_path / "code.txt").write_text(PROSE[:1600], encoding="utf-8")
    config = tiny_digits_config(batch_size=16, validation_split=0.2)
    config["data"] = {"source": "text_file", "path": "code.txt", "sequence_length": 16, "tokenizer": {"type": "char"}}
    config["model"]["layers"] = [
        {"type": "PositionalEmbedding", "output_dim": 16},
        {"type": "TransformerDecoder", "num_heads": 2, "ff_dim": 32},
        {"type": "Dense", "units": "auto"},
    ]
    config["compile"]["loss"] = "sparse_categorical_crossentropy"
    trainer = build_trainer(load_config(write_config(tmp_path, config)), training=True)
    trainer.train_epoch(trainer.prepare_training(), 1)
    val = trainer.splits["val"]
    reported = trainer.evaluate(val)
    with torch.inference_mode():
        logits = trainer.network(val.x)  # (N, T, V)
    assert reported["loss"] == pytest.approx(F.cross_entropy(logits.transpose(1, 2), val.y).item(), abs=1e-6)
    assert reported["accuracy"] == pytest.approx((logits.argmax(-1) == val.y).double().mean().item(), abs=1e-9)

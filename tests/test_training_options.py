"""Schedules, regularization, clipping, accumulation, mixed precision and torch.compile: real runs."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_digits_config, write_config
from rich.console import Console

from dltrain import api
from dltrain.build import prepare, seed_everything
from dltrain.config import load_config
from dltrain.display import RichReporter
from dltrain.nn.schedules import SCHEDULES, LearningRate
from dltrain.train import checkpoint
from dltrain.train.runtime import compile_network


def _lrs(schedule: dict[str, Any], epochs: int = 4, steps: int = 10) -> list[list[float]]:
    """The lr each step of each epoch gets, from a real optimizer's param group."""
    params = SCHEDULES.get(schedule["type"]).params.model_validate(schedule)  # type: ignore[union-attr]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    lr = LearningRate(optimizer, params, epochs)
    lr.steps = steps
    return [[lr.update(epoch, step) for step in range(1, steps + 1)] for epoch in range(1, epochs + 1)]


def test_schedules_shape_the_lr_per_step() -> None:
    step = _lrs({"type": "step", "step_size": 2, "gamma": 0.5})
    assert [set(epoch) for epoch in step] == [{0.1}, {0.1}, {0.05}, {0.05}]
    exponential = _lrs({"type": "exponential", "gamma": 0.5})
    assert exponential[1][0] == pytest.approx(0.05) and exponential[2][0] == pytest.approx(0.025)
    assert exponential[0][5] == pytest.approx(0.1 * 0.5**0.5)  # continuous within an epoch
    cosine = [lr for epoch in _lrs({"type": "cosine", "alpha": 0.1}) for lr in epoch]
    assert cosine[0] == pytest.approx(0.1) and cosine == sorted(cosine, reverse=True)
    assert cosine[20] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))  # halfway: the cosine's midpoint
    cycle = [lr for epoch in _lrs({"type": "onecycle", "pct_start": 0.25}) for lr in epoch]
    assert cycle[0] == pytest.approx(0.1 / 25) and max(cycle) == pytest.approx(0.1) and cycle.index(0.1) == 10
    assert cycle[-1] < 1e-3  # far below where it started
    warm = _lrs({"type": "step", "step_size": 100, "warmup_epochs": 2})
    assert warm[0][0] == pytest.approx(0.1 / 20) and warm[1][9] == pytest.approx(0.1) and warm[2] == [0.1] * 10


def test_the_schedule_is_applied_in_training_and_shown(cli, tmp_path: Path) -> None:
    config = tiny_digits_config(epochs=3)
    config["compile"]["lr_schedule"] = {"type": "step", "step_size": 1, "gamma": 0.1}
    screen = io.StringIO()
    api.fit(
        write_config(tmp_path, config),
        run_dir="run",
        reporter=RichReporter(Console(file=screen, force_terminal=True, width=200)),
    )
    assert [row["lr"] for row in checkpoint.load("run/last.pt").history] == pytest.approx([1e-3, 1e-4, 1e-5])
    bars = [line for line in screen.getvalue().splitlines() if "Epoch 3/3" in line]  # the live bar's frames
    assert bars and "18/18" in bars[-1] and "lr 1e-05" in bars[-1]
    listed = json.loads(cli("list-models", "--json").stdout)
    assert {"step", "cosine", "onecycle"} <= {e["name"] for e in listed["lr_schedules"]}
    assert {"EarlyStopping", "TensorBoard"} <= {e["name"] for e in listed["callbacks"]}


def _weights(tmp_path: Path, config: dict[str, Any], run: str) -> dict[str, torch.Tensor]:
    api.fit(write_config(tmp_path, config, f"{run}.yaml"), run_dir=run)
    return checkpoint.load(f"{run}/last.pt").model


def _kernels(weights: dict[str, torch.Tensor]) -> float:
    return sum(w.square().sum().item() for name, w in weights.items() if name.endswith("weight"))


def test_kernel_regularizer_shrinks_the_weights(tmp_path: Path) -> None:
    plain = tiny_digits_config(epochs=3)
    l2 = tiny_digits_config(epochs=3)
    for layer in l2["model"]["layers"]:
        layer["kernel_regularizer"] = {"l2": 0.01}
    assert _kernels(_weights(tmp_path, l2, "l2")) < 0.8 * _kernels(_weights(tmp_path, plain, "plain"))


def test_label_smoothing_makes_predictions_less_confident(tmp_path: Path) -> None:
    confidence = {}
    for smoothing in (0.0, 0.3):
        config = tiny_digits_config(epochs=3)
        config["compile"]["optimizer"] = {"type": "adam", "lr": 0.01}
        config["compile"]["loss"] = {"type": "categorical_crossentropy", "label_smoothing": smoothing}
        run = f"s{smoothing}"
        api.fit(write_config(tmp_path, config, f"{run}.yaml"), run_dir=run)
        trainer = api.restore(f"{run}/last.pt")
        with torch.no_grad():
            probabilities = trainer.network.probabilities(trainer.network(trainer.data.test.x))
        confidence[smoothing] = probabilities.max(dim=1).values.mean().item()
    assert confidence[0.3] < confidence[0.0] - 0.05


def test_gradient_clip_bounds_every_update(tmp_path: Path) -> None:
    config = tiny_digits_config(epochs=1, gradient_clip=0.001, batch_size=64)
    config["compile"]["optimizer"] = {"type": "sgd", "lr": 1.0}
    path = write_config(tmp_path, config)
    seed_everything(0)
    _, built = prepare(load_config(path))
    start = torch.cat([p.detach().flatten() for p in built.network.state_dict().values()])
    api.fit(path, run_dir="run")
    end = torch.cat([p.flatten() for p in checkpoint.load("run/last.pt").model.values()])
    steps = math.ceil(1150 / 64)  # digits: 1,150 training samples after the test and validation splits
    assert 0 < (end - start).norm().item() <= steps * 0.001 * 1.0001


def test_accumulating_two_batches_equals_one_batch_twice_as_large(tmp_path: Path) -> None:
    def config(batch: int, accumulate: int) -> dict[str, Any]:
        return {
            "seed": 0,
            "data": {"source": "synthetic", "num_samples": 320, "shape": [6], "num_classes": 3},
            "model": {
                "layers": [
                    {"type": "Dense", "units": 8, "activation": "tanh"},
                    {"type": "Dense", "units": 3, "activation": "softmax"},
                ]
            },
            "compile": {"optimizer": {"type": "sgd", "lr": 0.5}, "loss": "categorical_crossentropy"},
            "fit": {"epochs": 2, "batch_size": batch, "accumulate_grad_batches": accumulate, "device": "cpu"},
        }

    big = _weights(tmp_path, config(64, 1), "big")  # 256 training samples: 4 full batches per epoch
    accumulated = _weights(tmp_path, config(32, 2), "acc")
    small = _weights(tmp_path, config(32, 1), "small")
    for key in big:
        torch.testing.assert_close(accumulated[key], big[key], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(small["layers.0.weight"], big["layers.0.weight"], atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains(tmp_path: Path, precision: str) -> None:
    config = tiny_digits_config(epochs=4, precision=precision)
    config["compile"]["optimizer"] = {"type": "adam", "lr": 0.01}
    result = api.fit(write_config(tmp_path, config), run_dir="run")
    assert result.results["test"]["accuracy"] > 0.85
    saved = checkpoint.load("run/last.pt")
    assert (saved.scaler is not None) == (precision == "16-mixed")
    assert all(t.dtype == torch.float32 for t in saved.model.values())  # weights stay float32


@pytest.mark.slow
def test_compile_network_matches_eager_and_falls_back_with_a_warning() -> None:
    network = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    x = torch.randn(8, 4)
    rng = torch.get_rng_state()
    warnings: list[str] = []
    compiled = compile_network(network, x, warnings.append)
    assert compiled is not network and not warnings
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(network[1].running_mean, torch.zeros(3))
    assert all(p.grad is None for p in network.parameters())
    network.eval()
    torch.testing.assert_close(compiled(x), network(x))

    eager = compile_network(network, torch.randn(8, 5), warnings.append)  # the trial step fails: wrong shape
    assert eager is network and "training without it" in warnings[0]

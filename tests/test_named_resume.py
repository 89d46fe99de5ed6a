"""Named inputs and outputs resume exactly mid-epoch and train under DDP as one process does:
a two-input/two-output graph, and a frozen backbone cached on one of two named inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_config
from test_graph_cache import two_inputs, write_two_npz
from test_multi_io import rows, two_by_two
from test_preemption import At, Killed, _kill
from test_resume import CtrlCAt, _assert_same_run

from dltrain import api
from dltrain.train import checkpoint


def with_dropout_and_schedule(config: dict[str, Any]) -> dict[str, Any]:
    """Dropout on the trunk (so the random streams matter) and a warmed-up, stepped learning rate."""
    layers = config["model"]["layers"]
    joined = next(i for i, layer in enumerate(layers) if layer.get("name") == "joined")
    layers.insert(joined + 2, {"type": "Dropout", "rate": 0.3})  # after the Dense that follows the join
    config["compile"]["lr_schedule"] = {"type": "step", "step_size": 1, "gamma": 0.8, "warmup_epochs": 0.5}
    return config


def cut_and_resume(config: Path, reporter: Any, stopped: type[BaseException]) -> checkpoint.Checkpoint:
    """Train `config` into `cut` until `reporter` stops it, resume it to the end, and train it whole
    into `whole`; the two runs are the same tensor for tensor. Returns the mid-epoch checkpoint."""
    with pytest.raises(stopped):
        api.fit(config, run_dir="cut", reporter=reporter)
    saved = checkpoint.load("cut/last.pt")
    assert saved.partial is not None  # really mid-epoch
    api.fit(resume="cut")
    api.fit(config, run_dir="whole")
    _assert_same_run(torch.load("whole/last.pt", weights_only=True), torch.load("cut/last.pt", weights_only=True))
    assert rows(Path("whole")) and [r["val_loss"] for r in rows(Path("whole"))] == [
        r["val_loss"] for r in rows(Path("cut"))
    ]
    return saved


def test_two_inputs_two_outputs_stopped_by_ctrl_c_mid_epoch_resume_to_the_uninterrupted_run(tmp_path: Path) -> None:
    config = write_config(tmp_path, with_dropout_and_schedule(two_by_two(epochs=2, batch_size=64)))
    saved = cut_and_resume(config, CtrlCAt(epoch=2, step=7), KeyboardInterrupt)
    assert saved.epoch == 1 and saved.partial["step"] == 7  # type: ignore[index]
    assert "even_loss" in saved.history[0] and "val_digit_accuracy" in saved.history[0]


def test_a_frozen_backbone_cached_on_one_named_input_resumes_mid_epoch_exactly(tmp_path: Path) -> None:
    write_two_npz(tmp_path / "two.npz")
    config = two_inputs(True)
    config["fit"].update(epochs=2, batch_size=8, checkpoint_every={"steps": 3})
    path = write_config(tmp_path, with_dropout_and_schedule(config))
    saved = cut_and_resume(path, At(2, 5, _kill), Killed)  # killed after step 5: last.pt is step 3's
    assert saved.epoch == 1 and saved.partial["step"] == 3  # type: ignore[index]
    assert saved.frozen is not None  # the backbone's weights are referenced, as in any run with one


def test_a_frozen_backbone_cached_on_one_named_input_resumed_mid_epoch_under_ddp_equals_one_process(
    cli, tmp_path: Path
) -> None:
    # One process trains the whole run; another is killed in epoch 1 (last.pt at step 2 of 4) and
    # resumed by 2 processes with half the batch each: they take the same global batches (the ranks
    # split each one), so every epoch's numbers agree, the cut epoch's included.
    write_two_npz(tmp_path / "two.npz", samples=80)  # 60 training samples: an even split, no rank pads
    config = two_inputs(True)
    config["fit"].update(batch_size=16, checkpoint_every={"steps": 2})
    path = write_config(tmp_path, config)
    api.fit(path, run_dir="one")
    with pytest.raises(Killed):
        api.fit(path, run_dir="cut", reporter=At(1, 3, _kill))
    assert checkpoint.load("cut/last.pt").partial["step"] == 2  # type: ignore[index]
    ddp = cli.subprocess(
        "fit",
        "--resume",
        "cut",
        "--set",
        "fit.batch_size=8",
        "--devices",
        "2",
        "--device",
        "cpu",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert ddp.returncode == 0, ddp.stderr
    assert "resnet18 is frozen: its outputs" in ddp.stdout and "× 2 processes (DDP, gloo)" in ddp.stdout
    for single, double in zip(rows(tmp_path / "one"), rows(tmp_path / "cut"), strict=True):
        for key in ("loss", "label_loss", "label_accuracy", "size_mae", "val_loss", "val_size_loss"):
            assert float(double[key]) == pytest.approx(float(single[key]), rel=1e-4, abs=1e-4), key

"""`image_folder` stopped mid-epoch (`fit.checkpoint_every`, then a kill) resumes to exactly the uninterrupted
run: the DataLoader's order and its workers' seeds come from (seed, epoch), never from the global RNG that
dropout and augmentation draw from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_config
from data_files import write_image_folder
from test_preemption import At, Killed, _kill
from test_resume import _assert_same_run

from dltrain import api
from dltrain.train import checkpoint


def image_config(workers: int) -> dict:
    return {
        "name": "shapes",
        "seed": 3,
        "data": {
            "source": "image_folder",
            "path": "shapes",
            "image_size": 8,
            "normalize": "scale",
            "num_workers": workers,
            "augment": {"random_flip": "horizontal"},
        },
        "model": {
            "layers": [
                {"type": "Flatten"},
                {"type": "Dense", "units": 16, "activation": "relu"},
                {"type": "Dropout", "rate": 0.3},
                {"type": "Dense", "units": 3, "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": {"type": "adam", "lr": 0.01}, "loss": "categorical_crossentropy"},
        "fit": {"epochs": 2, "batch_size": 4, "device": "cpu", "validation_split": 0.0, "shuffle": True},
    }


@pytest.mark.parametrize("workers", [0, 1])
def test_image_folder_killed_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path: Path, workers: int) -> None:
    write_image_folder(tmp_path / "shapes", ("a", "b", "c"), {"train": 8, "test": 2}, size=8)  # 6 steps an epoch
    config = image_config(workers)
    api.fit(write_config(tmp_path, config, "plain.yaml"), run_dir="whole")
    config["fit"]["checkpoint_every"] = {"steps": 3}
    with pytest.raises(Killed):
        api.fit(write_config(tmp_path, config, "every.yaml"), run_dir="cut", reporter=At(2, 5, _kill))
    saved = checkpoint.load("cut/last.pt")
    assert saved.epoch == 1 and saved.partial is not None and saved.partial["step"] == 3
    torch.manual_seed(12345)  # whatever the global RNG holds before --resume, the checkpoint's state is used
    api.fit(resume="cut")
    _assert_same_run(torch.load("whole/last.pt", weights_only=True), torch.load("cut/last.pt", weights_only=True))

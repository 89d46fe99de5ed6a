"""DistributedDataParallel on CPU: real 2-process gloo runs through `--devices` and torchrun.

The anchor of these tests is an equivalence: with B samples per rank and an even
training split, 2 ranks see exactly the global batches a single process sees with
batch 2B (rank r takes every 2nd index of the epoch's permutation), and DDP averages
their gradients. So a 2-process run must reproduce the 1-process run with batch 2B,
epoch by epoch, which it only can if the ranks trained on disjoint, complementary
shards, averaged their gradients and reduced their metrics.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_digits_config, write_config

from dltrain.build import prepare
from dltrain.config import load_config
from dltrain.data.batches import TensorBatches
from dltrain.errors import UserError
from dltrain.train.distributed import DistributedContext, open_context

PER_RANK = 32
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")
RANK_ENV = {"OMP_NUM_THREADS": "1"}
COMPARED = ("loss", "accuracy", "val_loss", "val_accuracy")


def history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv", encoding="utf-8") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def assert_same_epochs(rows: list[dict[str, float]], expected: list[dict[str, float]]) -> None:
    assert [row["epoch"] for row in rows] == [row["epoch"] for row in expected]
    for row, want in zip(rows, expected):
        for key in COMPARED:
            assert row[key] == pytest.approx(want[key], rel=1e-4, abs=1e-4), (row["epoch"], key)


def test_ranks_take_disjoint_shards_reshuffled_every_epoch(tmp_path: Path) -> None:
    data, _ = prepare(load_config(write_config(tmp_path, tiny_digits_config())))
    train = data.train
    shards = {
        epoch: [TensorBatches(train, PER_RANK, True, 0, rank, 2).indices(epoch) for rank in (0, 1)] for epoch in (1, 2)
    }
    for rank0, rank1 in shards.values():
        assert len(rank0) == len(rank1) == len(train) // 2
        assert set(rank0.tolist()).isdisjoint(rank1.tolist())
        assert set(rank0.tolist()) | set(rank1.tolist()) == set(range(len(train)))
    assert not torch.equal(shards[1][0], shards[2][0])  # a new shuffle each epoch
    # Evaluation pads nothing: the ranks split the samples exactly, so reduced sums are exact.
    odd = data.test
    evaluation = [TensorBatches(odd, 100, False, 0, rank, 2, pad=False).indices(0) for rank in (0, 1)]
    assert sorted(torch.cat(evaluation).tolist()) == list(range(len(odd)))


def test_two_process_run_matches_one_process_and_resumes_across_world_sizes(cli, tmp_path: Path) -> None:
    data, _ = prepare(load_config(write_config(tmp_path, tiny_digits_config())))
    assert len(data.train) % 2 == 0  # so no rank pads its shard and the equivalence is exact

    single = write_config(tmp_path, tiny_digits_config(batch_size=2 * PER_RANK), "single.yaml")
    assert cli("fit", single, "--run-dir", tmp_path / "one").exit_code == 0
    shutil.copytree(tmp_path / "one", tmp_path / "one-torchrun")

    double = write_config(tmp_path, tiny_digits_config(batch_size=PER_RANK), "double.yaml")
    ddp = cli.subprocess(
        "fit", double, "--devices", "2", "--device", "cpu", "--run-dir", tmp_path / "two", cwd=tmp_path, env=RANK_ENV
    )
    assert ddp.returncode == 0, ddp.stderr
    assert "× 2 processes (DDP, gloo)" in ddp.stdout
    assert ddp.stdout.count("Run directory:") == 1 and ddp.stdout.count("Epoch   2 ") == 1  # rank 0 alone prints
    assert_same_epochs(history(tmp_path / "two"), history(tmp_path / "one"))

    # The checkpoint holds the unwrapped model: one process evaluates it to the numbers the run reported.
    reported = json.loads((tmp_path / "two" / "metrics.json").read_text())["test"]
    evaluated = cli("evaluate", tmp_path / "two" / "last.pt", "--json", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == reported["accuracy"]
    assert json.loads(evaluated.stdout)["loss"] == pytest.approx(reported["loss"], rel=1e-6)

    # 2 processes -> 1, and 1 -> 2 under plain torchrun: both continue to the reference's epoch 3.
    more = ("--set", "fit.epochs=3")
    assert cli("fit", "--resume", tmp_path / "one", *more).exit_code == 0
    assert cli("fit", "--resume", tmp_path / "two", *more, "--set", f"fit.batch_size={2 * PER_RANK}").exit_code == 0
    grown = cli.subprocess(
        "fit",
        "--resume",
        tmp_path / "one-torchrun",
        *more,
        "--set",
        f"fit.batch_size={PER_RANK}",
        cwd=tmp_path,
        launcher=TORCHRUN,
        env=RANK_ENV,
    )
    assert grown.returncode == 0, grown.stderr
    reference = history(tmp_path / "one")
    assert_same_epochs(history(tmp_path / "two"), reference)
    assert_same_epochs(history(tmp_path / "one-torchrun"), reference)
    assert torch.load(tmp_path / "one-torchrun" / "last.pt", weights_only=True)["epoch"] == 3


def test_gradient_accumulation_syncs_only_at_optimizer_steps_and_matches_one_process(cli, tmp_path: Path) -> None:
    # Accumulating steps skip DDP's all-reduce (no_sync); the averaged gradient at each optimizer
    # step must still equal the single process's, so the runs agree epoch by epoch.
    single = write_config(
        tmp_path, tiny_digits_config(batch_size=2 * PER_RANK, accumulate_grad_batches=2), "single.yaml"
    )
    assert cli("fit", single, "--run-dir", tmp_path / "one").exit_code == 0
    double = write_config(tmp_path, tiny_digits_config(batch_size=PER_RANK, accumulate_grad_batches=2), "double.yaml")
    ddp = cli.subprocess(
        "fit", double, "--devices", "2", "--device", "cpu", "--run-dir", tmp_path / "two", cwd=tmp_path, env=RANK_ENV
    )
    assert ddp.returncode == 0, ddp.stderr
    assert_same_epochs(history(tmp_path / "two"), history(tmp_path / "one"))


def test_failure_in_one_rank_ends_all_ranks_with_one_message(cli, tmp_path: Path) -> None:
    # A fault injected into rank 1's forward pass (through PyTorch's global module hook) while
    # rank 0 goes on into the gradient all-reduce: rank 0 must be stopped, not left waiting.
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    from torch.nn.modules.module import register_module_forward_pre_hook\n"
        "    calls = [0]\n"
        "    def fail(module, args):\n"
        "        calls[0] += module.training\n"
        "        if calls[0] == 12:\n"
        "            raise RuntimeError('injected failure')\n"
        "    register_module_forward_pre_hook(fail)\n",
        encoding="utf-8",
    )
    config = write_config(tmp_path, tiny_digits_config(batch_size=PER_RANK))
    result = cli.subprocess(
        "fit",
        config,
        "--devices",
        "2",
        "--run-dir",
        tmp_path / "run",
        cwd=tmp_path,
        timeout=240,
        env={**RANK_ENV, "PYTHONPATH": f"{REPO}:{inject}"},
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("error:") == 1, result.stderr
    assert "rank 1 failed: RuntimeError: injected failure" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "last.pt").exists()  # failed in epoch 1: no checkpoint of a broken epoch


def test_data_error_in_every_rank_is_reported_once_with_exit_2(cli, tmp_path: Path) -> None:
    config = tiny_digits_config()
    config["data"] = {"source": "npz", "path": "missing.npz"}
    result = cli.subprocess(
        "fit", write_config(tmp_path, config), "--devices", "2", cwd=tmp_path, timeout=240, env=RANK_ENV
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("error:") == 1 and "missing.npz" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_is_refused_before_any_rank_starts(cli, tmp_path: Path) -> None:
    result = cli("fit", write_config(tmp_path, tiny_digits_config(epochs=0)), "--devices", "2")
    assert result.exit_code == 2
    assert result.output.count("fit.epochs") == 1
    assert not (tmp_path / "runs").exists()


def test_devices_and_strategy_refuse_what_cannot_run(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, tiny_digits_config())
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = cli("fit", config, "--devices", "2")
    assert result.exit_code == 2 and "under torchrun" in result.output
    with pytest.raises(UserError, match="fit.strategy: single"):
        with open_context("cpu", "single"):
            pass
    monkeypatch.delenv("WORLD_SIZE")
    if not torch.cuda.is_available():
        result = cli("fit", config, "--devices", "2", "--device", "cuda")
        assert result.exit_code == 2 and "no CUDA GPU" in result.output


def test_strategy_key_is_validated(cli, tmp_path: Path) -> None:
    result = cli("check", write_config(tmp_path, tiny_digits_config(strategy="dp")))
    assert result.exit_code == 2 and "fit.strategy" in result.output


def test_batchnorm_statistics_are_rank_0s_when_evaluating(cli, tmp_path: Path) -> None:
    # Each rank updates its BatchNorm running statistics on its own shard; the checkpoint holds
    # rank 0's, so the reduced evaluation must use rank 0's on every rank to report the same numbers.
    config = tiny_digits_config(batch_size=PER_RANK)
    config["model"]["layers"].insert(1, {"type": "BatchNormalization"})
    result = cli.subprocess(
        "fit",
        write_config(tmp_path, config),
        "--devices",
        "2",
        "--run-dir",
        tmp_path / "run",
        cwd=tmp_path,
        env=RANK_ENV,
    )
    assert result.returncode == 0, result.stderr
    reported = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    evaluated = json.loads(cli("evaluate", tmp_path / "run" / "last.pt", "--json", "--device", "cpu").stdout)
    assert evaluated["loss"] == pytest.approx(reported["loss"], rel=1e-6)


def test_ddp_wrapper_is_rebuilt_when_unfreezing_changes_what_trains(tmp_path: Path) -> None:
    # DDP syncs only the parameters that trained when it was built (a world of one in this process).
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        ctx = DistributedContext(torch.device("cpu"), 0, 1)
        network = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        network[0].requires_grad_(False)
        first = ctx.wrap(network)
        assert ctx.wrap(network) is first  # nothing changed: the same wrapper, no new broadcast
        network[0].requires_grad_(True)
        assert ctx.wrap(network) is not first
    finally:
        torch.distributed.destroy_process_group()

"""Streaming (`data.streaming`): real Parquet and .npy files the tests write, read shard by shard.

The anchors: a streamed run trains on exactly what the in-memory run of the same arrays
trains on (shuffling off), a run cut mid-epoch resumes to the uninterrupted run's
tensors, ranks read disjoint pieces, and a damaged file is one message naming it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import write_config
from test_distributed import RANK_ENV
from test_preemption import At, Killed, _kill
from test_resume import _assert_same_run

from dltrain import api
from dltrain.build import prepare
from dltrain.config import load_config
from dltrain.data.streaming import StreamSplit, plan_epoch, rebatch, skip
from dltrain.train import checkpoint

ROWS, FEATURES, CLASSES = 600, 6, 3


def _arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(ROWS, FEATURES)) * 3 + 1).astype(np.float32)
    return x, (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(axis=1)


def _write(folder: Path) -> None:
    """The same rows twice: two Parquet files (row groups of 40 and 70), and two .npy files."""
    x, y = _arrays()
    table = pa.table({**{f"f{i}": x[:, i] for i in range(FEATURES)}, "label": y})
    (folder / "pq").mkdir()
    pq.write_table(table.slice(0, 360), folder / "pq" / "part-0.parquet", row_group_size=40)
    pq.write_table(table.slice(360), folder / "pq" / "part-1.parquet", row_group_size=70)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)


SOURCES: dict[str, dict[str, Any]] = {
    "memory": {"source": "parquet", "path": "pq", "target": "label", "streaming": False},
    "parquet": {"source": "parquet", "path": "pq", "target": "label", "streaming": True},
    "npy": {"source": "npy", "x": "x.npy", "y": "y.npy", "streaming": True},
}


def _config(data: dict[str, Any], **fit: Any) -> dict[str, Any]:
    return {
        "seed": 3,
        "data": {**data, "normalize": "standardize"},
        "model": {
            "layers": [
                {"type": "Dense", "units": 16, "activation": "relu"},
                {"type": "Dropout", "rate": 0.2},
                {"type": "Dense", "units": CLASSES, "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": "adam", "loss": "categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 2, "batch_size": 32, "validation_split": 0.2, "device": "cpu", **fit},
    }


@pytest.fixture
def files(tmp_path: Path) -> Path:
    _write(tmp_path)
    return tmp_path


def test_streamed_runs_equal_the_in_memory_run_of_the_same_rows(files: Path) -> None:
    results = {}
    for name, data in SOURCES.items():
        api.fit(write_config(files, _config(data, shuffle=False), f"{name}.yaml"), run_dir=name)
        results[name] = json.loads((files / name / "metrics.json").read_text())
    assert isinstance(prepare(load_config(files / "parquet.yaml"))[0].train, StreamSplit)
    memory = torch.load(files / "memory" / "last.pt", weights_only=True)
    for name in ("parquet", "npy"):
        streamed = torch.load(files / name / "last.pt", weights_only=True)
        for key, value in memory["preprocessing"].items():  # statistics of one streamed pass = of the whole array
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(streamed["preprocessing"][key], value, rtol=1e-6, atol=1e-6)
        for split in ("val", "test"):
            for metric, value in results["memory"][split].items():
                assert results[name][split][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, split)
        for row, want in zip(streamed["history"], memory["history"]):
            assert row["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_a_stream_cut_mid_epoch_resumes_to_the_uninterrupted_run(files: Path) -> None:
    # Windows of 2 row groups (shuffle_buffer: 64 samples of 6 floats), read by 2 workers.
    data = {**SOURCES["parquet"], "shuffle_buffer": 64 * FEATURES * 4, "num_workers": 2}
    config = _config(data)
    config["fit"]["checkpoint_every"] = {"steps": 7}
    with pytest.raises(Killed):
        api.fit(write_config(files, config, "every.yaml"), run_dir="cut", reporter=At(2, 10, _kill))
    saved = checkpoint.load(files / "cut" / "last.pt")
    assert saved.epoch == 1 and saved.partial is not None and saved.partial["step"] == 7
    assert saved.stream == {"step": 7, "samples": 7 * 32, "rows": 384, "pieces": 13}
    shutil.copytree(files / "cut", files / "changed")
    api.fit(resume=str(files / "cut"))
    del config["fit"]["checkpoint_every"]
    api.fit(write_config(files, config, "plain.yaml"), run_dir="whole")
    _assert_same_run(
        torch.load(files / "whole" / "last.pt", weights_only=True),
        torch.load(files / "cut" / "last.pt", weights_only=True),
    )

    # The same rows cut into other row groups are another stream: refused, not continued differently.
    table = pq.read_table(files / "pq" / "part-1.parquet")
    pq.write_table(table, files / "pq" / "part-1.parquet", row_group_size=120)
    with pytest.raises(Exception, match="stopped at step 7 of a streamed epoch over 384 training rows in 13 pieces"):
        api.fit(resume=str(files / "changed"))


def test_ranks_read_disjoint_pieces_and_the_same_number_of_samples(files: Path) -> None:
    data = prepare(load_config(write_config(files, _config({**SOURCES["parquet"], "shuffle_buffer": 1024}))))[0]
    rows = data.train.x
    for shuffle in (True, False):
        for epoch in (1, 2):
            plans = [plan_epoch(rows, shuffle, 3, epoch, rank, 2, pad=True) for rank in (0, 1)]
            pieces = [{p for w in plan.windows for p in w.pieces} for plan in plans]
            assert pieces[0].isdisjoint(pieces[1])
            for plan in plans:  # every rank the same share every epoch, as the in-memory path's
                assert plan.samples == sum(w.hi - w.lo for w in plan.windows) == (len(rows) + 1) // 2
            unpadded = [plan_epoch(rows, shuffle, 3, epoch, rank, 2, pad=False) for rank in (0, 1)]
            assert sum(plan.samples for plan in unpadded) == len(rows)  # evaluation: every row once
            covered = [{p for w in plan.windows for p in w.pieces} for plan in unpadded]
            assert covered[0].isdisjoint(covered[1]) and len(covered[0] | covered[1]) == len(rows.shards.pieces)
    one = [plan_epoch(rows, True, 3, epoch, 0, 1, pad=True).windows for epoch in (1, 2)]
    assert [w.pieces for w in one[0]] != [w.pieces for w in one[1]]  # a new order of the shards every epoch
    left = skip(one[0], 100)
    assert sum(w.hi - w.lo for w in left) == len(rows) - 100 and len(left) < len(one[0])


def test_windows_of_any_size_are_cut_into_the_same_batches_as_one_array() -> None:
    sizes = [5, 1, 2, 40, 8, 3]  # smaller than a batch, spanning several, ending on a batch's edge
    x = torch.arange(sum(sizes), dtype=torch.float32)
    parts = torch.split(x, sizes)
    batches = list(rebatch(((k, part, None, part.long()) for k, part in enumerate(parts)), 8))
    assert [len(b[0]) for b in batches] == [8] * 7 + [3]
    assert torch.equal(torch.cat([b[0] for b in batches]), x) and torch.equal(batches[2][1], x[16:24].long())
    # Shuffled windows: each sends its rows and the order to take them in, and the targets already in that order.
    orders = [torch.randperm(len(part), generator=torch.Generator().manual_seed(k)) for k, part in enumerate(parts)]
    shuffled = list(rebatch(((k, p, o, p[o].long()) for k, (p, o) in enumerate(zip(parts, orders))), 8))
    expected = torch.cat([p[o] for p, o in zip(parts, orders)])
    assert [len(b[0]) for b in shuffled] == [8] * 7 + [3]
    assert torch.equal(torch.cat([b[0] for b in shuffled]), expected)
    assert torch.equal(torch.cat([b[1] for b in shuffled]), expected.long())


@pytest.mark.parametrize("damage", ["footer", "page", "nan"])
def test_a_damaged_shard_exits_2_naming_the_file(cli, files: Path, damage: str) -> None:
    shard = files / "pq" / "part-1.parquet"
    raw = bytearray(shard.read_bytes())
    if damage == "footer":
        raw[-12:] = b"\0" * 12
    elif damage == "page":  # the middle of a feature column's pages: found by the worker that reads it, mid-epoch
        start = pq.ParquetFile(shard).metadata.row_group(1).column(2).data_page_offset
        raw[start : start + 40] = b"\xff" * 40
    else:  # a missing value in every row of row group 1
        table = pq.read_table(shard)
        nan = pa.array(np.where(np.arange(len(table)) // 70 == 1, np.nan, 1.0).astype(np.float32))
        pq.write_table(table.set_column(2, "f2", nan), shard, row_group_size=70)
        raw = bytearray(shard.read_bytes())
    shard.write_bytes(bytes(raw))
    config = _config(SOURCES["parquet"])
    del config["data"]["normalize"]  # no statistics pass: the first read of row group 1 is in a DataLoader worker
    result = cli("fit", write_config(files, config))
    assert result.exit_code == 2, result.output
    assert "part-1.parquet" in result.output and "Traceback" not in result.output
    assert damage == "footer" or "row group 1" in result.output


def test_auto_streams_only_data_larger_than_the_memory_limit(files: Path) -> None:
    small = prepare(load_config(write_config(files, _config({**SOURCES["parquet"], "streaming": "auto"}))))[0]
    assert not isinstance(small.train, StreamSplit)
    limited = {**SOURCES["npy"], "streaming": "auto", "memory_limit": "10KB"}
    assert isinstance(prepare(load_config(write_config(files, _config(limited))))[0].train, StreamSplit)


def test_two_processes_train_on_disjoint_pieces_and_evaluate_every_row_once(cli, files: Path) -> None:
    result = cli.subprocess(
        "fit",
        write_config(files, _config(SOURCES["parquet"])),
        "--devices",
        "2",
        "--device",
        "cpu",
        "--run-dir",
        files / "two",
        cwd=files,
        env=RANK_ENV,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    # Each rank evaluated its own pieces; their reduced sums are one process's evaluation of every test row.
    reported = json.loads((files / "two" / "metrics.json").read_text())["test"]
    evaluated = cli("evaluate", files / "two" / "last.pt", "--json", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == reported["accuracy"]
    assert json.loads(evaluated.stdout)["loss"] == pytest.approx(reported["loss"], rel=1e-6)


def test_a_hugging_face_dataset_streams_its_arrow_shards_as_it_reads_in_memory(files: Path) -> None:
    datasets = pytest.importorskip("datasets")
    x, y = _arrays()
    names = datasets.ClassLabel(names=["a", "b", "c"])
    table = datasets.Dataset.from_dict(
        {**{f"f{i}": x[:, i] for i in range(FEATURES)}, "label": y.tolist()},
        features=datasets.Features({**{f"f{i}": datasets.Value("float32") for i in range(FEATURES)}, "label": names}),
    )
    table.save_to_disk(str(files / "hf"), max_shard_size="8KB")  # several .arrow files
    base = {"source": "hf", "path": "hf", "shuffle_buffer": "2KB"}
    runs = {}
    for streaming in (False, True):
        name = f"hf-{streaming}"
        api.fit(
            write_config(files, _config({**base, "streaming": streaming}, shuffle=False), f"{name}.yaml"), run_dir=name
        )
        runs[streaming] = json.loads((files / name / "metrics.json").read_text())
    data = prepare(load_config(files / "hf-True.yaml"))[0]
    assert isinstance(data.train, StreamSplit) and len(data.train.x.shards.pieces) > 2
    assert data.class_names == ["a", "b", "c"]
    for split in ("val", "test"):
        for metric, value in runs[False][split].items():
            assert runs[True][split][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (split, metric)

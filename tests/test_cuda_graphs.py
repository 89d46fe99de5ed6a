"""fit.cuda_graphs and the CUDA defaults, checked without CUDA: the option's validation and
refusals, the summary lines, and the pure-Python parts of the captured step (which batches
replay, when capture happens, the learning-rate tensors, pending accumulated gradients,
what makes a graph stale). Capturing itself needs a GPU: bench/gpu_check.sh runs it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_digits_config, write_config

from dltrain.build import build_trainer
from dltrain.config import load_config
from dltrain.reporting import Reporter
from dltrain.train.cuda_graphs import (
    WARMUP_STEPS,
    LrTensors,
    Pending,
    RunFacts,
    capture_due,
    graphed_step,
    plan,
    replays,
    same,
    signature,
)
from dltrain.train.speedups import choose

CUDA = RunFacts(
    device="cuda", in_memory=True, augment=False, compile_model=False, world_size=1, precision="32", optimizer="adam"
)


def _facts(**changes: Any) -> RunFacts:
    return RunFacts(**{**CUDA.__dict__, **changes})


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"device": "cpu"}, "needs a CUDA device, and this run trains on cpu"),
        ({"world_size": 2}, "does not run under DDP (2 processes)"),
        ({"compile_model": True}, "fit.compile_model"),
        ({"precision": "16-mixed"}, "use precision: bf16-mixed or 32"),
        ({"optimizer": "rmsprop"}, "cannot capture the rmsprop optimizer; use adam, adamw, sgd"),
    ],
)
def test_incompatible_settings_turn_auto_off_and_refuse_true(changes: dict[str, Any], why: str) -> None:
    auto = plan("auto", _facts(**changes))
    assert not auto.enabled and why in auto.reason and auto.refusal is None
    forced = plan(True, _facts(**changes))
    assert not forced.enabled and forced.refusal is not None
    assert forced.refusal.startswith("true ") and why in forced.refusal
    assert "fit.cuda_graphs: auto" in forced.refusal  # how to fix it


def test_auto_captures_only_where_it_pays_and_true_wherever_it_can() -> None:
    assert plan("auto", CUDA).enabled and "in-memory data" in plan("auto", CUDA).reason
    assert plan(True, CUDA).enabled and plan(True, CUDA).refusal is None
    for changes, why in (({"in_memory": False}, "DataLoader"), ({"augment": True}, "data.augment")):
        auto = plan("auto", _facts(**changes))
        assert not auto.enabled and why in auto.reason and auto.refusal is None
        assert plan(True, _facts(**changes)).enabled  # works, pays less: captured when asked
    off = plan(False, CUDA)
    assert not off.enabled and off.refusal is None and off.line() == "CUDA graphs: off (fit.cuda_graphs: false)"
    assert plan("auto", _facts(precision="bf16-mixed", optimizer="sgd")).enabled


def test_true_on_the_cpu_is_refused_by_check_and_fit_alike(cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, tiny_digits_config(cuda_graphs=True))
    check, fit = cli("check", path), cli("fit", path, "--run-dir", tmp_path / "run")
    assert check.exit_code == fit.exit_code == 2
    for result in (check, fit):
        assert "config.yaml:" in result.output and "fit.cuda_graphs" in result.output
        assert "fit.cuda_graphs: true needs a CUDA device, and this run trains on cpu" in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "last.pt").exists()
    wrong = cli("check", write_config(tmp_path, tiny_digits_config(cuda_graphs="sometimes"), "wrong.yaml"))
    assert wrong.exit_code == 2 and "fit.cuda_graphs" in wrong.output


def test_auto_on_the_cpu_is_silently_off(cli, tmp_path: Path) -> None:
    result = cli("fit", write_config(tmp_path, tiny_digits_config(epochs=1)), "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "CUDA" not in result.output


def _trainer(tmp_path: Path, **fit: Any) -> Any:
    return build_trainer(load_config(write_config(tmp_path, tiny_digits_config(**fit))))


def test_cuda_choices_are_decided_in_one_place_and_summarised(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    cpu = choose(trainer.config, torch.device("cpu"), 1, True, trainer.network)
    assert cpu.lines() == [] and cpu.optimizer_options() == {} and not cpu.channels_last
    assert trainer.speed == cpu and not trainer.optimizer.defaults.get("fused")  # the CPU run is unchanged
    cuda = choose(trainer.config, torch.device("cuda"), 1, True, trainer.network)
    assert cuda.optimizer_options() == {"fused": True, "capturable": True}
    assert cuda.lines() == [
        "CUDA: fused adam optimizer",
        "CUDA graphs: on (auto: in-memory data, fixed batch shape; each full batch replays one captured step)",
    ]
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten())
    files = choose(trainer.config, torch.device("cuda"), 1, False, conv)
    assert files.channels_last and files.optimizer_options() == {"fused": True}
    assert files.lines()[0].startswith("CUDA: fused adam optimizer; channels_last convolutions; DataLoader with pinned")
    assert files.lines()[1] == "CUDA graphs: off (auto: a DataLoader decodes files for every step)"


def test_full_batches_replay_and_capture_waits_for_warm_up_at_a_window_start() -> None:
    assert replays(32, 32) and not replays(17, 32)  # the epoch's last, short batch runs eagerly
    assert not capture_due(WARMUP_STEPS - 1, True)
    assert not capture_due(WARMUP_STEPS, False)  # inside an accumulation window: gradients are pending
    assert capture_due(WARMUP_STEPS, True) and capture_due(WARMUP_STEPS + 5, True)


def test_learning_rates_are_device_tensors_only_while_a_step_runs() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.01})
    lrs = LrTensors(optimizer, torch.device("cpu"))
    optimizer.param_groups[1]["lr"] = 0.5  # a schedule, between steps
    with lrs.swapped():
        inside = [group["lr"] for group in optimizer.param_groups]
    assert inside[0] is lrs.tensors[0] and inside[1] is lrs.tensors[1]
    assert [t.item() for t in lrs.tensors] == pytest.approx([0.1, 0.5])
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 0.5]  # floats for everyone else
    optimizer.param_groups[0]["lr"] = 0.2
    lrs.sync()  # what a replay does first
    assert lrs.tensors[0].item() == pytest.approx(0.2)
    with pytest.raises(RuntimeError), lrs.swapped():
        raise RuntimeError("a failed step")
    assert [group["lr"] for group in optimizer.param_groups] == [0.2, 0.5]


def test_pending_gradients_go_to_an_eager_step_once() -> None:
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    pending = Pending(params)
    pending.release()  # nothing pending: gradients untouched
    assert all(p.grad is None for p in params)
    pending.buffers[0] += 1.5
    pending.buffers[1] += 2.0
    pending.waiting = True
    pending.release()
    assert torch.equal(params[0].grad, torch.full((3,), 1.5)) and torch.equal(params[1].grad, torch.full((2, 2), 2.0))
    assert all(not b.any() for b in pending.buffers) and not pending.waiting
    params[0].grad.add_(1.0)  # the eager backward adds to them; the buffers are not aliased
    assert not pending.buffers[0].any()


def test_a_graph_is_stale_when_what_trains_or_the_optimizer_state_changes() -> None:
    network = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    optimizer = torch.optim.Adam(network.parameters())
    network(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    before = signature(optimizer)
    assert same(signature(optimizer), before)
    state = copy.deepcopy(optimizer.state_dict())  # resume: a state read from a file
    optimizer.load_state_dict(state)  # new state tensors; a graph captured before reads the old ones
    loaded = signature(optimizer)
    assert not same(loaded, before)
    network[0].weight.requires_grad_(False)  # unfreezing or freezing changes what trains
    assert not same(signature(optimizer), loaded)


class _Messages(Reporter):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def message(self, text: str) -> None:
        self.texts.append(text)


def test_a_failed_capture_falls_back_to_eager_training_with_one_message(tmp_path: Path) -> None:
    """Without CUDA the capture fails: one message, and training goes on exactly as the eager step trains."""
    fit = {"batch_size": 48, "accumulate_grad_batches": 2, "gradient_clip": 1.0}
    eager, graphed = _trainer(tmp_path, **fit), _trainer(tmp_path, **fit)
    graphed.reporter = messages = _Messages()
    losses = []
    for trainer in (eager, graphed):
        batches = trainer.prepare_training()
        if trainer is graphed:  # what `fit` sets up when the plan is on (never on the CPU)
            assert trainer.graphs is None
            trainer.graphs = graphed_step(trainer)
        assert len(trainer.splits["train"]) % 48  # a short last batch
        losses.append([trainer.train_epoch(batches, epoch)["loss"] for epoch in (1, 2)])
    assert len(messages.texts) == 1
    assert messages.texts[0].startswith("fit.cuda_graphs: capturing the training step failed (")
    assert messages.texts[0].endswith("training without CUDA graphs")
    assert graphed.graphs.failed and graphed.graphs.graphs is None
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for a, b in zip(eager.network.parameters(), graphed.network.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [group["lr"] for group in graphed.optimizer.param_groups] == [0.001]  # floats again after each step
    assert isinstance(graphed.optimizer.state_dict()["param_groups"][0]["lr"], float)


def test_image_batches_decoded_on_the_device_match_pil(tmp_path: Path) -> None:
    """The GPU path (file bytes, decoded and resized where training runs) checked on the CPU against PIL."""
    import numpy as np
    from PIL import Image

    from dltrain.data.images import (
        FileBytesDataset,
        FileSplit,
        ImageFiles,
        collate_files,
        decode_on_device,
        gpu_decoding,
        read_image,
    )

    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (6, 5, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 24x20 blocks
    paths = []
    for name in ("a.jpg", "b.png", "c.jpeg"):
        Image.fromarray(smooth).save(tmp_path / name, quality=95)
        paths.append(str(tmp_path / name))
    targets = torch.tensor([0, 1, 0])
    dataset = FileBytesDataset(np.array(paths), targets, 3, (12, 10))
    items, ys = collate_files([dataset[i] for i in range(3)])
    assert [item.dim() for item in items] == [1, 3, 1]  # JPEG bytes; a PNG decoded by torchvision.io
    batch = decode_on_device(items, 3, (12, 10), torch.device("cpu"))
    assert batch.shape == (3, 3, 12, 10) and batch.dtype == torch.uint8 and torch.equal(ys, targets)
    for i, path in enumerate(paths):
        pil = read_image(path, 3, (12, 10)).float()  # what CPU training and `predict` see
        assert (batch[i].float() - pil).abs().mean() < 3.0  # JPEG decoders and resize filters differ slightly
    files = ImageFiles(np.array(paths), 3, (12, 10)).split(targets, None)  # type: ignore[arg-type]
    assert not gpu_decoding(torch.device("cpu")) and gpu_decoding(torch.device("cuda"))
    assert files.on_device(torch.device("cpu")) is files and files.collate is None  # the CPU path is unchanged
    assert isinstance(files.on_device(torch.device("cuda")).dataset, FileBytesDataset)
    assert isinstance(files, FileSplit)

"""`fit.cuda_graphs`: the whole training step captured once into a CUDA graph, replayed per batch.

On a GPU a small model's step is dozens of tiny kernels, each launched from Python: the
GPU waits on the launches, not on the math. A CUDA graph launches the recorded kernels
of forward, backward and optimizer step at once. This follows PyTorch's whole-network
capture recipe (torch.cuda graphs docs, "Whole-network capture"):

- static inputs: every full batch is copied into the same input tensors the graph reads;
- warm-up: the first steps run eagerly on a side stream. They are ordinary training
  steps (nothing is undone), and they create the optimizer's state before capture;
- gradients are set to None before capture, so the captured backward allocates them in
  the graph's private memory pool and every replay writes them afresh;
- the optimizer is capturable (Adam and AdamW `capturable=True`, fused; SGD fused), and
  while a step runs its learning rate is a device tensor (`LrTensors`): a schedule then
  changes a value the graph reads, not a constant baked into it;
- autocast inside the capture has its cache off (`cache_enabled=False`), as the docs ask;
- a batch of another shape (an epoch's last, short batch) runs eagerly, and so does every
  step when capture fails (one message says why).

With `fit.accumulate_grad_batches: N` there are two graphs: inside a window, forward and
backward add the gradients to `Pending` buffers; the window's last step adds them to its
own and steps. Metrics, the NaN guard and checkpoints see the same tensors as eagerly:
the tracker is updated from the graph's output tensors, and the weights and optimizer
state are updated in place, so a checkpoint (and a resume) reads them as usual.

`plan` decides, without CUDA, whether a run captures; the rest runs only on CUDA.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator

import torch

from .precision import DTYPES

WARMUP_STEPS = 3  # eager steps before capture (PyTorch's recipe warms up a few iterations)
GRAPH_OPTIMIZERS = ("adam", "adamw", "sgd")  # capturable, with a learning rate read from a device tensor

Step = Callable[[torch.Tensor, torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor]]


# --- whether a run captures (pure Python: decided and tested without CUDA) ------------------


@dataclass(frozen=True)
class RunFacts:
    """What decides whether capturing the step is possible, and whether it pays."""

    device: str  # the torch device's type: cuda, cpu, mps
    in_memory: bool  # batches are slices of device tensors (no DataLoader)
    augment: bool  # data.augment transforms each batch before the step
    compile_model: bool
    world_size: int
    precision: str
    optimizer: str


# Settings the captured step cannot run with: `true` is refused with the message, `auto` is off.
INCOMPATIBLE: list[tuple[Callable[[RunFacts], bool], str]] = [
    (lambda f: f.device != "cuda", "needs a CUDA device, and this run trains on {device}"),
    (lambda f: f.world_size > 1, "does not run under DDP ({world_size} processes)"),
    (
        lambda f: f.compile_model,
        "and fit.compile_model both take over the step; choose one (torch.compile has its own CUDA graphs)",
    ),
    (
        lambda f: f.precision == "16-mixed",
        "cannot capture precision 16-mixed: its grad scaler reads an overflow flag on the host every step; "
        "use precision: bf16-mixed or 32",
    ),
    (
        lambda f: f.optimizer not in GRAPH_OPTIMIZERS,
        "cannot capture the {optimizer} optimizer; use " + ", ".join(GRAPH_OPTIMIZERS),
    ),
]
# Settings where capture works but does not pay: host work feeds every step. `auto` is off, `true` captures.
NOT_PAYING: list[tuple[Callable[[RunFacts], bool], str]] = [
    (lambda f: not f.in_memory, "a DataLoader decodes files for every step"),
    (lambda f: f.augment, "data.augment transforms every batch outside the step"),
]


@dataclass(frozen=True)
class GraphPlan:
    """Whether training captures its step, why (for the summary), and a refusal for `true` where it cannot."""

    enabled: bool
    reason: str
    refusal: str | None = None

    def line(self) -> str:
        return f"CUDA graphs: {'on' if self.enabled else 'off'} ({self.reason})"


def plan(setting: bool | str, facts: RunFacts) -> GraphPlan:
    """`fit.cuda_graphs` for a run: `auto` captures where it is possible and pays, `true` wherever possible."""
    if setting is False:
        return GraphPlan(False, "fit.cuda_graphs: false")
    values = {"device": facts.device, "world_size": facts.world_size, "optimizer": facts.optimizer}
    for applies, why in INCOMPATIBLE:
        if applies(facts):
            text = why.format(**values)
            refusal = (
                f"true {text}. Set fit.cuda_graphs: auto (on only where it works) or false" if setting is True else None
            )
            return GraphPlan(False, text, refusal)
    if setting == "auto":
        for applies, why in NOT_PAYING:
            if applies(facts):
                return GraphPlan(False, f"auto: {why}")
        return GraphPlan(True, "auto: in-memory data, fixed batch shape; each full batch replays one captured step")
    return GraphPlan(True, "fit.cuda_graphs: true; each full batch replays one captured step")


def replays(rows: int, static_rows: int) -> bool:
    """A batch replays the graph only at the captured shape; any other (the last, short batch) runs eagerly."""
    return rows == static_rows


def capture_due(eager_steps: int, at_boundary: bool) -> bool:
    """Capture after the warm-up steps, at the start of an accumulation window (no gradients pending)."""
    return eager_steps >= WARMUP_STEPS and at_boundary


Signature = list[tuple[torch.Tensor, bool, list[torch.Tensor]]]


def signature(optimizer: torch.optim.Optimizer) -> Signature:
    """What the captured kernels' addresses depend on: which parameters train, and their state tensors.

    Unfreezing a backbone or loading an optimizer state (new tensors) changes it; the
    graph is then captured again. It holds the tensors themselves (compared by identity),
    which also keeps the memory a captured graph reads alive until it is dropped.
    """
    return [
        (p, p.requires_grad, [v for v in optimizer.state.get(p, {}).values() if torch.is_tensor(v)])
        for group in optimizer.param_groups
        for p in group["params"]
    ]


def same(a: Signature, b: Signature) -> bool:
    """Whether two signatures name the same tensors (by identity) with the same parameters training."""
    return len(a) == len(b) and all(
        p is q and r == s and len(t) == len(u) and all(x is y for x, y in zip(t, u))
        for (p, r, t), (q, s, u) in zip(a, b)
    )


class LrTensors:
    """The learning rates as device tensors while a step runs; `param_groups` keep floats otherwise.

    The lr schedule, the display and checkpoints go on reading and writing floats;
    `sync` copies a changed float into its tensor (one small kernel, only on a change).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        self.optimizer = optimizer
        self.values = [float(group["lr"]) for group in optimizer.param_groups]
        self.tensors = [torch.tensor(v, dtype=torch.float32, device=device) for v in self.values]

    def sync(self) -> None:
        for i, group in enumerate(self.optimizer.param_groups):
            if group["lr"] != self.values[i]:
                self.values[i] = float(group["lr"])
                self.tensors[i].fill_(self.values[i])

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The tensors in `param_groups` (for an eager step or a capture), the floats back after."""
        self.sync()
        groups = self.optimizer.param_groups
        floats = [group["lr"] for group in groups]
        for group, tensor in zip(groups, self.tensors):
            group["lr"] = tensor
        try:
            yield
        finally:
            for group, value in zip(groups, floats):
                group["lr"] = value


class Pending:
    """Gradients of the captured steps inside an accumulation window, summed until its last step."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params
        self.buffers = [torch.zeros_like(p) for p in params]
        self.waiting = False  # a captured step added to the buffers since the last update

    def pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(buffers, gradients) of the parameters that have a gradient now (inside a capture)."""
        kept = [(b, p.grad) for b, p in zip(self.buffers, self.params) if p.grad is not None]
        return [b for b, _ in kept], [g for _, g in kept]

    def release(self) -> None:
        """Hand the pending sums to `.grad` before an eager step (the window's last, short batch)."""
        if not self.waiting:
            return
        for p, buffer in zip(self.params, self.buffers):
            p.grad = buffer.clone()
            buffer.zero_()
        self.waiting = False


# --- the captured step (CUDA only) --------------------------------------------------------


@dataclass
class StepParts:
    """What one training step touches, as the trainer holds it."""

    model: torch.nn.Module
    network: Any  # the built network: `has_penalty`, `penalty()`
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    clip: float | None
    every: int
    precision: str


class GraphedStep:
    """The training step for `fit.cuda_graphs`: replays of a captured step, eager steps where it cannot."""

    def __init__(self, eager: Step, parts: StepParts, rows: int, warn: Callable[[str], None]) -> None:
        self.eager, self.parts, self.rows, self.warn = eager, parts, rows, warn
        dtype = DTYPES[parts.precision]
        self.autocast: Callable[[], ContextManager[Any]] = (
            (lambda: torch.autocast("cuda", dtype=dtype, cache_enabled=False))
            if dtype is not None
            else contextlib.nullcontext
        )
        device = parts.params[0].device if parts.params else torch.device("cuda")
        self.lrs = LrTensors(parts.optimizer, device)
        self.pending = Pending(parts.params) if parts.every > 1 else None
        # warm-up steps are eager by design: torch.optim's one warning about that says nothing to a user
        parts.optimizer._warned_capturable_if_run_uncaptured = True
        self.graphs: dict[bool, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.captured: Signature = []
        self.eager_steps = 0
        self.at_boundary = True
        self.failed = False
        self.side = torch.cuda.Stream(device) if device.type == "cuda" else None

    def start_epoch(self) -> Step:
        """The step to run this epoch (itself); a graph whose parameters or state changed is captured again."""
        self.at_boundary = True  # every epoch ends with an optimizer step
        if self.graphs is not None and not same(signature(self.parts.optimizer), self.captured):
            self.graphs, self.static, self.eager_steps = None, None, 0
        return self

    def __call__(self, x: torch.Tensor, y: torch.Tensor, stepping: bool) -> tuple[torch.Tensor, torch.Tensor]:
        full = replays(x.shape[0], self.rows)
        if full and self.graphs is None and not self.failed and capture_due(self.eager_steps, self.at_boundary):
            self.capture(x, y)
        if full and self.graphs is not None:
            result = self.replay(x, y, stepping)
        else:
            result = self.eager_step(x, y, stepping)
        self.at_boundary = stepping
        return result

    def replay(self, x: torch.Tensor, y: torch.Tensor, stepping: bool) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.graphs is not None and self.static is not None
        self.static[0].copy_(x, non_blocking=True)
        self.static[1].copy_(y, non_blocking=True)
        self.lrs.sync()
        graph, loss, outputs = self.graphs[stepping]
        graph.replay()
        if self.pending is not None:
            self.pending.waiting = not stepping
        return loss, outputs

    def eager_step(self, x: torch.Tensor, y: torch.Tensor, stepping: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The trainer's own step (warm-up on a side stream before capture), with the same lr tensors."""
        if self.pending is not None:
            self.pending.release()
        warming = self.graphs is None and self.side is not None
        if warming:
            assert self.side is not None
            self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side) if warming else contextlib.nullcontext(), self.lrs.swapped():
            result = self.eager(x, y, stepping)
        if warming:
            torch.cuda.current_stream().wait_stream(self.side)  # type: ignore[arg-type]
        self.eager_steps += 1
        return result

    def capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record the step (and, with accumulation, the step inside a window); on failure, stay eager."""
        parts = self.parts
        try:
            torch.cuda.synchronize()
            self.static = (x.clone(), y.clone())
            graphs = {}
            for stepping in (True, False) if self.pending is not None else (True,):
                parts.optimizer.zero_grad(set_to_none=True)
                graph = torch.cuda.CUDAGraph()
                # thread_local: the checkpoint writer thread may be copying last.pt off the GPU meanwhile
                with self.lrs.swapped(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    loss, outputs = self.forward_backward(*self.static)
                    self.finish(stepping)
                graphs[stepping] = (graph, loss, outputs)
            parts.optimizer.zero_grad(set_to_none=True)  # eager steps start from no gradient
            self.graphs, self.captured = graphs, signature(parts.optimizer)
        except Exception as exc:  # an op that cannot be captured: eager training, said once
            self.failed, self.graphs, self.static = True, None, None
            parts.optimizer.zero_grad(set_to_none=True)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            self.warn(
                f"fit.cuda_graphs: capturing the training step failed ({type(exc).__name__}: {first}); "
                f"training without CUDA graphs"
            )

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = self.parts
        with self.autocast():
            outputs = parts.model(x)
            loss = parts.loss_fn(outputs, y)
            if parts.network.has_penalty:
                loss = loss + parts.network.penalty()
        (loss / parts.every if parts.every > 1 else loss).backward()
        return loss.detach(), outputs.detach()

    def finish(self, stepping: bool) -> None:
        """Inside a capture: add to the pending sums, or add them in, clip and step."""
        parts = self.parts
        if self.pending is not None:
            buffers, grads = self.pending.pairs()
            if not stepping:
                torch._foreach_add_(buffers, grads)
                return
            torch._foreach_add_(grads, buffers)
            torch._foreach_zero_(buffers)
        if parts.clip is not None:
            torch.nn.utils.clip_grad_norm_(parts.params, parts.clip)
        parts.optimizer.step()


def graphed_step(trainer: Any) -> GraphedStep:
    """The captured-step runner for a trainer whose plan is on (built after its model is prepared)."""
    fit = trainer.config.fit
    parts = StepParts(
        model=trainer.step_module,
        network=trainer.network,
        loss_fn=trainer.loss_fn,
        optimizer=trainer.optimizer,
        params=trainer.trainable,
        clip=fit.gradient_clip,
        every=fit.accumulate_grad_batches,
        precision=fit.precision,
    )
    return GraphedStep(trainer.step, parts, fit.batch_size, trainer.reporter.message)

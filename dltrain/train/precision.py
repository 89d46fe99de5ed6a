"""Mixed precision (`fit.precision`): autocast around the forward pass, a grad scaler for fp16.

`32` is plain float32 (no context, no scaler). `bf16-mixed` needs no scaler: bfloat16
has float32's range. `16-mixed` scales the loss so small float16 gradients do not
underflow; the scaler skips a step whose gradients overflowed (it reads one flag per
step to decide: the only host sync in the step, inherent to fp16 training).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

import torch

from ..errors import UserError

DTYPES: dict[str, torch.dtype | None] = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class Precision:
    """How one training step runs its forward pass, backward pass and optimizer step."""

    def __init__(self, name: str, device: torch.device) -> None:
        dtype = DTYPES[name]
        if dtype is not None and not torch.amp.is_autocast_available(device.type):
            raise UserError(
                f"fit.precision: {name} needs autocast, which PyTorch does not offer on {device.type}; "
                f"use precision: 32"
            )
        self.autocast: Callable[[], ContextManager[Any]] = (
            (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
        )
        self.scaler = torch.amp.GradScaler(device.type) if name == "16-mixed" else None

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], clip: float | None) -> None:
        """Clip (on true gradients), step, and clear the gradients for the next step."""
        if self.scaler is not None:
            if clip is not None:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, clip)
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def state(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)

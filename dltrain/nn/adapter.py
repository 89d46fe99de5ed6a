"""The on-device input adapter: channel conversion, resizing and ImageNet normalization.

These transforms change the shape (or come after a shape change), so they run per
batch on the device instead of once on the stored data: 60,000 MNIST digits resized to
224x224x3 would not fit in memory, one batch does. The adapter is the first module of
the network, so `predict`, `evaluate` and exports apply it exactly as training did.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, ...]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputAdapter(nn.Module):
    """`[C, H, W]` → `[channels, *resize]`, then ImageNet statistics if asked."""

    def __init__(self, in_shape: Shape, channels: int | None, resize: tuple[int, int] | None, imagenet: bool) -> None:
        super().__init__()
        self.in_channels = in_shape[0]
        self.channels = channels or in_shape[0]
        self.resize = resize if resize and tuple(resize) != tuple(in_shape[1:]) else None
        self.imagenet = imagenet
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) if imagenet else torch.zeros(0)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) if imagenet else torch.ones(0)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.out_shape: Shape = (self.channels, *(self.resize or in_shape[1:]))

    @property
    def is_identity(self) -> bool:
        return self.channels == self.in_channels and self.resize is None and not self.imagenet

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H', W')
        if self.channels != self.in_channels:
            x = x.expand(-1, self.channels, -1, -1) if self.in_channels == 1 else x.mean(dim=1, keepdim=True)
        if self.resize is not None:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False)
        if self.imagenet:
            x = (x - self.mean) / self.std
        return x

    def describe(self) -> str:
        steps = []
        if self.channels != self.in_channels:
            steps.append(f"channels {self.in_channels}→{self.channels}")
        if self.resize is not None:
            steps.append(f"resize to {list(self.resize)}")
        if self.imagenet:
            steps.append("ImageNet normalization")
        return ", ".join(steps)

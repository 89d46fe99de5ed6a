"""`data.augment`: random flips, padded crops and rotations of training images, on the device.

Every transform is an affine map of the image, so a whole batch is augmented by one
`affine_grid` + `grid_sample`, one random matrix per image, on the device the batch
already lives on. In-memory image sources keep their tensor-indexing fast path, and
decoded image folders get the same augmentation after the DataLoader. Only training
batches are augmented; validation, test, evaluate and predict never are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..schema.data import AugmentParams


class Augment:
    """Draws one random affine map per image and resamples the batch with it."""

    def __init__(self, params: AugmentParams) -> None:
        flip = params.random_flip or ""
        self.flip_x = "horizontal" in flip
        self.flip_y = "vertical" in flip
        self.padding = params.random_crop.padding if params.random_crop else 0
        self.degrees = params.random_rotation or 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        batch, _, height, width = x.shape
        theta = self.matrices(batch, height, width, x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def matrices(self, batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(B, 2, 3) maps from output to input coordinates, in grid_sample's [-1, 1] units."""
        angle = (torch.rand(batch, device=device) * 2 - 1) * math.radians(self.degrees)
        cos, sin = angle.cos(), angle.sin()
        # A rotation in pixel space, written in normalized coordinates (H and W may differ).
        theta = torch.stack(
            [
                torch.stack([cos, -sin * height / width, torch.zeros_like(cos)], dim=1),
                torch.stack([sin * width / height, cos, torch.zeros_like(cos)], dim=1),
            ],
            dim=1,
        )
        if self.padding:  # whole-pixel shifts: a crop of the zero-padded image
            shift = torch.randint(-self.padding, self.padding + 1, (batch, 2), device=device).float()
            theta[:, 0, 2] = shift[:, 0] * 2 / width
            theta[:, 1, 2] = shift[:, 1] * 2 / height
        for axis, enabled in ((0, self.flip_x), (1, self.flip_y)):
            if enabled:
                sign = torch.randint(0, 2, (batch,), device=device).float() * 2 - 1
                theta[:, :, axis] = theta[:, :, axis] * sign[:, None]
        return theta


def build_augment(params: AugmentParams | None) -> Augment | None:
    """The augmentation to apply to training batches, or None when nothing is asked."""
    if params is None or not (params.random_flip or params.random_crop or params.random_rotation):
        return None
    return Augment(params)

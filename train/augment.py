"""Random small affine distortions of training digits: more variety from 5,000 examples."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Largest rotation (degrees), relative scaling and shift (pixels) of an augmented digit.
MAX_ROTATION = 10.0
MAX_SCALE = 0.08
MAX_SHIFT = 2.0


def augment(x: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Return digits [N, 784] where a random `share` of them is rotated, scaled and shifted.

    The untouched share keeps the model's pixel statistics tied to real, undistorted digits;
    bilinear resampling slightly blurs the distorted ones.
    """
    draws = draw_distortions(len(x), share, generator)
    return x if draws is None else distort(x, *draws)


def draw_distortions(n: int, share: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Draw the distortions of n digits: affine maps theta [n,2,3] and which digits keep their shape [n].

    None when `share` is 0. Drawn on the CPU, so that every device and every process that splits
    the batch gets the same numbers.
    """
    if share <= 0:
        return None
    # Always draw the same number of values, so the random stream does not depend on `share`.
    u = torch.rand((5, n), generator=generator) * 2 - 1
    keep = torch.rand(n, generator=generator) >= share
    angle = u[0] * math.radians(MAX_ROTATION)
    scale = 1 + u[1] * MAX_SCALE
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid works in [-1, 1] coordinates: one pixel is 2/28.
    shift = u[2:4] * (MAX_SHIFT * 2 / 28)
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)
    return theta, keep


def distort(x: torch.Tensor, theta: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Return digits [N, 784] moved by theta [N,2,3], except those marked in keep [N]."""
    n = len(x)
    if n == 0:  # a rank's share of a last, small batch can be empty
        return x
    theta, keep = theta.to(x.device), keep.to(x.device)
    images = x.reshape(n, 1, 28, 28)
    grid = F.affine_grid(theta, [n, 1, 28, 28], align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where(keep[:, None], x, moved.reshape(n, -1))

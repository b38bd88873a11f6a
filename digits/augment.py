"""Random small affine changes of each training image (shift, rotation, zoom), drawn from a
seeded generator for a whole global batch and applied on the training device as the batch
is drawn: no per-item DataLoader, the same seed gives the same batches, and every process
of a distributed run draws the same numbers for the images it shares."""

import math

import torch
import torch.nn.functional as F


def random_affine(
    n: int, generator: torch.Generator, shift: float, rotate: float, scale: float
) -> torch.Tensor:
    """n affine matrices (n×2×3, in affine_grid's units) for 28×28 images: a shift of up to
    `shift` pixels, a rotation of up to `rotate` degrees and a zoom of up to `scale` either way."""

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * limit

    angle, zoom = uniform(math.radians(rotate)), 1 + uniform(scale)
    dx, dy = uniform(2 * shift / 28), uniform(2 * shift / 28)  # affine_grid's [-1, 1] spans 28 pixels
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([cos, -sin, dx], 1), torch.stack([sin, cos, dy], 1)], 1)


def warp(pixels: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """pixels: float N×1×H×W, black 0; what comes in from outside the image is black."""
    if not len(pixels):  # a rank's empty share of a batch: affine_grid refuses N = 0
        return pixels
    grid = F.affine_grid(theta.to(pixels.device), list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

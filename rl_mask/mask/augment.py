"""Augmentation of faces: random flip, shift, scale, rotation, contrast and brightness.

Public: the data owner augments its private faces with it before they are masked, the
attacker augments its public faces with the same code when it simulates the defence, and the
owner's judge trains on augmented faces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, [B, *, height, width], align_corners=False)``, built as one
    broadcast add of a ``[B, 1, W, 2]`` and a ``[B, H, 1, 2]`` term: a single pass over the
    grid (``F.affine_grid``, a K=3 batched matmul, or full-size terms stacked into the last
    axis take two to five times as long on CPU, where the data owner augments)."""
    t = theta.transpose(1, 2)[:, None, None]  # [B, 1, 1, 3, 2]: row c holds (x' coef, y' coef) of input c
    xs, ys = _pixel_centres(width), _pixel_centres(height)
    return t[..., 0, :] * xs[None, None, :, None] + (t[..., 1, :] * ys[None, :, None, None] + t[..., 2, :])


def _pixel_centres(n: int) -> torch.Tensor:
    """The ``n`` pixel-centre coordinates in [-1, 1] (``align_corners=False``)."""
    return (torch.arange(n, dtype=torch.float32) * 2 + 1) / n - 1


def contrast_brightness(images: torch.Tensor, generator: torch.Generator | None, contrast_min: float, contrast_width: float, brightness: float) -> torch.Tensor:
    """Per image: contrast in [contrast_min, contrast_min + contrast_width] about the image's
    mean, then a brightness shift in [-brightness, brightness] (not clamped)."""
    b = images.shape[0]
    contrast = contrast_min + contrast_width * torch.rand(b, 1, 1, 1, generator=generator)
    shift = brightness * (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * contrast + mean + shift


def augment(images: torch.Tensor, generator: torch.Generator | None = None, max_shift: float = 0.06, max_scale: float = 0.06, max_rotate_deg: float = 6.0) -> torch.Tensor:
    """Random horizontal flip, shift, scale and rotation of a batch ``[B, P, H, W]`` in one
    ``grid_sample`` call (done by the data owner, before masking)."""
    b, _, h, w = images.shape
    u = torch.rand(b, 5, generator=generator) * 2 - 1
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    scale = 1 + max_scale * u[:, 0]
    angle = torch.deg2rad(max_rotate_deg * u[:, 1])
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, max_shift * 2 * u[:, 2]], 1), torch.stack([sin * flip, cos, max_shift * 2 * u[:, 3]], 1)], 1
    )
    grid = affine_grid(theta, h, w).to(images.device, images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

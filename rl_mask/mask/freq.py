"""JPEG-style orthonormal 8x8 block DCT with coefficients regrouped into channels.

Each 8x8 pixel block becomes 64 coefficients; coefficient ``c`` (in zig-zag order, 0 = DC)
of every block of a colour plane forms one channel, so an image ``[P, H, W]`` becomes
``[P * 64, H / 8, W / 8]`` (PPFR-FD / DCTDP layout, channel index = plane * 64 + c).

The transform is one 64x64 orthonormal matrix applied to every block, so it is linear and
exactly invertible: mixing the full DCT of images equals mixing the pixels. Privacy only
comes from what is done in this domain (channel removal, mixing, sign flips).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

BLOCK = 8
CHANNELS_PER_PLANE = BLOCK * BLOCK


def _zigzag_order(n: int = BLOCK) -> list[tuple[int, int]]:
    """(row, col) of an n x n block in JPEG zig-zag order."""
    cells = [(r, c) for r in range(n) for c in range(n)]
    # Anti-diagonals s = r + c; odd ones run down (row ascending), even ones run up.
    return sorted(cells, key=lambda rc: (rc[0] + rc[1], rc[0] if (rc[0] + rc[1]) % 2 else -rc[0]))


ZIGZAG: tuple[tuple[int, int], ...] = tuple(_zigzag_order())


@functools.lru_cache(maxsize=None)
def _basis_cpu64() -> torch.Tensor:
    """The 64x64 orthonormal block-DCT basis, rows in zig-zag order (float64, CPU)."""
    n = torch.arange(BLOCK, dtype=torch.float64)
    u = n[:, None]
    d = torch.cos(math.pi * (2 * n[None, :] + 1) * u / (2 * BLOCK))
    d[0] *= math.sqrt(1.0 / BLOCK)
    d[1:] *= math.sqrt(2.0 / BLOCK)
    # 2-D basis: coefficient (u, v) = sum_{n,m} d[u, n] d[v, m] x[n, m].
    full = torch.einsum("un,vm->uvnm", d, d).reshape(CHANNELS_PER_PLANE, CHANNELS_PER_PLANE)
    order = [r * BLOCK + c for r, c in ZIGZAG]
    return full[order].contiguous()


_BASIS_CACHE: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def dct_basis(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal basis ``K`` with ``coeffs = K @ block.flatten()`` (zig-zag rows)."""
    key = (torch.device(device), dtype)
    if key not in _BASIS_CACHE:
        _BASIS_CACHE[key] = _basis_cpu64().to(device=key[0], dtype=dtype)
    return _BASIS_CACHE[key]


def block_dct(images: torch.Tensor, upsample: int = 1, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Block DCT of ``images [B, P, H, W]`` -> ``[B, P*64, H*u/8, W*u/8]``.

    ``upsample`` > 1 resizes the images bilinearly by that factor first (TFace uses 8),
    which gives the frequency channels a larger spatial grid. ``keep`` (zig-zag indices, the
    same for every plane) computes only those channels: ``[B, P*len(keep), ...]``, the same
    as selecting them afterwards, without computing the rest.
    """
    if images.dim() != 4:
        raise ValueError(f"block_dct expects [B, P, H, W], got shape {tuple(images.shape)}")
    if upsample < 1:
        raise ValueError(f"upsample must be >= 1, got {upsample}")
    if upsample > 1:
        images = F.interpolate(images, scale_factor=upsample, mode="bilinear", align_corners=False)
    b, p, h, w = images.shape
    if h % BLOCK or w % BLOCK:
        raise ValueError(f"image size {h}x{w} is not a multiple of {BLOCK}; resize the faces first")
    basis = dct_basis(images.device, images.dtype)
    if keep is not None:
        basis = basis.index_select(0, keep.to(images.device))
    # One 8x8 basis image per channel, applied with stride 8: a strided convolution is the
    # block DCT, and it writes the channel layout directly (2x faster than block matmuls on CPU).
    kernels = basis.reshape(-1, 1, BLOCK, BLOCK)
    coeffs = F.conv2d(images.reshape(b * p, 1, h, w), kernels, stride=BLOCK)
    return coeffs.reshape(b, p * kernels.shape[0], h // BLOCK, w // BLOCK)


def block_idct(coeffs: torch.Tensor, downsample: int = 1) -> torch.Tensor:
    """Exact inverse of :func:`block_dct` (``downsample`` undoes its ``upsample`` by resizing)."""
    if coeffs.dim() != 4 or coeffs.shape[1] % CHANNELS_PER_PLANE:
        raise ValueError(f"block_idct expects [B, P*64, h, w], got shape {tuple(coeffs.shape)}")
    b, c, hb, wb = coeffs.shape
    p = c // CHANNELS_PER_PLANE
    flat = coeffs.reshape(b, p, CHANNELS_PER_PLANE, hb, wb).permute(0, 1, 3, 4, 2)
    blocks = flat @ dct_basis(coeffs.device, coeffs.dtype)  # K orthonormal: inverse = K^T
    blocks = blocks.reshape(b, p, hb, wb, BLOCK, BLOCK).permute(0, 1, 2, 4, 3, 5)
    images = blocks.reshape(b, p, hb * BLOCK, wb * BLOCK)
    if downsample > 1:
        images = F.interpolate(images, scale_factor=1.0 / downsample, mode="bilinear", align_corners=False)
    return images

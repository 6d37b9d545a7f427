"""Image similarity of reconstructions to the private originals: PSNR and SSIM (scikit-image).

Images are ``[N, P, H, W]`` tensors in [-1, 1]; both metrics are computed on [0, 1]
(``data_range=1``), per image.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

#: PSNR of identical images is infinite; cap it so means stay finite (and say so).
PSNR_CAP_DB = 100.0


def _unit(images: torch.Tensor) -> np.ndarray:
    """``[N, P, H, W]`` in [-1, 1] -> ``[N, H, W, P]`` float64 in [0, 1]."""
    if images.dim() != 4:
        raise ValueError(f"expected images [N, P, H, W], got shape {tuple(images.shape)}")
    return ((images.detach().cpu().double().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"reconstructions {tuple(a.shape)} and references {tuple(b.shape)} differ in shape")


def psnr(images: torch.Tensor, references: torch.Tensor) -> np.ndarray:
    """Per-image PSNR in dB (capped at ``PSNR_CAP_DB`` for identical images)."""
    _check(images, references)
    x, y = _unit(images), _unit(references)
    out = np.empty(len(x))
    for i in range(len(x)):
        if np.array_equal(x[i], y[i]):
            out[i] = PSNR_CAP_DB
        else:
            out[i] = min(PSNR_CAP_DB, peak_signal_noise_ratio(y[i], x[i], data_range=1.0))
    return out


def ssim(images: torch.Tensor, references: torch.Tensor) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004; 7x7 window, scikit-image defaults)."""
    _check(images, references)
    x, y = _unit(images), _unit(references)
    return np.array([structural_similarity(y[i], x[i], data_range=1.0, channel_axis=-1) for i in range(len(x))])


def best_match(images: torch.Tensor, labels: torch.Tensor, gallery: torch.Tensor, gallery_labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For images with no single original (model inversion): per image, the best PSNR and the
    best SSIM over the gallery images of its label (the attacker-favourable reading)."""
    best_psnr = np.full(len(images), -np.inf)
    best_ssim = np.full(len(images), -np.inf)
    for i in range(len(images)):
        refs = gallery[gallery_labels == labels[i]]
        if len(refs) == 0:
            raise ValueError(f"no gallery image of identity {int(labels[i])}")
        rep = images[i : i + 1].expand_as(refs)
        best_psnr[i] = psnr(rep, refs).max()
        best_ssim[i] = ssim(rep, refs).max()
    return best_psnr, best_ssim

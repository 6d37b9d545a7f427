"""Pixel-domain defences: none (plain training), MixUp, InstaHide, and DP-SGD.

MixUp and InstaHide share ``rl_mask.mask.masking.mix`` with the hybrid mask; only the domain
differs. DP-SGD leaves the pixels as they are and protects through training instead.
"""

from __future__ import annotations

import torch

from rl_mask.config import DPConfig
from rl_mask.mask.defences.base import Defence
from rl_mask.mask.masking import MaskedBatch, mix


class PixelDefence(Defence):
    input_kind = "pixel"

    def __init__(self, name: str, k: int = 1, weights: str = "dirichlet", alpha: float = 1.0, cap: float = 1.0, sign_flip: bool = False):
        self.name = name
        self.k = k
        self.weights = weights
        self.alpha = alpha
        self.cap = cap
        self.sign_flip = sign_flip

    def input_shape(self, planes: int, height: int, width: int) -> tuple[int, int, int]:
        return (planes * 64, height // 8, width // 8)

    def encode_train(self, images, labels, generator=None) -> MaskedBatch:
        return mix(images, labels, self.k, weights=self.weights, alpha=self.alpha, cap=self.cap, sign_flip=self.sign_flip, generator=generator)

    def encode_eval(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def to_pixels(self, encoded: torch.Tensor) -> torch.Tensor:
        return encoded

    def describe(self) -> dict:
        return {"name": self.name, "k": self.k, "weights": self.weights, "alpha": self.alpha, "cap": self.cap, "sign_flip": self.sign_flip}


class DPSGDDefence(PixelDefence):
    """DP-SGD (Abadi et al. 2016) through Opacus: clean pixels, per-sample gradient clipping
    and Gaussian noise, Poisson-sampled batches; BatchNorm becomes GroupNorm (Opacus cannot
    clip per sample through batch statistics).

    It protects the *trained model* (and so against model inversion) with a formal
    (epsilon, delta) guarantee; the training tensors themselves are plain pixels.
    """

    private_training = True

    def __init__(self, dp: DPConfig):
        super().__init__("dpsgd")
        self.dp = dp

    def describe(self) -> dict:
        return {**super().describe(), "dp": {"target_epsilon": self.dp.target_epsilon, "delta": self.dp.delta, "max_grad_norm": self.dp.max_grad_norm}}

"""Privacy metrics of an attack's reconstructions, and the combined privacy score.

Given an attack's ``Reconstruction`` (images and the private identity each should show):

- ``acc1`` / ``acc5``: identity leak, the fraction the independent evaluation model
  (``rl_mask.owner.judge.evaluator``) puts the right identity first / in its top 5 (chance is
  1 / number of private identities, and 5 / that);
- ``knn``: mean L2 distance, in the evaluation model's normalised feature space, from a
  reconstruction to the *nearest* private face (train or test) of its identity;
  ``knn_ratio`` divides it by the typical distance between different private people (the
  median, over private faces, of the distance to the nearest face of another identity);
- ``psnr`` / ``ssim`` (dB / [-1, 1]) against the dominant original for reconstruction attacks,
  and the best over the identity's private training faces for inversion attacks.

Combined privacy score (in the spirit of Score_pp; 1 = nothing leaks, 0 = everything)::

    visual   = 1 - clip(ssim, 0, 1)                       (mean SSIM of the cell)
    psnr_t   = 1 - clip((psnr - 10 dB) / (30 dB - 10 dB), 0, 1)
    feature  = clip(knn_ratio, 0, 1)
    attack   = 1 - clip((acc1 - chance) / (1 - chance), 0, 1)
    score    = ALPHA * (visual + psnr_t + feature) / 3 + BETA * attack,   ALPHA = 0.4, BETA = 0.6

A defence's privacy is its *worst* (lowest) score over the attacks run against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from rl_mask.attacks.base import Reconstruction
from rl_mask.owner.judge.evaluator import EvaluationModel
from rl_mask.owner.judge.image import best_match, psnr, ssim
from rl_mask.server.evaluation import identification_accuracy

if TYPE_CHECKING:
    from rl_mask.owner.stream import PrivateData

ALPHA = 0.4  # visual / feature-level
BETA = 0.6  # attack-level
PSNR_FLOOR_DB = 10.0  # about what an unrelated face scores
PSNR_CEIL_DB = 30.0  # visually near-identical


def privacy_score(ssim_mean: float, psnr_mean: float, knn_ratio: float, acc1: float, chance: float) -> dict:
    """The combined score and its terms (see the module docstring for the exact formula)."""
    visual = 1.0 - float(np.clip(ssim_mean, 0.0, 1.0))
    psnr_term = 1.0 - float(np.clip((psnr_mean - PSNR_FLOOR_DB) / (PSNR_CEIL_DB - PSNR_FLOOR_DB), 0.0, 1.0))
    feature = float(np.clip(knn_ratio, 0.0, 1.0))
    attack = 1.0 - float(np.clip((acc1 - chance) / (1.0 - chance), 0.0, 1.0))
    score = ALPHA * (visual + psnr_term + feature) / 3.0 + BETA * attack
    return {"score": score, "visual_term": visual, "psnr_term": psnr_term, "feature_term": feature, "attack_term": attack}


@dataclass
class PrivacyJudge:
    """The evaluation model with the private faces it compares reconstructions against."""

    model: EvaluationModel
    gallery: torch.Tensor  # private faces (train + test), [-1, 1]
    gallery_labels: torch.Tensor
    train_images: torch.Tensor  # private training faces (inversion attacks' PSNR/SSIM references)
    train_labels: torch.Tensor
    num_classes: int

    @classmethod
    def for_private_data(cls, model: EvaluationModel, data: "PrivateData") -> "PrivacyJudge":
        """Gallery = every private face (train + test); references = the training faces."""
        return cls(
            model,
            gallery=torch.cat([data.train_images, data.test_images]),
            gallery_labels=torch.cat([data.train_labels, data.test_labels]),
            train_images=data.train_images,
            train_labels=data.train_labels,
            num_classes=data.num_classes,
        )

    def __post_init__(self) -> None:
        _, self.gallery_features = self.model.predict(self.gallery)
        self.knn_reference = self._other_identity_distance()

    @property
    def chance(self) -> float:
        return 1.0 / self.num_classes

    def _other_identity_distance(self) -> float:
        d = torch.cdist(self.gallery_features, self.gallery_features, compute_mode="donot_use_mm_for_euclid_dist")
        other = self.gallery_labels[:, None] != self.gallery_labels[None, :]
        return float(d.masked_fill(~other, float("inf")).min(dim=1).values.median())

    def knn_distance(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per image: distance to the nearest gallery face of its identity."""
        d = torch.cdist(features, self.gallery_features, compute_mode="donot_use_mm_for_euclid_dist")
        same = labels[:, None] == self.gallery_labels[None, :]
        return d.masked_fill(~same, float("inf")).min(dim=1).values

    def identity_leak(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        logits, features = self.model.predict(images)
        knn = self.knn_distance(features, labels)
        return {
            "acc1": identification_accuracy(logits, labels, 1),
            "acc5": identification_accuracy(logits, labels, 5),
            "knn": float(knn.mean()),
            "knn_ratio": float(knn.mean()) / self.knn_reference,
        }

    def score(self, rec: Reconstruction, references: torch.Tensor | None = None) -> dict:
        """All metrics of one attack on one defence. ``references``: the dominant originals
        (reconstruction attacks); ``None`` compares with the identity's training faces."""
        if rec.images.shape[0] != rec.labels.shape[0]:
            raise ValueError(f"{rec.images.shape[0]} reconstructions but {rec.labels.shape[0]} labels")
        if not torch.isfinite(rec.images).all():
            raise ValueError("reconstructions contain NaN or infinite values")
        out = self.identity_leak(rec.images, rec.labels)
        if references is not None:
            p, s = psnr(rec.images, references), ssim(rec.images, references)
        else:
            p, s = best_match(rec.images, rec.labels, self.train_images, self.train_labels)
        out.update(psnr=float(np.mean(p)), ssim=float(np.mean(s)), n=int(rec.images.shape[0]), chance_acc1=self.chance)
        out.update(privacy_score(out["ssim"], out["psnr"], out["knn_ratio"], out["acc1"], self.chance))
        return out

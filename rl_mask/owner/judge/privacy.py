"""Privacy metrics of an attack's reconstructions, and the combined privacy score.

Given an attack's ``Reconstruction`` (images and the private identity each should show) and,
for reconstruction attacks, the owner's ``ScoringKey`` (per crossed row: the k identities
mixed, the k originals, the dominant column):

- ``acc1`` / ``acc5``: identity leak, the fraction the independent evaluation model
  (``rl_mask.owner.judge.evaluator``) puts the right identity first / in its top 5 (chance is
  1 / number of private identities, and 5 / that). For reconstruction attacks "right" is
  *any* of the k identities mixed in the row (a mixed row leaks every face in it):
  ``acc1 = acc1_any``, the headline; ``acc1_dominant`` (the largest-weight face's identity)
  is reported beside it;
- ``knn``: mean L2 distance, in the evaluation model's normalised feature space, from a
  reconstruction to the *nearest* private face (train or test) of its identity (for
  reconstruction attacks: of any of the row's identities); ``knn_ratio`` divides it by the
  typical distance between different private people (the median, over private faces, of
  the distance to the nearest face of another identity);
- ``psnr`` / ``ssim`` (dB / [-1, 1]): reconstruction attacks, the best over the row's k
  originals (``psnr_dominant`` / ``ssim_dominant``: against the dominant one); inversion
  attacks, the best over the identity's private training faces.

Combined privacy score (in the spirit of Score_pp; 1 = nothing leaks, 0 = everything)::

    visual   = 1 - clip(ssim, 0, 1)                       (mean SSIM of the cell)
    psnr_t   = 1 - clip((psnr - 10 dB) / (30 dB - 10 dB), 0, 1)
    feature  = clip(knn_ratio, 0, 1)
    attack   = 1 - clip((acc1 - chance) / (1 - chance), 0, 1)   (acc1: any-of-k)
    score    = ALPHA * (visual + psnr_t + feature) / 3 + BETA * attack,   ALPHA = 0.4, BETA = 0.6

A defence's privacy is its *worst* (lowest) score over the attacks run against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from rl_mask.metrics import identification_accuracy
from rl_mask.owner.judge.evaluator import EvaluationModel
from rl_mask.owner.judge.image import best_match, psnr, ssim
from rl_mask.reconstruction import Reconstruction

if TYPE_CHECKING:
    from rl_mask.owner.stream import PrivateData, TrainingBatch

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


def any_of_k_hits(model: EvaluationModel, images: torch.Tensor, row_labels: torch.Tensor) -> torch.Tensor:
    """``[N]`` bool: the judge's top-1 identity of each reconstruction is one of its row's
    identities (``row_labels [N, k]``, -1 padding)."""
    logits, _ = model.predict(images)
    top1 = logits.argmax(dim=1)
    return ((top1[:, None] == row_labels) & (row_labels >= 0)).any(dim=1)


def batch_leak(model: EvaluationModel, reconstructions: dict[str, torch.Tensor], row_labels: torch.Tensor) -> dict[str, float]:
    """The attacker-in-the-loop's leak on one batch, scored by the owner: per attack the
    any-of-k acc@1 of its reconstructions (one per row), and ``leak``, the fraction of rows that
    leak under at least one attack (the strongest attack per row)."""
    hits = {name: any_of_k_hits(model, images, row_labels) for name, images in reconstructions.items()}
    out = {f"leak/{name}": float(h.float().mean()) for name, h in hits.items()}
    out["leak"] = float(torch.stack(list(hits.values())).any(dim=0).float().mean())
    return out


@dataclass
class ScoringKey:
    """Owner side, never given to an attack: what each crossed row (in sending order) mixes.

    ``labels[n, j]`` / ``sources[n, j]``: identity / index into ``originals`` of the face in
    column j of row n (-1 where a message had fewer columns); ``dominant[n]``: the column of
    the largest weight. ``originals``: the augmented faces before encoding.
    """

    labels: torch.Tensor  # [N, k] long
    sources: torch.Tensor  # [N, k] long, -1 padded
    originals: torch.Tensor  # [F, P, H, W]
    dominant: torch.Tensor  # [N] long

    @classmethod
    def single(cls, labels: torch.Tensor, originals: torch.Tensor) -> "ScoringKey":
        """Unmixed rows: row n is ``originals[n]`` of identity ``labels[n]``."""
        n = len(labels)
        return cls(labels.long()[:, None], torch.arange(n)[:, None], originals, torch.zeros(n, dtype=torch.long))

    @property
    def dominant_labels(self) -> torch.Tensor:
        return self.labels.gather(1, self.dominant[:, None]).squeeze(1)

    def dominant_originals(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        src = self.sources.gather(1, self.dominant[:, None]).squeeze(1)
        return self.originals[src if rows is None else src[rows]]


def scoring_key(batches: "list[TrainingBatch]") -> ScoringKey:
    """The key of the rows of ``batches`` as they crossed (empty batches send no rows)."""
    kept = [b for b in batches if b.masked.inputs.shape[0] > 0]
    if not kept:
        raise ValueError("no protected rows in the given batches")
    k = max(b.masked.k for b in kept)
    labels, sources, dominant, originals, offset = [], [], [], [], 0

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.new_full((t.shape[0], k - t.shape[1]), -1)], dim=1)

    for b in kept:
        m = b.masked
        labels.append(pad(m.labels))
        sources.append(pad(m.sources + offset))
        dominant.append(m.dominant)
        originals.append(b.originals)
        offset += b.originals.shape[0]
    return ScoringKey(torch.cat(labels), torch.cat(sources), torch.cat(originals), torch.cat(dominant))


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

    def any_of_k_leak(self, images: torch.Tensor, row_labels: torch.Tensor, dominant: torch.Tensor, claimed: torch.Tensor) -> dict:
        """Identity leak of reconstructions of mixed rows: a hit is any of the row's identities."""
        logits, features = self.model.predict(images)
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        valid = row_labels >= 0
        hit = (top5[:, :, None] == row_labels[:, None, :]) & valid[:, None, :]
        d = torch.cdist(features, self.gallery_features, compute_mode="donot_use_mm_for_euclid_dist")
        same = ((row_labels[:, :, None] == self.gallery_labels[None, None, :]) & valid[:, :, None]).any(1)
        knn = d.masked_fill(~same, float("inf")).min(dim=1).values
        top1 = top5[:, 0]
        return {
            "acc1": float(hit[:, 0].any(1).float().mean()),
            "acc5": float(hit.any((1, 2)).float().mean()),
            "acc1_any": float(hit[:, 0].any(1).float().mean()),
            "acc1_dominant": float((top1 == dominant).float().mean()),
            "acc1_claimed": float((top1 == claimed).float().mean()),
            "knn": float(knn.mean()),
            "knn_ratio": float(knn.mean()) / self.knn_reference,
        }

    def _image_similarity(self, rec: Reconstruction, key: ScoringKey, rows: torch.Tensor) -> dict:
        """PSNR/SSIM against the best-matching of each row's originals, and the dominant one."""
        sources = key.sources[rows]
        best_p = np.full(len(rows), -np.inf)
        best_s = np.full(len(rows), -np.inf)
        for j in range(sources.shape[1]):
            valid = (sources[:, j] >= 0).numpy()
            if not valid.any():
                continue
            idx = np.flatnonzero(valid)
            refs = key.originals[sources[idx, j]]
            best_p[idx] = np.maximum(best_p[idx], psnr(rec.images[idx], refs))
            best_s[idx] = np.maximum(best_s[idx], ssim(rec.images[idx], refs))
        dom = key.dominant_originals(rows)
        return {
            "psnr": float(best_p.mean()),
            "ssim": float(best_s.mean()),
            "psnr_dominant": float(np.mean(psnr(rec.images, dom))),
            "ssim_dominant": float(np.mean(ssim(rec.images, dom))),
        }

    def score(self, rec: Reconstruction, key: ScoringKey | None = None) -> dict:
        """All metrics of one attack on one defence. ``key``: the owner's record of the
        crossed rows (reconstruction attacks, required); inversion attacks are compared with
        the identity's training faces."""
        if rec.images.shape[0] != rec.labels.shape[0]:
            raise ValueError(f"{rec.images.shape[0]} reconstructions but {rec.labels.shape[0]} labels")
        if not torch.isfinite(rec.images).all():
            raise ValueError("reconstructions contain NaN or infinite values")
        if rec.kind == "reconstruction":
            if key is None:
                raise ValueError("reconstruction attacks are scored against a ScoringKey")
            rows = rec.rows if rec.rows is not None else torch.arange(rec.images.shape[0])
            out = self.any_of_k_leak(rec.images, key.labels[rows], key.dominant_labels[rows], rec.labels)
            out.update(self._image_similarity(rec, key, rows))
        else:
            out = self.identity_leak(rec.images, rec.labels)
            p, s = best_match(rec.images, rec.labels, self.train_images, self.train_labels)
            out.update(psnr=float(np.mean(p)), ssim=float(np.mean(s)))
        out.update(n=int(rec.images.shape[0]), chance_acc1=self.chance)
        out.update(privacy_score(out["ssim"], out["psnr"], out["knn_ratio"], out["acc1"], self.chance))
        return out

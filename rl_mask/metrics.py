"""Utility metrics: closed-set identification, LFW-style verification, TAR at FAR, ROC and CMC.

Verification follows the LFW protocol (and insightface's / TFace's evaluation of it): cosine
similarity of the two embeddings, and per fold the threshold that is best on the other folds
is applied to it. TAR at FAR is read from every pair at once (as insightface reports it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def identification_accuracy(logits: torch.Tensor, labels: torch.Tensor, topk: int = 1) -> float:
    """Fraction of samples whose true label is among the ``topk`` highest logits."""
    top = logits.topk(min(topk, logits.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def pair_scores(embeddings: torch.Tensor, pairs: torch.Tensor) -> np.ndarray:
    """Cosine similarity of each pair ``[M, 2]`` of rows of ``embeddings``."""
    e = F.normalize(embeddings.float(), dim=1)
    return (e[pairs[:, 0]] * e[pairs[:, 1]]).sum(dim=1).cpu().numpy()


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The lowest of the given scores that, as threshold (``score >= t`` means same), classifies the most pairs right."""
    candidates = np.unique(scores)
    # pairs at or above each candidate: same ones are right; below it: different ones are right
    same_at_or_above = np.sort(scores[same])
    diff_sorted = np.sort(scores[~same])
    right = (len(same_at_or_above) - np.searchsorted(same_at_or_above, candidates, side="left")) + np.searchsorted(diff_sorted, candidates, side="left")
    return float(candidates[int(np.argmax(right))])


def kfold_verification(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> dict:
    """Accuracy per fold with the threshold chosen on the other folds: ``{"accuracy", "std", "thresholds", "fold_accuracy"}``."""
    same = np.asarray(same, dtype=bool)
    accs, thresholds = [], []
    for f in np.unique(fold):
        test = fold == f
        t = best_threshold(scores[~test], same[~test])
        thresholds.append(t)
        accs.append(float(((scores[test] >= t) == same[test]).mean()))
    return {"accuracy": float(np.mean(accs)), "std": float(np.std(accs)), "thresholds": thresholds, "fold_accuracy": accs}


def verification_accuracy(embeddings: torch.Tensor, pairs: torch.Tensor, same: torch.Tensor, folds: int = 10) -> float:
    """Mean 10-fold accuracy of cosine-similarity verification (LFW protocol), pairs dealt to folds in turn."""
    scores = pair_scores(embeddings, pairs)
    n = len(scores)
    return kfold_verification(scores, same.cpu().numpy().astype(bool), np.arange(n) % max(2, min(folds, n)))["accuracy"]


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, tar, thresholds)`` for every distinct threshold, from strictest to loosest."""
    same = np.asarray(same, dtype=bool)
    thresholds = np.unique(scores)[::-1]
    far = (len(scores[~same]) - np.searchsorted(np.sort(scores[~same]), thresholds, side="left")) / max(1, int((~same).sum()))
    tar = (len(scores[same]) - np.searchsorted(np.sort(scores[same]), thresholds, side="left")) / max(1, int(same.sum()))
    return np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), np.concatenate([[np.inf], thresholds])


def tar_at_far(scores: np.ndarray, same: np.ndarray, far_target: float) -> float:
    """The highest true-accept rate whose false-accept rate does not exceed ``far_target``.

    With D different-person pairs the FAR moves in steps of 1/D: below that resolution this
    is the TAR at FAR 0 (the threshold above every impostor score)."""
    far, tar, _ = roc_curve(scores, same)
    return float(tar[far <= far_target].max())


def cmc_curve(similarity: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Cumulative match characteristic: entry r-1 is the fraction of probes (rows of
    ``similarity [P, G]``) whose true gallery entry ``truth [P]`` ranks within the top r."""
    true_score = similarity.gather(1, truth[:, None])
    rank = (similarity > true_score).sum(dim=1)  # 0 = best; ties count in the probe's favour
    return np.array([(rank < r).float().mean().item() for r in range(1, similarity.shape[1] + 1)])


def recognition_metrics(embeddings: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, pairs: torch.Tensor | None = None, same: torch.Tensor | None = None) -> dict:
    """Identification top-1/top-5 of held-out faces, and verification on pairs of them."""
    out = {
        "identification_acc": identification_accuracy(logits, labels, 1),
        "identification_top5": identification_accuracy(logits, labels, 5),
    }
    if pairs is not None and same is not None:
        out["verification_acc"] = verification_accuracy(embeddings, pairs, same)
    return out

"""Utility metrics: closed-set identification and LFW-style verification."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def identification_accuracy(logits: torch.Tensor, labels: torch.Tensor, topk: int = 1) -> float:
    """Fraction of samples whose true label is among the ``topk`` highest logits."""
    top = logits.topk(min(topk, logits.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def _fold_accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((scores >= threshold) == same).mean())


def verification_accuracy(embeddings: torch.Tensor, pairs: torch.Tensor, same: torch.Tensor, folds: int = 10) -> float:
    """Mean 10-fold accuracy of cosine-similarity verification (LFW protocol).

    For each fold the threshold that is best on the other folds is applied to it.
    """
    e = F.normalize(embeddings.float(), dim=1)
    scores = (e[pairs[:, 0]] * e[pairs[:, 1]]).sum(dim=1).cpu().numpy()
    truth = same.cpu().numpy().astype(bool)
    n = len(scores)
    folds = max(2, min(folds, n))
    index = np.arange(n)
    accs = []
    for f in range(folds):
        test = index % folds == f
        train = ~test
        candidates = np.unique(scores[train])
        best = max(candidates, key=lambda t: _fold_accuracy(scores[train], truth[train], t))
        accs.append(_fold_accuracy(scores[test], truth[test], best))
    return float(np.mean(accs))


def recognition_metrics(embeddings: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, pairs: torch.Tensor | None = None, same: torch.Tensor | None = None) -> dict:
    """Identification top-1/top-5 of held-out faces, and verification on pairs of them."""
    out = {
        "identification_acc": identification_accuracy(logits, labels, 1),
        "identification_top5": identification_accuracy(logits, labels, 5),
    }
    if pairs is not None and same is not None:
        out["verification_acc"] = verification_accuracy(embeddings, pairs, same)
    return out

"""Utility measured on the data owner's side: its held-out faces never cross.

The owner keeps the k = 1 encodings of its validation and test faces (the encoding inference
probes get: ``rl_mask.owner.messages.held_out_encoding``) and scores the FR network the server
hands back (``TrainedModel``) on them here. The server learns the network's weights were asked
for, nothing of the faces: validation (the reward's utility signal, every ``rl.eval_every`` FR
steps) and test (the reported figures) are owner-side computations, not messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl_mask.mask.defences import Defence
from rl_mask.metrics import recognition_metrics
from rl_mask.owner.messages import held_out_encoding
from rl_mask.owner.stream import PrivateData
from rl_mask.protocol import TrainedModel
from rl_mask.server.models import FaceRecognizer
from rl_mask.server.trainer import model_from_weights


@dataclass(frozen=True)
class HeldOutSet:
    """Owner-kept k = 1 encodings of held-out faces with their identities (and, for the test
    split, verification pairs over them)."""

    split: str  # "validation" or "test"
    inputs: torch.Tensor  # [N, C, h, w]
    labels: torch.Tensor  # [N]
    pairs: torch.Tensor | None = None  # [M, 2] indices into inputs
    same: torch.Tensor | None = None  # [M] bool

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def validation_set(defence: Defence, data: PrivateData) -> HeldOutSet:
    """The validation faces, encoded once: the reward's utility signal."""
    return HeldOutSet("validation", held_out_encoding(defence, data.val_images), data.val_labels.clone())


def final_test_set(defence: Defence, data: PrivateData) -> HeldOutSet:
    """The test faces with verification pairs: the final, reported evaluation."""
    return HeldOutSet("test", held_out_encoding(defence, data.test_images), data.test_labels.clone(), data.pairs, data.same)


@torch.no_grad()
def score_model(model: FaceRecognizer, held_out: HeldOutSet, chunk: int = 256) -> dict:
    """Identification top-1/top-5 (and verification, given pairs) of ``model`` on ``held_out``."""
    if not len(held_out):
        return {"identification_acc": 0.0, "identification_top5": 0.0}
    model.eval()
    device = next(model.parameters()).device
    embs, logits = [], []
    for i in range(0, len(held_out), chunk):
        e = model.embed(held_out.inputs[i : i + chunk].to(device))
        embs.append(e.cpu())
        logits.append(model.head(e).cpu())
    return recognition_metrics(torch.cat(embs), torch.cat(logits), held_out.labels, held_out.pairs, held_out.same)


def score_trained(trained: TrainedModel, held_out: HeldOutSet) -> dict:
    """``score_model`` on the network the server handed back."""
    model, _ = model_from_weights(trained.file_content(), f"the FR server's weights at step {trained.fr_step}")
    return score_model(model, held_out)

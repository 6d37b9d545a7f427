"""Across batches (in the spirit of Carlini et al. 2021 on InstaHide): the same private faces
cross again and again, in other mixtures, under their identity labels.

The FR server receives every batch of training, and each private face is mixed into a new
batch with new partners every epoch. One batch alone may unmix badly (the label-aware search
is weak at k >= 3), but the errors of different batches are different faces, while the
person stays the same. The attack:

1. unmixes every crossed message it holds (the attacked ones and ``AttackTarget.context``, the
   further messages of the run) with the label-aware attack and decodes each row's own face
   (k = 1 decoder); with hard labels the only label is the dominant one, and the row is decoded
   as it is;
2. groups the decoded faces by the identity label that crossed with them (column 0);
3. for each attacked row, blends its own decoded face (weight ``own_weight``) with the mean of
   its ``neighbours`` most similar decoded faces of the same label from *other* messages
   (cosine similarity of the mean-centred faces): repeated views of the same face reinforce
   each other, one batch's unmixing errors average out.

It uses only crossed fields (inputs, labels, weights, message boundaries) and the public
mask; without context it is the label-aware attack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rl_mask.attacks.base import AttackTarget
from rl_mask.attacks.label_aware import LabelAwareUnmixing
from rl_mask.reconstruction import Reconstruction


class CrossBatchAggregation(LabelAwareUnmixing):
    name = "cross-batch"

    def __init__(self, *args, neighbours: int = 3, own_weight: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.neighbours = neighbours
        self.own_weight = own_weight  # the row's own decoded face in the average; the neighbours share the rest

    def attack(self, target: AttackTarget, progress: bool = False) -> Reconstruction:
        context = target.context or []
        n_attacked = len(target.crossed)
        settings = (target.settings or [None] * n_attacked) + (target.context_settings or [None] * len(context))
        everything = AttackTarget(target.defence, list(target.crossed) + list(context), target.model, target.num_classes, settings)
        rec = super().attack(everything, progress)  # one decoded own face per row of every message
        message = torch.cat([torch.full((len(b),), i) for i, b in enumerate(everything.crossed)])
        attacked = message < n_attacked
        faces = rec.images
        flat = faces.flatten(1)
        flat = F.normalize(flat - flat.mean(1, keepdim=True), dim=1)
        out = faces[attacked].clone()
        for i in range(int(attacked.sum())):
            same = (rec.labels == rec.labels[i]) & (message != message[i])
            if not same.any():
                continue
            idx = same.nonzero().flatten()
            sim = flat[idx] @ flat[i]
            top = idx[sim.topk(min(self.neighbours, len(idx))).indices]
            out[i] = self.own_weight * faces[i] + (1 - self.own_weight) * faces[top].mean(0)
        return Reconstruction(out, rec.labels[attacked].clone(), self.kind, rows=torch.arange(int(attacked.sum())))

    def describe(self) -> dict:
        return {**super().describe(), "neighbours": self.neighbours, "own_weight": self.own_weight}

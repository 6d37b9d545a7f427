"""The one interface every attack has: fit on public data, attack the protected data.

An attack sees what a real adversary would: the attacker's own public faces (identities
disjoint from the private ones), the defence as far as its threat model allows, and the
target (the protected training tensors as they left the data owner, and/or the trained FR
model). It returns reconstructions and the identity each is meant to show; scoring them
against the private originals is the harness's job (``rl_mask.owner.judge``), never the attack's.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from rl_mask.owner.defences.base import Defence
from rl_mask.owner.masking import MaskedBatch
from rl_mask.server.models import FaceRecognizer

#: Reconstruction attacks recover the dominant face of each protected training sample;
#: inversion attacks recover one face per private identity from the trained model.
ATTACK_KINDS = ("reconstruction", "inversion")


@dataclass
class AttackTarget:
    """What leaves the data owner: protected training samples and the trained model."""

    defence: Defence  # as deployed (white-box attacks read its parameters; black-box ones must not)
    masked: MaskedBatch  # encoded training samples; provenance is for scoring, attacks use inputs only
    model: FaceRecognizer  # the trained FR network
    num_classes: int  # private identities (the model's classes)


@dataclass
class Reconstruction:
    """Images ``[M, P, H, W]`` in [-1, 1]; ``labels[m]``: the private identity image m should show.

    For reconstruction attacks, row m is the attacker's estimate of the dominant face of
    protected sample m; for inversion attacks, of identity ``labels[m]``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    kind: str


class Attack(abc.ABC):
    name: str = "attack"
    kind: str = "reconstruction"

    @abc.abstractmethod
    def fit(self, public: torch.Tensor, defence: Defence, progress: bool = False) -> "Attack":
        """Prepare on public faces ``[N, P, H, W]`` in [-1, 1] (the attacker's auxiliary set).

        ``defence`` is the deployed one; what an attack may use of it is part of its threat
        model (see each attack's docstring).
        """

    @abc.abstractmethod
    def attack(self, target: AttackTarget, progress: bool = False) -> Reconstruction:
        """Reconstruct private faces from ``target``."""

    def fit_key(self, defence: Defence, image_shape: tuple[int, int, int]) -> str:
        """Two defences with the same key get the same fitted attack (lets a harness reuse a
        fit on faces of ``image_shape`` ``(P, H, W)``). The default never shares."""
        return f"{self.name}:{id(defence)}"

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind}

"""The one interface every attack has: fit on public data, attack what crossed the door.

An attack sees what a real adversary at the FR server would: the attacker's own public faces
(identities disjoint from the private ones), the defence's public parameters as far as its
threat model allows, every ``ProtectedBatch`` message exactly as it crossed
(``rl_mask.protocol``: inputs, labels, weights, message boundaries kept) and the trained FR
model. No provenance and no original face is in the target. It returns reconstructions and
the identity each is meant to show; scoring them against the private originals is the
owner-side judge's job (``rl_mask.owner.judge``), never the attack's.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from rl_mask.mask.defences.base import Defence
from rl_mask.protocol import ProtectedBatch, concat_protected
from rl_mask.reconstruction import Reconstruction
from rl_mask.server.models import FaceRecognizer

#: Reconstruction attacks recover a face of each crossed row; inversion attacks recover one
#: face per private identity from the trained model.
ATTACK_KINDS = ("reconstruction", "inversion")


@dataclass
class AttackTarget:
    """Exactly what crosses to the FR server, plus the model it trains there."""

    defence: Defence  # as deployed: its public parameters (white-box attacks read them; black-box ones must not)
    crossed: list[ProtectedBatch]  # every attacked training message, boundaries kept (batch-wise attacks need them)
    model: FaceRecognizer | None  # the trained FR network
    num_classes: int  # private identities (the model's classes, told in TrainingSetup)
    # per crossed message, the policy's settings for it (rl_mask.mask.settings) or None: public
    # parameters of the deployed defence, so white-box attacks may read them (black-box must not)
    settings: list | None = None
    # further messages of the same run that crossed (not scored: the server holds every batch
    # of training, so across-batch attacks may use them), with their settings
    context: list[ProtectedBatch] | None = None
    context_settings: list | None = None

    def joined(self) -> ProtectedBatch:
        """The crossed messages as one batch (rows in order; see ``concat_protected``)."""
        return concat_protected(self.crossed)

    @property
    def num_rows(self) -> int:
        return sum(len(b) for b in self.crossed)


class Attack(abc.ABC):
    name: str = "attack"
    kind: str = "reconstruction"
    #: True for an attack that needs a field that does not cross (a "what-if" on the door):
    #: reported beside the others, never counted in a defence's worst case.
    what_if: bool = False

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

"""What an attack hands back: its reconstructed faces and the private identity each claims.

Below both sides: attacks (``rl_mask.attacks``) make it, the owner's judge
(``rl_mask.owner.judge``) scores it against the originals only the owner holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Reconstruction:
    """Images ``[M, P, H, W]`` in [-1, 1]; ``labels[m]``: the private identity image m claims.

    ``rows[m]`` (reconstruction attacks): the crossed row, counted over the target's messages
    in order (``AttackTarget.joined``), that image m is a face of. ``None`` for inversion
    attacks, whose image m shows identity ``labels[m]`` from the trained model.
    """

    images: torch.Tensor
    labels: torch.Tensor
    kind: str
    rows: torch.Tensor | None = None

"""What provenance would give away if it crossed (a hypothetical, "what-if" attack).

``sources`` (which batch positions each row mixes) is the data owner's record and never
crosses (``rl_mask.protocol``). Given it, a batch without sign flips is an invertible
linear system (``rl_mask.attacks.unmix``) and every face of the batch comes back exactly
(up to the removed channels, which the k = 1 decoder restores as well as it can). The
harness passes ``leaked_sources`` explicitly, outside the ``AttackTarget``; the benchmark
reports this attack beside the others and never counts it in a defence's worst case.
"""

from __future__ import annotations

import torch

from rl_mask.attacks.base import AttackTarget
from rl_mask.attacks.unmix import UnmixingAttack
from rl_mask.reconstruction import Reconstruction


class ProvenanceAttack(UnmixingAttack):
    name = "provenance"
    what_if = True

    def attack(self, target: AttackTarget, progress: bool = False, leaked_sources: list[torch.Tensor] | None = None) -> Reconstruction:
        """``leaked_sources``: HYPOTHETICAL, one ``[B, k]`` tensor of batch positions per
        crossed message (the owner's ``MaskedBatch.sources``); it does not cross."""
        self._check_fitted()
        if leaked_sources is None or len(leaked_sources) != len(target.crossed):
            raise ValueError("provenance is a what-if attack: pass leaked_sources, one [B, k] tensor per crossed message")
        return self.reconstruct(target, list(leaked_sources))

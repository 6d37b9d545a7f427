"""The attacker in the loop's estimate of the owner's key, kept up to date as batches cross.

The benchmark's ``+recover`` attacks estimate a rotation key (``channels``, ``positions``)
from the second moments of everything that crossed (``rl_mask.attacks.key_recovery``), and
they find more than the plain attacks on keyed batches without sign flips (README). The
reward's attacker must be no weaker than the attacks a policy is measured with, so it does
the same online: it holds the rows of the batches it saw that were sent without flips (the
flips zero the moments the estimate reads; white-box, it knows each batch's settings) and, for
each, its own public faces protected with the very same settings (k, weights, extra removal)
but no key, so both sides of ``E[y y^T] = Q E[x x^T] Q^T`` describe the same mixtures. The
estimate is refreshed every ``every`` such batches from at most ``max_rows`` recent rows.
Other key kinds (``scramble``, ``dense``) need the dense network and an attack in the keyed
basis; the attacker in the loop does not recover them (``supported``)."""

from __future__ import annotations

import torch

from rl_mask.attacks.key_recovery import ROTATION_KEYS, RotationEstimate, reads_key, recover_rotation
from rl_mask.mask.settings import MaskSettings

#: Key constructions the attacker in the loop estimates (rotations: ``undo`` gives the rows back).
ONLINE_KEY_KINDS = ROTATION_KEYS


class OnlineKeyRecovery:
    def __init__(self, kind: str, max_rows: int = 1024, every: int = 8):
        if kind not in ONLINE_KEY_KINDS:
            raise ValueError(f"the attacker in the loop recovers keys of kinds {ONLINE_KEY_KINDS}, not {kind!r}")
        self.kind = kind
        self.max_rows, self.every = int(max_rows), int(every)
        self.held: torch.Tensor | None = None  # crossed rows, keyed
        self.reference: torch.Tensor | None = None  # the attacker's own rows under the same settings, unkeyed
        self.estimate: RotationEstimate | None = None
        self.since = 0  # batches held since the last estimate
        self.estimates = 0

    @staticmethod
    def supported(kind: str) -> bool:
        return kind in ONLINE_KEY_KINDS

    @staticmethod
    def applies(settings: MaskSettings) -> bool:
        """Rows sent with sign flips say nothing through second moments, and undoing the key
        on them gives noise (the flips act in the keyed basis)."""
        return reads_key(settings)

    def hold(self, crossed: torch.Tensor, reference: torch.Tensor) -> None:
        """Keep a batch sent without flips and the attacker's own rows simulated like it;
        re-estimate the key on the first one and every ``every`` after."""
        self.held = self._append(self.held, crossed)
        self.reference = self._append(self.reference, reference)
        self.since += 1
        if self.estimate is None or self.since >= self.every:
            per_position = self.kind == "positions"
            self.estimate = RotationEstimate(recover_rotation(self.held, self.reference, per_position=per_position))
            self.since = 0
            self.estimates += 1

    def _append(self, kept: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.detach().cpu().float()
        out = rows if kept is None else torch.cat([kept, rows])
        return out[-self.max_rows :]

    def undo(self, keyed: torch.Tensor) -> torch.Tensor | None:
        """The rows with the estimated key undone, or None before any estimate."""
        return None if self.estimate is None else self.estimate.undo(keyed)

    def info(self) -> dict:
        return {"key_estimates": self.estimates, "key_rows_held": 0 if self.held is None else len(self.held)}

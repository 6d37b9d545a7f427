"""The per-batch masking knobs the adaptive policy turns, and its action space over them.

``MaskSettings`` is one batch's choice, on top of the deployed ``HybridMask`` (whose
``removed_channels`` are always removed, so the FR network's input layout never changes):

- ``k``: faces mixed per row (1 = no mixing);
- ``flip``: probability that each coefficient of the mixed batch has its sign flipped
  (0 = none, 0.5 = every sign random; rows are then no longer a linear mixture); flips apply
  to mixed rows only (k > 1), as in ``rl_mask.mask.masking.mix``;
- ``extra_removed``: how many more low-frequency channels are zeroed, the lowest kept
  zig-zag channels of each plane first (the tensor keeps its shape; those channels read 0);
- ``alpha``: concentration of the Dirichlet mixing weights (small: one face dominates,
  large: near-equal weights); the mask's ``cap`` still bounds every weight;
- ``labels``: what crosses with the batch: ``soft`` (all k identities and weights: the
  label-aware attack's handle) or ``hard`` (only the dominant face's identity, weight 1).

``SettingsSpace`` maps a ``MultiDiscrete`` action (one index per knob) to ``MaskSettings``.
The choices come from ``cfg.rl`` (``k_choices``, ``flip_choices``, ``extra_removed_choices``,
``alpha_choices``, ``label_choices``); a knob with one choice is fixed config.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from rl_mask.config import LABEL_MODES

#: The knobs, in action-vector order.
DIMENSIONS = ("k", "flip", "extra_removed", "alpha", "labels")


def mean_by_knob(records: list[dict], field: str) -> dict[str, dict[str, float]]:
    """Per knob and per value of it that ``records`` (each with every knob's value) hold: the
    mean of ``field`` over the records made with that value (what an attacker or a signal
    says of each knob value)."""
    return {dim: {str(v): float(np.mean([r[field] for r in records if r[dim] == v])) for v in sorted({r[dim] for r in records}, key=str)} for dim in DIMENSIONS}


@dataclass(frozen=True)
class MaskSettings:
    k: int
    flip: float = 0.0
    extra_removed: int = 0
    alpha: float = 1.0
    labels: str = "soft"

    def check(self, batch_size: int, kept_per_plane: int, cap: float) -> "MaskSettings":
        """Raise ``ValueError`` naming the knob and value that cannot apply to this batch/mask."""
        if not 1 <= self.k <= batch_size:
            raise ValueError(f"mask settings: k={self.k} needs 1 <= k <= batch size ({batch_size})")
        if self.k > 1 and not 1.0 / self.k < cap:
            raise ValueError(f"mask settings: k={self.k} cannot mix under the weight cap {cap} (needs cap > 1/k)")
        if not 0.0 <= self.flip <= 0.5:
            raise ValueError(f"mask settings: flip={self.flip} must be a probability in [0, 0.5]")
        if not 0 <= self.extra_removed < kept_per_plane:
            raise ValueError(f"mask settings: extra_removed={self.extra_removed} must leave a channel: 0..{kept_per_plane - 1}")
        if not self.alpha > 0:
            raise ValueError(f"mask settings: alpha={self.alpha} must be > 0")
        if self.labels not in LABEL_MODES:
            raise ValueError(f"mask settings: labels={self.labels!r} is not one of {LABEL_MODES}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


class SettingsSpace:
    """The policy's action space: one index per knob (``DIMENSIONS``)."""

    def __init__(self, k: Sequence[int], flip: Sequence[float] = (0.0,), extra_removed: Sequence[int] = (0,), alpha: Sequence[float] = (1.0,), labels: Sequence[str] = ("soft",)):
        self.choices: dict[str, list] = {"k": [int(v) for v in k], "flip": [float(v) for v in flip], "extra_removed": [int(v) for v in extra_removed], "alpha": [float(v) for v in alpha], "labels": [str(v) for v in labels]}
        for name, values in self.choices.items():
            if not values:
                raise ValueError(f"settings space: no choices for {name}")

    @classmethod
    def from_config(cls, rl) -> "SettingsSpace":
        return cls(rl.k_choices, rl.flip_choices, rl.extra_removed_choices, rl.alpha_choices, rl.label_choices)

    @property
    def nvec(self) -> np.ndarray:
        return np.array([len(self.choices[d]) for d in DIMENSIONS], dtype=np.int64)

    def decode(self, action) -> MaskSettings:
        """``action``: one index per knob -> the settings (ValueError names the bad index)."""
        a = np.asarray(action).reshape(-1)
        if a.shape[0] != len(DIMENSIONS):
            raise ValueError(f"action {action!r} needs {len(DIMENSIONS)} indices ({', '.join(DIMENSIONS)})")
        values = {}
        for i, name in enumerate(DIMENSIONS):
            idx = int(a[i])
            if idx != a[i] or not 0 <= idx < len(self.choices[name]):
                raise ValueError(f"action index {a[i].item()!r} for {name} is not in 0..{len(self.choices[name]) - 1}")
            values[name] = self.choices[name][idx]
        return MaskSettings(**values)

    def all(self) -> list[MaskSettings]:
        """Every combination of the choices (what a white-box attacker must be ready for)."""
        return [MaskSettings(*combo) for combo in itertools.product(*(self.choices[d] for d in DIMENSIONS))]

    def encode(self, settings: MaskSettings) -> np.ndarray:
        """The action that selects ``settings`` (each value must be one of the choices)."""
        d = settings.as_dict()
        try:
            return np.array([self.choices[name].index(d[name]) for name in DIMENSIONS], dtype=np.int64)
        except ValueError:
            raise ValueError(f"settings {d} are not all among the choices {self.choices}") from None

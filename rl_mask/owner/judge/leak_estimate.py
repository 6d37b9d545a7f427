"""The leak of a masking setting, estimated from the batches the attacker in the loop sampled.

With ``rl.attacker_mode=sampled`` the attacker attacks only a sample of the batches, off the
env's critical path, and the owner's judge scores those; every batch's leak reward is then
drawn at once from this estimate of the leak *of its setting* (the attacker's strength
against a setting changes slowly, a batch's rows add noise around it).

Per setting: a recency-weighted mean of the judged leaks of its attacked batches (the last
``window`` count; the attacker keeps learning), shrunk towards a prior by ``prior_weight``
pseudo-batches. The prior of a setting is an additive model over its knobs: the overall mean
plus, per knob, how far the batches with that knob value leaked from it (each shrunk alike),
so a setting not attacked yet gets the leak its knobs suggest (k = 2 with soft labels leaks
more than k = 6 with flips) rather than the overall mean. Owner side: it holds only the
judge's figures, never a face.
"""

from __future__ import annotations

from dataclasses import fields

from rl_mask.mask.settings import MaskSettings


class _Mean:
    """A mean over the last ``window`` values (exactly, then exponentially forgetting)."""

    def __init__(self, window: int):
        self.window = window
        self.count = 0
        self.mean = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.mean += (value - self.mean) / min(self.count, self.window)

    def shrunk(self, prior: float, weight: float) -> float:
        n = min(self.count, self.window)
        return (n * self.mean + weight * prior) / (n + weight)


class LeakEstimate:
    def __init__(self, window: int = 16, prior_weight: float = 1.0):
        self.window = window
        self.prior_weight = prior_weight
        self.overall = _Mean(4 * window)
        self.per_setting: dict[MaskSettings, _Mean] = {}
        self.per_knob: dict[tuple[str, object], _Mean] = {}

    @property
    def count(self) -> int:
        """Judged batches so far."""
        return self.overall.count

    def add(self, settings: MaskSettings, leak: float) -> None:
        """The judged leak of one attacked batch made with ``settings``."""
        self.overall.add(leak)
        self.per_setting.setdefault(settings, _Mean(self.window)).add(leak)
        for f in fields(settings):
            self.per_knob.setdefault((f.name, getattr(settings, f.name)), _Mean(4 * self.window)).add(leak)

    def prior(self, settings: MaskSettings) -> float:
        base = self.overall.mean
        shifts = [m.shrunk(base, self.prior_weight) - base for f in fields(settings) if (m := self.per_knob.get((f.name, getattr(settings, f.name)))) is not None]
        return min(1.0, max(0.0, base + sum(shifts)))

    def estimate(self, settings: MaskSettings) -> float:
        """The expected leak of a batch made with ``settings`` (0 before any batch was judged)."""
        if not self.count:
            return 0.0
        prior = self.prior(settings)
        seen = self.per_setting.get(settings)
        return prior if seen is None else seen.shrunk(prior, self.prior_weight)

"""Frequency-domain defences: channel removal alone, and hybrid masking with k drawn per batch.

``mask`` (PPFR-style), ``fixed-k``, ``random-k`` and the learned policy's k distribution are
one class: a ``HybridMask`` and a distribution over k. A defence can instead draw whole
per-batch settings (``rl_mask.mask.settings``) from a pool: a fixed setting of the policy's
knobs (the benchmark's ``best-fixed`` grid), or the settings a deployed policy chose (what a
white-box attacker simulates).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch

from rl_mask.mask.defences.base import Defence
from rl_mask.mask.masking import HybridMask, MaskedBatch, flip_signs
from rl_mask.mask.settings import MaskSettings


class HybridDefence(Defence):
    input_kind = "freq"

    def __init__(
        self,
        name: str,
        mask: HybridMask,
        ks: Sequence[int],
        probs: Sequence[float] | None = None,
        settings_pool: Sequence[MaskSettings] | None = None,
        eval_flip: float = 0.0,
        eval_seed: int = 0,
        eval_extra_removed: int | None = None,
    ):
        if settings_pool:
            ks = sorted({s.k for s in settings_pool})
            probs = [sum(s.k == k for s in settings_pool) for k in ks]
        if not ks:
            raise ValueError("HybridDefence needs at least one k")
        self.settings_pool = list(settings_pool or [])
        self.name = name
        self.mask = mask
        self.ks = [int(k) for k in ks]
        p = torch.tensor(probs if probs is not None else [1.0] * len(self.ks), dtype=torch.float64)
        if p.numel() != len(self.ks) or (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"k probabilities {list(p.tolist())} do not fit k choices {self.ks}")
        self.probs = (p / p.sum()).tolist()
        #: probability of each coefficient's sign being flipped in the k = 1 evaluation and
        #: inference messages (``encode_eval``), as the training rows' flips do (0: none);
        #: drawn from ``eval_seed`` (the owner's: ``rl_mask.config.owner_seed``)
        self.eval_flip = float(eval_flip)
        self._eval_generator = torch.Generator().manual_seed(eval_seed)
        #: how many more channels the k = 1 messages zero, as a setting's ``extra_removed``
        #: zeroes them in the training rows; None: as trained, what every setting of the
        #: pool removes (its least; 0 without one). Public, like the removed channels.
        if eval_extra_removed is None:
            eval_extra_removed = min((s.extra_removed for s in self.settings_pool), default=0)
        if not 0 <= int(eval_extra_removed) < mask.kept_per_plane:
            raise ValueError(f"eval_extra_removed={eval_extra_removed} must leave a channel: 0..{mask.kept_per_plane - 1}")
        self.eval_extra_removed = int(eval_extra_removed)

    def with_owner_options(self, key=None, eval_flip: float = 0.0, eval_seed: int = 0) -> "HybridDefence":
        """A copy with the owner's key (``rl_mask.owner.key.OwnerKey``) on every message, and
        sign flips with probability ``eval_flip`` on the evaluation / inference messages."""
        out = copy.copy(self)
        if key is not None:
            out.mask = copy.copy(self.mask)
            out.mask.key = key
        out.eval_flip = float(eval_flip)
        out._eval_generator = torch.Generator().manual_seed(eval_seed)
        return out

    @property
    def signs_random(self) -> bool:
        # k = 1 training rows are never flipped (``rl_mask.mask.masking.mix``)
        if self.eval_flip != 0.5:
            return False
        if self.settings_pool:
            return all(s.flip == 0.5 and s.k > 1 for s in self.settings_pool)
        return self.mask.sign_flip and min(self.ks) > 1

    def public(self) -> "HybridDefence":
        """Without the key, and with a flip stream of the attacker's own (the owner's is seeded
        from its secret: sharing it would hand the attacker the very flips that crossed)."""
        out = copy.copy(self)
        out.mask = self.mask.public()
        out._eval_generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        return out

    def input_shape(self, planes: int, height: int, width: int) -> tuple[int, int, int]:
        u = self.mask.upsample
        return (self.mask.num_channels, height * u // 8, width * u // 8)

    def sample_k(self, generator: torch.Generator | None = None) -> int:
        if len(self.ks) == 1:
            return self.ks[0]
        i = torch.multinomial(torch.tensor(self.probs), 1, generator=generator).item()
        return self.ks[i]

    def encode_train(self, images, labels, generator=None, k: int | None = None, settings: MaskSettings | None = None, transformed=None) -> MaskedBatch:
        """``transformed``: ``encode_eval(images)``, if the caller has computed it (used with ``settings``)."""
        if settings is None and k is None and self.settings_pool:
            i = int(torch.randint(len(self.settings_pool), (1,), generator=generator))
            settings = self.settings_pool[i]
        if settings is not None:
            return self.mask.apply(images, labels, settings, generator, transformed)
        return self.mask(images, labels, self.sample_k(generator) if k is None else k, generator)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """Channel removal and the owner's key: the coefficients every message is made from
        (before mixing, flips or anything drawn at random)."""
        return self.mask.transform(images)

    def encode_eval(self, images: torch.Tensor) -> torch.Tensor:
        """The k = 1 message of held-out / inference faces: channel removal (the mask's and
        ``eval_extra_removed`` more, so the network meets the views it was trained on), the
        owner's key (if any), and sign flips with probability ``eval_flip``."""
        return self.flip_eval(self.mask.remove_extra(self.mask.transform(images), self.eval_extra_removed))

    def flip_eval(self, coefficients: torch.Tensor) -> torch.Tensor:
        """The k = 1 messages' sign flips (probability ``eval_flip``) on ``coefficients``."""
        return flip_signs(coefficients, self.eval_flip, self._eval_generator) if self.eval_flip > 0 else coefficients

    def to_pixels(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.mask.to_pixels(encoded)

    def describe(self) -> dict:
        m = self.mask
        return {
            "name": self.name,
            "removed_channels": list(m.removed_channels),
            "ks": self.ks,
            "k_probs": [round(p, 6) for p in self.probs],
            "weights": m.weights,
            "alpha": m.alpha,
            "cap": m.cap,
            "sign_flip": m.sign_flip,
            "upsample": m.upsample,
            **({"key": m.key.describe()} if m.key is not None else {}),
            **({"eval_flip": self.eval_flip} if self.eval_flip else {}),
            **({"eval_extra_removed": self.eval_extra_removed} if self.eval_extra_removed else {}),
            **({"settings": _pool_summary(self.settings_pool)} if self.settings_pool else {}),
        }


def _pool_summary(pool: list[MaskSettings]) -> list[dict]:
    """Distinct settings of a pool with how often each occurs (sorted: stable for cache keys)."""
    counts: dict[tuple, int] = {}
    for s in pool:
        key = tuple(sorted(s.as_dict().items()))
        counts[key] = counts.get(key, 0) + 1
    return [{**dict(key), "count": n} for key, n in sorted(counts.items())]

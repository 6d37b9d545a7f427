"""Defences: each a strategy that turns private faces into what leaves the data owner."""

from __future__ import annotations

from rl_mask.config import Config
from rl_mask.owner.defences.base import Defence
from rl_mask.owner.defences.hybrid import HybridDefence
from rl_mask.owner.defences.pixel import DPSGDDefence, PixelDefence
from rl_mask.owner.key import OwnerKey
from rl_mask.owner.masking import HybridMask

#: Pixel MixUp (Zhang et al. 2018): two faces, weight ~ Beta(1, 1) (Dirichlet(1) for k = 2), no cap.
MIXUP_K = 2
#: InstaHide (Huang et al. 2020): four faces, InstaHide weights capped at 0.65, random sign flips.
INSTAHIDE_K = 4
INSTAHIDE_CAP = 0.65


def hybrid_mask_from_config(cfg: Config) -> HybridMask:
    m = cfg.mask
    return HybridMask(
        removed_channels=m.removed_channels,
        planes=cfg.data.planes,
        weights=m.weights,
        alpha=m.alpha,
        cap=m.cap,
        sign_flip=m.sign_flip,
        upsample=m.upsample,
        key=None if m.key == "none" else OwnerKey(m.key_seed, m.key),
    )


def build_defence(cfg: Config, name: str | None = None, k_probs: list[float] | None = None, k_choices: list[int] | None = None) -> Defence:
    """The defence ``name`` (default ``cfg.strategy.name``) with the config's parameters.

    ``adaptive`` mixes k from ``k_choices`` (default ``strategy.k_choices``) with ``k_probs``.
    """
    name = name or cfg.strategy.name
    s = cfg.strategy
    if name == "none":
        return PixelDefence("none")
    if name == "mixup":
        return PixelDefence("mixup", k=MIXUP_K, weights="dirichlet", alpha=1.0, cap=1.0)
    if name == "instahide":
        return PixelDefence("instahide", k=INSTAHIDE_K, weights="instahide", cap=INSTAHIDE_CAP, sign_flip=True)
    if name == "dpsgd":
        return DPSGDDefence(cfg.dp)
    if name == "mask":
        return HybridDefence("mask", hybrid_mask_from_config(cfg), [1])
    if name == "fixed-k":
        return HybridDefence("fixed-k", hybrid_mask_from_config(cfg), [s.k])
    if name == "random-k":
        return HybridDefence("random-k", hybrid_mask_from_config(cfg), s.k_choices)
    if name == "adaptive":
        return HybridDefence("adaptive", hybrid_mask_from_config(cfg), k_choices or s.k_choices, k_probs)
    raise ValueError(f"unknown defence {name!r}")


__all__ = ["DPSGDDefence", "Defence", "HybridDefence", "PixelDefence", "build_defence", "hybrid_mask_from_config"]

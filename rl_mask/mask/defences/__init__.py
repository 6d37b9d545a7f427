"""Defences: each a strategy that turns faces into what leaves the data owner (the public
algorithm; the owner builds its own from its config in ``rl_mask.owner.defences``)."""

from rl_mask.mask.defences.base import Defence
from rl_mask.mask.defences.hybrid import HybridDefence
from rl_mask.mask.defences.pixel import DPSGDDefence, PixelDefence

__all__ = ["DPSGDDefence", "Defence", "HybridDefence", "PixelDefence"]

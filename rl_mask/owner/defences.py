"""The data owner's defences, built from its config: the public algorithm
(``rl_mask.mask.defences``) with the owner's key and its secret-seeded evaluation flips."""

from __future__ import annotations

from rl_mask.config import AS_TRAINED, Config, owner_seed
from rl_mask.mask.defences.base import Defence
from rl_mask.mask.defences.hybrid import HybridDefence
from rl_mask.mask.defences.pixel import DPSGDDefence, PixelDefence
from rl_mask.mask.masking import HybridMask
from rl_mask.owner.key import OwnerKey

#: Pixel MixUp (Zhang et al. 2018): two faces, weight ~ Beta(1, 1) (Dirichlet(1) for k = 2), no cap.
MIXUP_K = 2
#: InstaHide (Huang et al. 2020): four faces, InstaHide weights capped at 0.65, random sign flips.
INSTAHIDE_K = 4
INSTAHIDE_CAP = 0.65
#: The k = 1 messages' flip stream (mixed with the owner's secret: ``owner_seed``).
EVAL_FLIP_SEED = 77


def hybrid_mask_from_config(cfg: Config, public: bool = False) -> HybridMask:
    """The config's mask with the owner's key (``mask.key``), or without it (``public``: the
    algorithm as anyone can run it; the secret is not read)."""
    m = cfg.mask
    return HybridMask.from_config(m, cfg.data.planes, key=None if m.key == "none" or public else OwnerKey(m.key_seed, m.key))


def eval_flip(cfg: Config, name: str, settings_pool=None) -> float:
    """The k = 1 messages' flip probability: ``mask.eval_flip``, or as the training rows are
    flipped (the largest flip the defence trains under)."""
    if cfg.mask.eval_flip != AS_TRAINED:
        return cfg.mask.eval_flip
    if settings_pool:
        return max(s.flip for s in settings_pool)
    if name == "adaptive":
        return max(cfg.rl.flip_choices)
    return 0.5 if cfg.mask.sign_flip else 0.0


def eval_extra_removed(cfg: Config, name: str, settings_pool=None) -> int:
    """How many more channels the k = 1 messages zero: ``mask.eval_extra_removed``, or as the
    training rows (what every training row zeroes: the least extra removal the defence trains
    under). Not the largest, as for the flips: a channel the door zeroes that some training
    rows carried is one the network learned from and loses (``benchmarks/door_views.py``)."""
    if cfg.mask.eval_extra_removed != AS_TRAINED:
        return cfg.mask.eval_extra_removed
    if settings_pool:
        return min(s.extra_removed for s in settings_pool)
    return min(cfg.rl.extra_removed_choices) if name == "adaptive" else 0


def hybrid_defence(cfg: Config, name: str, ks, probs=None, settings_pool=None) -> HybridDefence:
    """A hybrid defence with the config's owner options: the key, and sign flips
    (``eval_flip``) on the k = 1 messages, drawn from the owner's secret; the k = 1 messages
    remove the channels the training rows remove (``eval_extra_removed``)."""
    flip = eval_flip(cfg, name, settings_pool)
    extra = eval_extra_removed(cfg, name, settings_pool)
    return HybridDefence(name, hybrid_mask_from_config(cfg), ks, probs, settings_pool, eval_flip=flip, eval_seed=owner_seed(EVAL_FLIP_SEED, cfg), eval_extra_removed=extra)


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
        return hybrid_defence(cfg, "mask", [1])
    if name == "fixed-k":
        return hybrid_defence(cfg, "fixed-k", [s.k])
    if name == "random-k":
        return hybrid_defence(cfg, "random-k", s.k_choices)
    if name == "adaptive":
        return hybrid_defence(cfg, "adaptive", k_choices or s.k_choices, k_probs)
    raise ValueError(f"unknown defence {name!r}")


__all__ = ["build_defence", "eval_extra_removed", "eval_flip", "hybrid_defence", "hybrid_mask_from_config"]

"""Attacks on what crosses the door: reconstruction (white/black box, label-aware unmixing,
cross-batch aggregation),
MI-FACE, GAN-prior inversion, and the what-if provenance attack.

One interface (``Attack``): fit on public faces, attack the crossed messages and the trained
model, return reconstructions. ``build_attack`` makes one from the benchmark config and a budget.
"""

from __future__ import annotations

from rl_mask.attacks.base import ATTACK_KINDS, Attack, AttackTarget, concat_protected
from rl_mask.attacks.cross_batch import CrossBatchAggregation
from rl_mask.attacks.gmi import GANPriorInversion
from rl_mask.attacks.label_aware import LabelAwareUnmixing
from rl_mask.attacks.mi_face import MIFace
from rl_mask.attacks.provenance import ProvenanceAttack
from rl_mask.attacks.reconstruction import BlackBoxReconstruction, WhiteBoxReconstruction
from rl_mask.config import BenchmarkBudget, BenchmarkConfig


def build_attack(name: str, bench: BenchmarkConfig, budget: BenchmarkBudget) -> Attack:
    """A fresh, unfitted attack ``name`` with the budget's sizes."""
    seed = bench.seed
    decoder = dict(gan_weight=bench.decoder_gan_weight, seed=seed)
    if name == "whitebox":
        return WhiteBoxReconstruction(budget.decoder_steps, budget.decoder_batch_size, **decoder)
    if name == "blackbox":
        return BlackBoxReconstruction(budget.decoder_steps, budget.decoder_batch_size, guess_k=bench.blackbox_k, **decoder)
    if name == "label-aware":
        return LabelAwareUnmixing(budget.decoder_steps, budget.decoder_batch_size, **decoder)
    if name == "cross-batch":
        return CrossBatchAggregation(budget.decoder_steps, budget.decoder_batch_size, **decoder)
    if name == "provenance":
        return ProvenanceAttack(budget.decoder_steps, budget.decoder_batch_size, **decoder)
    if name == "mi-face":
        return MIFace(steps=budget.mi_steps, restarts=budget.mi_restarts, seed=seed)
    if name == "gmi":
        return GANPriorInversion(gan_steps=budget.gan_steps, steps=budget.gmi_steps, restarts=budget.gmi_restarts, seed=seed)
    raise ValueError(f"unknown attack {name!r}")


__all__ = [
    "ATTACK_KINDS",
    "Attack",
    "AttackTarget",
    "BlackBoxReconstruction",
    "CrossBatchAggregation",
    "GANPriorInversion",
    "LabelAwareUnmixing",
    "MIFace",
    "ProvenanceAttack",
    "WhiteBoxReconstruction",
    "build_attack",
    "concat_protected",
]

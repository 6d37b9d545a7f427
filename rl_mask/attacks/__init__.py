"""Attacks on protected face data: reconstruction (white/black box), MI-FACE, GAN-prior inversion.

One interface (``Attack``): fit on public faces, attack the protected data, return
reconstructions. ``build_attack`` makes one from the benchmark config and a budget.
"""

from __future__ import annotations

from rl_mask.attacks.base import ATTACK_KINDS, Attack, AttackTarget, Reconstruction
from rl_mask.attacks.gmi import GANPriorInversion
from rl_mask.attacks.mi_face import MIFace
from rl_mask.attacks.reconstruction import BlackBoxReconstruction, WhiteBoxReconstruction
from rl_mask.config import BenchmarkBudget, BenchmarkConfig


def build_attack(name: str, bench: BenchmarkConfig, budget: BenchmarkBudget) -> Attack:
    """A fresh, unfitted attack ``name`` with the budget's sizes."""
    seed = bench.seed
    if name == "whitebox":
        return WhiteBoxReconstruction(budget.decoder_steps, budget.decoder_batch_size, gan_weight=bench.decoder_gan_weight, seed=seed)
    if name == "blackbox":
        return BlackBoxReconstruction(budget.decoder_steps, budget.decoder_batch_size, gan_weight=bench.decoder_gan_weight, seed=seed, guess_k=bench.blackbox_k)
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
    "GANPriorInversion",
    "MIFace",
    "Reconstruction",
    "WhiteBoxReconstruction",
    "build_attack",
]

"""The messages the data owner sends through the door (``rl_mask.protocol``), made in one place."""

from __future__ import annotations

import dataclasses

import torch

from rl_mask.config import Config
from rl_mask.mask.defences import Defence
from rl_mask.owner.stream import PrivateData
from rl_mask.protocol import AttackerSetup, FRHyperparameters, ProtectedProbes, PublicMask, SettingsChoices, TrainingSetup


def training_setup(cfg: Config, defence: Defence, data: PrivateData, total_steps: int | None = None) -> TrainingSetup:
    """What the FR server is told once: shapes, class count, budget, hyperparameters."""
    return TrainingSetup(
        input_shape=tuple(defence.input_shape(cfg.data.planes, cfg.data.height, cfg.data.width)),
        input_kind=defence.input_kind,
        num_classes=data.num_classes,
        train_size=len(data.train_labels),
        total_steps=int(total_steps or cfg.fr.steps),
        private_training=defence.private_training,
        model=dataclasses.replace(cfg.model, input_map=resolve_input_map(cfg.model.input_map, defence)),
        fr=FRHyperparameters.of(cfg.fr),
        dp=cfg.dp,
    )


def resolve_input_map(input_map: str, defence: Defence) -> str:
    """``model.input_map`` for ``defence``: ``auto`` reads magnitudes where every sign that
    crosses is random (``Defence.signs_random``), values elsewhere."""
    if input_map != "auto":
        return input_map
    return "abs" if defence.signs_random else "identity"


def attacker_setup(cfg: Config) -> AttackerSetup:
    """What the attacker in the loop is told: the public mask and knob choices, the faces'
    shape, ``rl.attacker_*``; nothing of the owner's own (data root, key seed)."""
    rl = cfg.rl
    return AttackerSetup(
        image_shape=(cfg.data.planes, cfg.data.height, cfg.data.width),
        mask=PublicMask.of(cfg.mask),
        settings=SettingsChoices.of(rl),
        mode=rl.attacker_mode,
        batch_size=rl.attacker_batch_size,
        lr=rl.attacker_lr,
        train_steps=rl.attacker_train_steps,
        warmup_steps=rl.attacker_warmup_steps,
        rows=rl.attacker_rows,
        widths=tuple(rl.attacker_widths),
        seed=rl.seed + 777,
        recover=rl.attacker_recover,
    )


def held_out_encoding(defence: Defence, images: torch.Tensor) -> torch.Tensor:
    """How every face that is not a training face is encoded: inference probes (the only
    held-out faces that cross) and the owner's own validation and test encodings
    (``rl_mask.use.held_out``) alike, k = 1, no mixing. One function, so they stay one encoding."""
    return defence.encode_eval(images)


def probe_set(defence: Defence, images: torch.Tensor) -> ProtectedProbes:
    """Inference faces ``[N, P, H, W]`` in [-1, 1] as they cross to the server: the held-out encoding, nothing else."""
    return ProtectedProbes(held_out_encoding(defence, images))

"""TensorBoard scalars, histograms and images of an adaptive run (x-axis: env steps).

``algo.train()`` writes no event files by itself, so the training loop calls this
``SummaryWriter`` wrapper once per iteration (CleanRL style).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from envs.reward import reward_parts
from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.stream import PrivateData

#: The image tag: protected views only, or (with rl.log_original_faces) originals first.
EXAMPLES_TAG = {False: "faces/protected", True: "faces/original_vs_protected"}
PPO_SECTIONS = {"env_runners": "ppo/env_runners", "learners/default_policy": "ppo/learner"}


def _flatten_numeric(d: dict, prefix: str) -> dict[str, float]:
    out = {}
    for key, value in d.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(_flatten_numeric(value, name))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and np.isfinite(value):
            out[name] = float(value)
    return out


def ppo_scalars(result: dict) -> dict[str, float]:
    """PPO's own figures from an ``algo.train()`` result."""
    out = {}
    for path, prefix in PPO_SECTIONS.items():
        node = result
        for part in path.split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        out.update(_flatten_numeric(node, prefix))
    return out


def fr_scalars(records: list[dict], floor: float, lam: float, k_choices: list[int]) -> dict[str, float]:
    """Our figures from the FR actor's per-step log: reward and parts, FR loss, validation accuracy, k."""
    if not records:
        return {}
    parts = [reward_parts(r["loss"], r["val_acc"], floor, lam) for r in records]
    ks = np.array([r["k"] for r in records])
    out = {
        "mask/reward": float(np.mean([p["reward"] for p in parts])),
        "mask/reward_privacy_fr_loss": float(np.mean([p["reward_privacy"] for p in parts])),
        "mask/reward_utility_penalty": float(np.mean([p["reward_utility_penalty"] for p in parts])),
        "fr/loss": float(np.mean([r["loss"] for r in records])),
        "fr/val_identification_acc": float(records[-1]["val_acc"]),
        "fr/steps": float(records[-1]["fr_step"]),
        "mask/k_mean": float(ks.mean()),
    }
    losses = np.array([r["loss"] for r in records])
    for k in k_choices:
        out[f"mask/k_fraction/{k}"] = float((ks == k).mean())
        if (ks == k).any():
            # the privacy reward each action earned this iteration: what the policy learns from
            out[f"mask/fr_loss_by_k/{k}"] = float(losses[ks == k].mean())
    return out


def image_grid(rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows of ``[N, P, H, W]`` images -> one ``[3, rows*H, N*W]`` image in [0, 1] (each image min-max scaled)."""
    out = []
    for row in rows:
        x = row.detach().float().cpu()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
        out.append(torch.cat(list(x), dim=2))
    return torch.cat(out, dim=1)


class RunWriter:
    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def k_histogram(self, ks: list[int], step: int) -> None:
        if ks:
            self.writer.add_histogram("mask/k", np.asarray(ks, dtype=np.float64), step, bins=np.arange(min(ks) - 0.5, max(ks) + 1.5))

    def images(self, tag: str, rows: list[torch.Tensor], step: int) -> None:
        self.writer.add_image(tag, image_grid(rows), step, dataformats="CHW")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def masked_examples(cfg: Config, data: PrivateData, ks: list[int], originals: bool = False, n: int = 8) -> list[torch.Tensor]:
    """Rows for TensorBoard: what crosses, as a person would see it (channel removal only,
    then the mixtures for each k, through the inverse DCT). The original faces come first
    only with ``rl.log_original_faces`` (TensorBoard logs are read by more people than the
    face folder)."""
    idx = torch.linspace(0, len(data.train_labels) - 1, n).long()
    images, labels = data.train_images[idx], data.train_labels[idx]
    mask = build_defence(cfg, "adaptive", k_choices=ks).mask
    g = torch.Generator().manual_seed(0)
    rows = [images] if originals else []
    rows += [mask.to_pixels(mask.transform(images))]
    rows += [mask.to_pixels(mask(images, labels, k, g).inputs) for k in ks]
    return rows

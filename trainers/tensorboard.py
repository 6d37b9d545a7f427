"""TensorBoard scalars, histograms and images of an adaptive run (x-axis: env steps).

``algo.train()`` writes no event files by itself, so the training loop calls this
``SummaryWriter`` wrapper once per iteration (CleanRL style).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from rl_mask.config import Config
from rl_mask.mask.settings import DIMENSIONS, SettingsSpace
from rl_mask.owner.defences import build_defence


def examples_tag(private: bool, originals: bool) -> str:
    """``faces/public/protected`` by default; ``private`` and ``original_vs_protected`` say the opt-ins."""
    return f"faces/{'private' if private else 'public'}/{'original_vs_protected' if originals else 'protected'}"

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


def fr_scalars(records: list[dict]) -> dict[str, float]:
    """The FR server's figures from its per-step log: loss, steps."""
    if not records:
        return {}
    return {"fr/loss": float(np.mean([r["loss"] for r in records])), "fr/steps": float(records[-1]["fr_step"])}


def owner_scalars(records: list[dict], space: SettingsSpace) -> dict[str, float]:
    """The data owner's figures from the envs' per-step log: reward and its terms, the
    validation accuracy the owner scored (on the newest FR network any env scored), the
    attacker's leak (all attacks, and each), and every knob the policy turned."""
    if not records:
        return {}
    out = {"fr/val_identification_acc": float(max(records, key=lambda r: r["val_fr_step"])["val_acc"])}
    out |= {f"mask/{name}": float(np.mean([r[name] for r in records])) for name in ("reward", "reward_leak", "reward_fr_loss", "reward_utility_penalty")}
    leaks = [r for r in records if "leak" in r]
    if leaks:
        out["mask/leak"] = float(np.mean([r["leak"] for r in leaks]))
        judged = [r["leak_judged"] for r in leaks if "leak_judged" in r]
        if judged:  # rl.leak_reward=estimate: the batches' own judged leaks beside the estimates the reward read
            out["mask/leak_judged"] = float(np.mean(judged))
        for name in sorted({key for r in leaks for key in r if key.startswith("leak/")}):
            out[f"mask/{name}"] = float(np.mean([r[name] for r in leaks if name in r]))
        attacked = [r["leak_attacked"] for r in leaks if "leak_attacked" in r]
        if attacked:  # rl.attacker_mode=sampled: the share of batches the attacker took
            out["mask/attacked_fraction"] = float(np.mean(attacked))
    for dim in DIMENSIONS:
        values = [r[dim] for r in records]
        if dim != "labels":
            out[f"mask/{dim}_mean"] = float(np.mean(values))
        for choice in space.choices[dim]:
            out[f"mask/{dim}_fraction/{choice}"] = float(np.mean([v == choice for v in values]))
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


def masked_examples(cfg: Config, faces: torch.Tensor, labels: torch.Tensor, ks: list[int], originals: bool = False, n: int = 8) -> list[torch.Tensor]:
    """Rows for TensorBoard: what crosses, as a person would see it (channel removal only,
    then the mixtures for each k, through the inverse DCT), for ``n`` of ``faces``.

    A person recognises a face after channel removal alone (edges, eyes, glasses stay), so the
    run passes public faces here unless ``rl.log_private_faces``: TensorBoard logs are read by
    more people than the face folder. The originals come first only with ``rl.log_original_faces``.
    """
    idx = torch.linspace(0, len(labels) - 1, n).long()
    images, labels = faces[idx], labels[idx]
    mask = build_defence(cfg, "adaptive", k_choices=ks).mask
    g = torch.Generator().manual_seed(0)
    rows = [images] if originals else []
    rows += [mask.to_pixels(mask.transform(images))]
    rows += [mask.to_pixels(mask(images, labels, k, g).inputs) for k in ks]
    return rows

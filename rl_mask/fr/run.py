"""``rl-mask train-fr``: train the FR network for N steps under one fixed defence."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rl_mask.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from rl_mask.config import Config, save_config
from rl_mask.data import BatchSampler, FaceSplit, augment, load_split, verification_pairs
from rl_mask.defences import Defence, build_defence
from rl_mask.fr.trainer import FRTrainer, build_model, resolve_device
from rl_mask.masking import MaskedBatch
from rl_mask.models import FaceRecognizer


@dataclass
class PrivateData:
    """The private faces as tensors: what every trainer and evaluator starts from."""

    split: FaceSplit
    train_images: torch.Tensor  # float [-1, 1]
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    pairs: torch.Tensor
    same: torch.Tensor

    @property
    def num_classes(self) -> int:
        return self.split.private_train.num_classes


def prepare_data(cfg: Config) -> PrivateData:
    split = load_split(cfg.data)
    pairs, same = verification_pairs(split.private_test.labels, seed=cfg.data.split_seed)
    return PrivateData(
        split=split,
        train_images=split.private_train.float_images(),
        train_labels=split.private_train.labels,
        test_images=split.private_test.float_images(),
        test_labels=split.private_test.labels,
        pairs=pairs,
        same=same,
    )


def make_trainer(cfg: Config, defence: Defence, data: PrivateData, device: torch.device, total_steps: int | None = None) -> FRTrainer:
    """An FR trainer whose input standardisation is fixed from the encoded private train faces
    (a DP-SGD trainer when the defence protects through training)."""
    shape = defence.input_shape(cfg.data.planes, cfg.data.height, cfg.data.width)
    if defence.private_training:
        from rl_mask.fr.private import DPFRTrainer

        trainer: FRTrainer = DPFRTrainer(
            shape, defence.input_kind, data.num_classes, cfg.model, cfg.fr, cfg.dp, device, len(data.train_labels), total_steps
        )
    else:
        trainer = FRTrainer(shape, defence.input_kind, data.num_classes, cfg.model, cfg.fr, device, total_steps)
    trainer.set_input_stats(defence.encode_eval(data.train_images))
    return trainer


@dataclass
class TrainingBatch:
    """One protected training batch. ``masked`` is what leaves the data owner (provenance in
    batch positions); ``originals`` (the augmented faces before encoding) never leave it."""

    indices: torch.Tensor  # private-train data-set indices of the batch's faces
    originals: torch.Tensor
    masked: MaskedBatch

    def provenance(self) -> MaskedBatch:
        """``masked`` with sources as private-train data-set indices."""
        return self.masked.with_sources(self.indices)


class TrainingStream:
    """The protected training batches of a ``train_fr`` run, in order, from its seed: the
    training loop, ``export-masked`` and the benchmark's attacks all draw from this one
    definition, so a replay yields exactly the tensors the run trained on."""

    def __init__(self, cfg: Config, defence: Defence, data: PrivateData):
        self.cfg = cfg
        self.defence = defence
        self.data = data
        n = len(data.train_labels)
        if defence.private_training:
            from rl_mask.fr.private import PoissonSampler

            self.sampler = PoissonSampler(n, min(1.0, cfg.fr.batch_size / n), seed=cfg.fr.seed)
        else:
            self.sampler = BatchSampler(n, cfg.fr.batch_size, seed=cfg.fr.seed)
        self.generator = torch.Generator().manual_seed(cfg.fr.seed)

    def next(self) -> TrainingBatch:
        idx = self.sampler.next()
        images = self.data.train_images[idx]
        if len(idx) == 0:  # an empty Poisson batch (DP-SGD): nothing leaves, the step still counts
            none = torch.empty(0, 1, dtype=torch.long)
            return TrainingBatch(idx, images, MaskedBatch(self.defence.encode_eval(images), none, torch.empty(0, 1), none))
        if self.cfg.fr.augment:
            images = augment(images, self.generator)
        batch = self.defence.encode_train(images, self.data.train_labels[idx], self.generator)
        return TrainingBatch(idx, images, batch)

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "generator": self.generator.get_state()}


def concat_masked(batches: list[MaskedBatch]) -> MaskedBatch:
    """Several masked batches as one. Batches with fewer mixed faces than the largest k are
    padded with columns of weight 0, label -1 and source -1."""
    kept = [b for b in batches if b.inputs.shape[0] > 0]
    if not kept:
        raise ValueError("no protected samples in the given batches")
    k = max(b.k for b in kept)

    def pad(t: torch.Tensor, value: float) -> torch.Tensor:
        return torch.cat([t, t.new_full((t.shape[0], k - t.shape[1]), value)], dim=1)

    return MaskedBatch(
        torch.cat([b.inputs for b in kept]),
        torch.cat([pad(b.labels, -1) for b in kept]),
        torch.cat([pad(b.weights, 0.0) for b in kept]),
        torch.cat([pad(b.sources, -1) for b in kept]),
    )


def concat_batches(batches: list[TrainingBatch]) -> tuple[MaskedBatch, torch.Tensor]:
    """Several batches as one ``MaskedBatch`` (provenance as data-set indices, padded as in
    ``concat_masked``) and the dominant original of each sample."""
    kept = [b for b in batches if b.masked.inputs.shape[0] > 0]
    masked = concat_masked([b.provenance() for b in kept])
    originals = torch.cat([b.originals[b.masked.dominant_source] for b in kept])
    return masked, originals


def evaluate(trainer: FRTrainer, defence: Defence, data: PrivateData) -> dict:
    return trainer.evaluate(defence.encode_eval(data.test_images), data.test_labels, data.pairs, data.same)


def load_fr_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[FaceRecognizer, dict]:
    """Load final FR weights (``RUN_DIR/fr.pt``) into a ready model; returns ``(model, meta)``."""
    ckpt = load_checkpoint(path, map_location, required=("state_dict", "meta"))
    model = build_model(ckpt["meta"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt["meta"]


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def train_fr(cfg: Config, out_dir: str | Path, defence: Defence | None = None, progress: bool = True, data: PrivateData | None = None) -> dict:
    """Train under ``defence`` (default: the config's strategy); write the run folder; return the summary."""
    started = time.perf_counter()
    data = data or prepare_data(cfg)  # bad faces fail before anything is written
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    set_threads(cfg.fr.threads)
    defence = defence or build_defence(cfg)
    device = resolve_device(cfg.fr.device)
    trainer = make_trainer(cfg, defence, data, device)
    stream = TrainingStream(cfg, defence, data)
    history = []
    metrics: dict = {}
    bar = tqdm(range(cfg.fr.steps), desc=f"train-fr [{defence.name}]", disable=not progress, dynamic_ncols=True)
    for step in bar:
        loss = trainer.train_step(stream.next().masked)
        if (step + 1) % cfg.fr.eval_every == 0 or step + 1 == cfg.fr.steps:
            metrics = evaluate(trainer, defence, data)
            history.append({"step": step + 1, "loss": loss, **metrics})
            save_checkpoint({"trainer": trainer.state_dict(), **stream.state_dict()}, out / "checkpoints" / "fr_state.pt")
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{metrics['identification_acc']:.3f}")
    save_checkpoint(trainer.weights(), out / "fr.pt")
    seconds = time.perf_counter() - started
    summary = {
        "strategy": defence.name,
        "defence": defence.describe(),
        "identification_acc": metrics["identification_acc"],
        "identification_top5": metrics["identification_top5"],
        "verification_acc": metrics["verification_acc"],
        "fr_steps": trainer.step,
        "batch_size": cfg.fr.batch_size,
        "private_identities": data.num_classes,
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
        "verification_pairs": len(data.same),
        "device": str(device),
        "wall_seconds": round(seconds, 2),
        "history": history,
        "config": cfg.to_dict(),
    }
    if defence.private_training:
        summary["dp"] = trainer.privacy()
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary

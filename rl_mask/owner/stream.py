"""The data owner's private faces as tensors and the protected training batches of a run.

``TrainingStream`` is the one batch path: ``train-fr``, the adaptive env, ``export-masked``
and the benchmark's attacks all draw their batches from it, so a run can be replayed and
exported exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl_mask.config import Config, owner_seed
from rl_mask.mask.augment import augment
from rl_mask.mask.defences import Defence
from rl_mask.mask.masking import MaskedBatch
from rl_mask.mask.settings import MaskSettings
from rl_mask.owner.data import BatchSampler, FaceSplit, PoissonSampler, load_split, to_float, verification_pairs
from rl_mask.protocol import concat_protected, pad_columns


@dataclass
class PrivateData:
    """The private faces as tensors: what every trainer and evaluator starts from."""

    split: FaceSplit
    train_images: torch.Tensor  # float [-1, 1]
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    pairs: torch.Tensor
    same: torch.Tensor
    #: private-train index of each row of ``train_images`` (a shard holds only some rows)
    train_ids: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.split.private_train.num_classes


def prepare_shard(cfg: Config, index: int, count: int) -> PrivateData:
    """An env runner's share of the private training faces (every ``count``-th image, kept
    as uint8 until a batch is drawn) and all validation faces (the env scores the FR network
    on them itself, for the reward); no test faces: only the driver's final evaluation uses those."""
    split = load_split(cfg.data)
    shard = split.private_train.shard(index, count)
    none = torch.empty(0, dtype=torch.long)
    empty = torch.empty(0, cfg.data.planes, cfg.data.height, cfg.data.width)
    val = split.private_val
    return PrivateData(split, shard.images, shard.labels, val.float_images(), val.labels, empty, none, torch.empty(0, 2, dtype=torch.long), torch.empty(0, dtype=torch.bool), train_ids=torch.arange(index, len(split.private_train), count))


def prepare_data(cfg: Config) -> PrivateData:
    split = load_split(cfg.data)
    pairs, same = verification_pairs(split.private_test.labels, seed=cfg.data.split_seed)
    return PrivateData(
        split=split,
        train_images=split.private_train.float_images(),
        train_labels=split.private_train.labels,
        val_images=split.private_val.float_images(),
        val_labels=split.private_val.labels,
        test_images=split.private_test.float_images(),
        test_labels=split.private_test.labels,
        pairs=pairs,
        same=same,
    )


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

    def __init__(self, cfg: Config, defence: Defence, data: PrivateData, seed: int | None = None):
        self.cfg = cfg
        self.defence = defence
        self.data = data
        seed = cfg.fr.seed if seed is None else seed
        n = len(data.train_labels)
        if defence.private_training:
            self.sampler = PoissonSampler(n, min(1.0, cfg.fr.batch_size / n), seed=seed)
        else:
            self.sampler = BatchSampler(n, cfg.fr.batch_size, seed=seed)
        # augmentation, mixing partners and weights, flips: drawn from the owner's secret too
        self.generator = torch.Generator().manual_seed(owner_seed(seed, cfg))

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch's private-train indices and (augmented) faces, not yet encoded."""
        rows = self.sampler.next()
        images = self.data.train_images[rows]
        if images.dtype == torch.uint8:
            images = to_float(images)
        idx = rows if self.data.train_ids is None else self.data.train_ids[rows]
        if len(idx) and self.cfg.fr.augment:
            images = augment(images, self.generator)
        return idx, images

    def encode(self, idx: torch.Tensor, images: torch.Tensor, k: int | None = None, settings: MaskSettings | None = None, transformed: torch.Tensor | None = None) -> TrainingBatch:
        """Protect a drawn batch (``k`` or whole ``settings``: chosen for it by the adaptive
        policy, for defences that take them; ``transformed``: the batch's channel-removed
        encoding, when the caller has it already)."""
        if len(idx) == 0:  # an empty Poisson batch (DP-SGD): nothing leaves, the step still counts
            none = torch.empty(0, 1, dtype=torch.long)
            return TrainingBatch(idx, images, MaskedBatch.of(self.defence.encode_eval(images), none, torch.empty(0, 1), none))
        kwargs = {} if k is None else {"k": k}
        if settings is not None:
            kwargs["settings"] = settings
            if transformed is not None:
                kwargs["transformed"] = transformed
        labels = self.data.split.private_train.labels[idx]  # idx: private-train indices
        batch = self.defence.encode_train(images, labels, self.generator, **kwargs)
        return TrainingBatch(idx, images, batch)

    def next(self, k: int | None = None) -> TrainingBatch:
        return self.encode(*self.draw(), k=k)

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.generator.set_state(state["generator"])


def concat_masked(batches: list[MaskedBatch]) -> MaskedBatch:
    """Several masked batches as one: the messages as ``concat_protected`` joins them, the
    owner's record (every row's k labels and weights, sources) padded alike (label and source
    -1, weight 0)."""
    kept = [b for b in batches if b.inputs.shape[0] > 0]
    sent = concat_protected([b.sent for b in kept])
    k = max(b.k for b in kept)
    sources = torch.cat([pad_columns(b.sources, k, -1) for b in kept])
    if not any(b.hard_labels for b in kept):
        return MaskedBatch(sent, sources)
    labels = torch.cat([pad_columns(b.labels, k, -1) for b in kept])
    weights = torch.cat([pad_columns(b.weights, k, 0.0) for b in kept])
    return MaskedBatch(sent, sources, owner_labels=labels, owner_weights=weights)


def concat_batches(batches: list[TrainingBatch]) -> tuple[MaskedBatch, torch.Tensor]:
    """Several batches as one ``MaskedBatch`` (provenance as data-set indices, padded as in
    ``concat_masked``) and the dominant original of each sample."""
    kept = [b for b in batches if b.masked.inputs.shape[0] > 0]
    masked = concat_masked([b.provenance() for b in kept])
    originals = torch.cat([b.originals[b.masked.dominant_source] for b in kept])
    return masked, originals



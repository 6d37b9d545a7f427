"""Face sets on disk (one folder per identity), identity-disjoint splits and verification pairs.

Faces are loaded once into a uint8 tensor ``[N, P, H, W]`` (P = 1 grey, 3 RGB): aligned
face crops are small, and an in-memory set lets env runners draw batches without I/O.

Split (seeded, deterministic): identities are shuffled; the first ``num_private`` are the
*private* identities we protect (their images split into train, validation and held-out test
images), the rest are the *public* identities, the attacker's auxiliary set. No identity is
in both. Validation faces feed the adaptive policy's utility signal; test faces are used only
by the final evaluation, so the reported accuracy is not the one the policy optimised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:  # face_cache imports this module's decoder
    from rl_mask.owner.face_cache import PackedFaces

IMAGE_SUFFIXES = (".pgm", ".png", ".jpg", ".jpeg", ".bmp", ".ppm")
COLOR_MODES = {"L": 1, "RGB": 3}


class FaceDataError(ValueError):
    """A face folder or image that cannot be used; the message names the path."""


@dataclass(frozen=True)
class FaceSet:
    """Images ``[N, P, H, W]`` uint8 with labels ``[N]`` in ``0..len(identities)-1``.

    The pixels stay in ``store`` (all faces of the folder: a tensor, or the packed face cache
    read on demand, ``rl_mask.owner.face_cache.PackedFaces``) until ``images`` is read: splits
    and shards of a large set cost no memory until they are used, and then only their own.
    """

    store: torch.Tensor | PackedFaces  # [N_all, P, H, W] uint8; store[rows] -> tensor
    rows: torch.Tensor  # [N] rows of store
    labels: torch.Tensor
    identities: tuple[str, ...]
    paths: tuple[str, ...]

    @classmethod
    def of(cls, images: torch.Tensor, labels: torch.Tensor, identities: tuple[str, ...], paths: tuple[str, ...]) -> "FaceSet":
        return cls(images, torch.arange(images.shape[0]), labels, identities, paths)

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def images(self) -> torch.Tensor:
        return self.store[self.rows]

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> "FaceSet":
        """The same identities (labels unchanged), a subset of images."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return FaceSet(self.store, self.rows[idx], self.labels[idx], self.identities, tuple(self.paths[i] for i in idx.tolist()))

    def shard(self, index: int, count: int) -> "FaceSet":
        """Shard ``index`` of ``count`` (every count-th image): an env runner's share."""
        if not 0 <= index < count:
            raise ValueError(f"shard {index} of {count} does not exist")
        return self.subset(torch.arange(index, len(self), count))

    def float_images(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Images as float in [-1, 1] on ``device``."""
        return to_float(self.images.to(device))


@dataclass(frozen=True)
class FaceSplit:
    """Identity-disjoint split. Private labels are ``0..P-1``, public labels ``0..Q-1``."""

    private_train: FaceSet
    private_val: FaceSet
    private_test: FaceSet
    public: FaceSet


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float ``[-1, 1]``."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float ``[-1, 1]`` -> uint8 (clamped)."""
    return images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def _fit(img: Image.Image, height: int, width: int) -> Image.Image:
    """Centre-crop to the target aspect ratio, then resize (keeps faces undistorted)."""
    w, h = img.size
    target = width / height
    if abs(w / h - target) > 1e-3:
        if w / h > target:
            new_w = max(1, round(h * target))
            left = (w - new_w) // 2
            img = img.crop((left, 0, left + new_w, h))
        else:
            new_h = max(1, round(w / target))
            top = (h - new_h) // 2
            img = img.crop((0, top, w, top + new_h))
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    return img


def load_image(path: str | Path, height: int, width: int, color: str = "L") -> np.ndarray:
    """One face as ``uint8 [P, H, W]``; a broken or truncated file raises ``FaceDataError``."""
    if color not in COLOR_MODES:
        raise FaceDataError(f"color mode {color!r} is not one of {sorted(COLOR_MODES)}")
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later
            img = _fit(img.convert(color), height, width)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise FaceDataError(f"cannot read face image {path}: {exc}") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _sort_key(name: str) -> tuple:
    stem = Path(name).stem
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


def list_faces(root: str | Path, min_images: int = 1) -> tuple[list[str], list[list[Path]]]:
    """The identity folders under ``root`` (sorted) and their image files (sorted)."""
    root = Path(root)
    if not root.exists():
        raise FaceDataError(f"face folder {root} does not exist (set --data or data.root)")
    if not root.is_dir():
        raise FaceDataError(f"face folder {root} is not a directory")
    identity_dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)
    if not identity_dirs:
        raise FaceDataError(f"face folder {root} has no identity sub-folders (expected one folder per person)")
    identities: list[str] = []
    files: list[list[Path]] = []
    for d in identity_dirs:
        names = sorted((f.name for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES), key=_sort_key)
        if len(names) < min_images:
            raise FaceDataError(
                f"identity folder {d} has {len(names)} image(s) ({', '.join(IMAGE_SUFFIXES)}); at least {min_images} needed"
            )
        identities.append(d.name)
        files.append([d / n for n in names])
    return identities, files


def load_faces(
    root: str | Path,
    height: int = 112,
    width: int = 96,
    color: str = "L",
    min_images: int = 1,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> FaceSet:
    """Every identity folder under ``root`` (sorted). With ``cache_dir``, the decoded faces
    are packed once into a cache file checked by a hash of the listing, and memory-mapped
    from then on (``rl_mask.owner.face_cache``): a large folder starts in seconds."""
    identities, files = list_faces(root, min_images)
    labels = [i for i, fs in enumerate(files) for _ in fs]
    paths = [os.fspath(f) for fs in files for f in fs]
    if cache_dir:
        from rl_mask.owner.face_cache import cached_images

        store = cached_images(paths, height, width, color, cache_dir, progress)
    else:
        store = torch.from_numpy(np.stack([load_image(p, height, width, color) for p in paths]))
    return FaceSet.of(store, torch.tensor(labels, dtype=torch.long), tuple(identities), tuple(paths))


def _relabel(faces: FaceSet, identity_ids: list[int], image_index: list[int]) -> FaceSet:
    remap = {old: new for new, old in enumerate(identity_ids)}
    idx = torch.tensor(image_index, dtype=torch.long)
    return FaceSet(
        store=faces.store,
        rows=faces.rows[idx],
        labels=torch.tensor([remap[int(faces.labels[i])] for i in image_index], dtype=torch.long),
        identities=tuple(faces.identities[i] for i in identity_ids),
        paths=tuple(faces.paths[i] for i in image_index),
    )


def split_faces(faces: FaceSet, num_private: int, train_per_identity: int, seed: int = 0, val_per_identity: int = 0) -> FaceSplit:
    """Identity-disjoint private/public split, and a per-identity train/validation/test split
    of the private ones."""
    n_ids = faces.num_classes
    if n_ids < 3:
        where = f" in {Path(faces.paths[0]).parent.parent}" if faces.paths else ""
        raise FaceDataError(
            f"the face set{where} has {n_ids} identity folder(s); at least 3 are needed: 2 or more private ones and one public one for the attacker"
        )
    if not 2 <= num_private <= n_ids - 1:
        raise FaceDataError(
            f"num_private={num_private} must be in 2..{n_ids - 1}: the set has {n_ids} identities and the attacker needs at least one public one"
        )
    if train_per_identity < 1:
        raise FaceDataError(f"train_per_identity={train_per_identity} must be >= 1")
    if val_per_identity < 0:
        raise FaceDataError(f"val_per_identity={val_per_identity} must be >= 0")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_ids).tolist()
    private_ids, public_ids = sorted(order[:num_private]), sorted(order[num_private:])
    by_id = [np.flatnonzero(faces.labels.numpy() == i).tolist() for i in range(n_ids)]
    train_idx: list[int] = []
    val_idx: list[int] = []
    test_idx: list[int] = []
    held = train_per_identity + val_per_identity
    for i in private_ids:
        imgs = by_id[i]
        if len(imgs) < held + 1:
            folder = Path(faces.paths[imgs[0]]).parent if imgs else faces.identities[i]
            raise FaceDataError(
                f"private identity folder {folder} has {len(imgs)} image(s); train_per_identity={train_per_identity} "
                f"+ val_per_identity={val_per_identity} + at least one test image needs {held + 1}"
            )
        perm = rng.permutation(imgs).tolist()
        train_idx += perm[:train_per_identity]
        val_idx += perm[train_per_identity:held]
        test_idx += perm[held:]
    public_idx = [j for i in public_ids for j in by_id[i]]
    return FaceSplit(
        private_train=_relabel(faces, private_ids, sorted(train_idx)),
        private_val=_relabel(faces, private_ids, sorted(val_idx)),
        private_test=_relabel(faces, private_ids, sorted(test_idx)),
        public=_relabel(faces, public_ids, public_idx),
    )


def verification_pairs(labels: torch.Tensor, seed: int = 0, max_pairs: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced same/different pairs over ``labels``: ``(pairs [M, 2], same [M] bool)``.

    All same-identity pairs (up to ``max_pairs / 2``), and as many different-identity pairs
    drawn at random without repeats.
    """
    rng = np.random.default_rng(seed)
    lab = labels.numpy()
    n = len(lab)
    i, j = np.triu_indices(n, k=1)
    same_mask = lab[i] == lab[j]
    same = np.stack([i[same_mask], j[same_mask]], 1)
    diff = np.stack([i[~same_mask], j[~same_mask]], 1)
    if len(same) == 0 or len(diff) == 0:
        raise FaceDataError("verification needs at least two identities with two or more held-out images")
    m = min(len(same), len(diff), max_pairs // 2)
    same = same[rng.choice(len(same), m, replace=False)]
    diff = diff[rng.choice(len(diff), m, replace=False)]
    pairs = np.concatenate([same, diff])
    is_same = np.concatenate([np.ones(m, bool), np.zeros(m, bool)])
    perm = rng.permutation(len(pairs))
    return torch.from_numpy(pairs[perm]).long(), torch.from_numpy(is_same[perm])


class BatchSampler:
    """Endless seeded batches of indices: reshuffled epochs, no index twice in a batch.

    Like ``drop_last``: the tail of an epoch that does not fill a batch is dropped, so a
    batch never holds the same face twice (mixing partners must be distinct faces). The
    batch size is capped at the data-set size (small private sets).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if n < 1:
            raise ValueError("cannot sample batches from an empty set")
        self.n = n
        self.batch_size = min(batch_size, n)
        self.generator = torch.Generator().manual_seed(seed)
        self._queue = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        if self._queue.numel() < self.batch_size:
            self._queue = torch.randperm(self.n, generator=self.generator)
        batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "queue": self._queue.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._queue = state["queue"].clone()


class PoissonSampler:
    """DP-SGD's sampling (the RDP accountant assumes it). Batches where each of ``n`` faces is included independently with ``sample_rate``."""

    def __init__(self, n: int, sample_rate: float, seed: int = 0):
        if n < 1:
            raise ValueError("cannot sample batches from an empty set")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate={sample_rate} must lie in (0, 1]")
        self.n = n
        self.sample_rate = sample_rate
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> torch.Tensor:
        return torch.nonzero(torch.rand(self.n, generator=self.generator) < self.sample_rate).squeeze(1)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def default_cache_dir() -> str:
    from rl_mask.owner.face_cache import default_cache_dir

    return default_cache_dir()


def load_split(cfg) -> FaceSplit:
    """Load and split the faces a ``DataConfig`` names."""
    cache = (cfg.cache_dir or default_cache_dir()) if cfg.cache else None
    faces = load_faces(cfg.resolved_root(), cfg.height, cfg.width, cfg.color, min_images=1, cache_dir=cache, progress=True)
    return split_faces(faces, cfg.num_private, cfg.train_per_identity, cfg.split_seed, cfg.val_per_identity)

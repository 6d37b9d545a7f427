"""A face folder decoded once into one packed file, memory-mapped from then on.

Decoding 100k+ JPEGs takes minutes; every env runner doing it again, and holding every face
in its own memory, does not scale. The first load writes ``faces-<key>.npy`` (uint8
``[N, P, H, W]``) atomically into the cache folder; ``key`` is a SHA-256 over the listing
(every path with its size and modification time) and the decode settings, so a changed,
added or removed image gives a new key and a fresh decode. Later loads memory-map the file
(copy-on-write): a process pays memory only for the faces it touches (its shard).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

FORMAT = 1


def default_cache_dir() -> str:
    return os.environ.get("RL_MASK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rl-mask", "faces")


def cache_key(paths: list[str], height: int, width: int, color: str) -> str:
    h = hashlib.sha256(json.dumps({"format": FORMAT, "height": height, "width": width, "color": color}).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cached_images(paths: list[str], height: int, width: int, color: str, cache_dir: str | Path, progress: bool = False) -> torch.Tensor:
    """``[N, P, H, W]`` uint8 faces of ``paths``, from the cache (decoded and written first if absent)."""
    from rl_mask.owner.data import COLOR_MODES, load_image

    planes = COLOR_MODES[color]
    folder = Path(cache_dir)
    file = folder / f"faces-{cache_key(paths, height, width, color)[:32]}.npy"
    shape = (len(paths), planes, height, width)
    if file.is_file():
        arr = np.load(file, mmap_mode="c")
        if arr.shape == shape and arr.dtype == np.uint8:
            return torch.from_numpy(arr)
    folder.mkdir(parents=True, exist_ok=True)
    out = np.empty(shape, dtype=np.uint8)
    for i, p in enumerate(tqdm(paths, desc=f"decoding faces into {folder}", disable=not progress or len(paths) < 2000, dynamic_ncols=True)):
        out[i] = load_image(p, height, width, color)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return torch.from_numpy(np.load(file, mmap_mode="c"))

"""A face folder decoded once into one packed file, read on demand from then on.

Decoding 100k+ JPEGs takes minutes; every env runner doing it again, and holding every face
in its own memory, does not scale. The first load writes ``faces-<key>.npy`` (uint8
``[N, P, H, W]``) atomically into the cache folder; ``key`` is a SHA-256 over the listing
(every path with its size and modification time) and the decode settings, so a changed,
added or removed image gives a new key and a fresh decode. Later loads open the file as
``PackedFaces``: a process reads (``pread``) only the faces it asks for, so an env runner pays
memory for its shard alone. A memory map would not: every page it touches stays in the
process's resident set, and the kernel maps the pages around each fault too, so a shard of
every R-th face mapped nearly the whole file (measured: 0.44 of the unsharded memory at R=4).
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


class PackedFaces:
    """The faces of a packed cache file, ``[N, P, H, W]`` uint8, read on demand: ``faces[rows]``
    returns a new tensor of those faces only (one ``pread`` per run of consecutive rows)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if dtype != np.uint8 or fortran or len(shape) != 4:
            raise ValueError(f"face cache {self.path} holds {dtype} {shape}{' (Fortran order)' if fortran else ''}, not uint8 [N, P, H, W]")
        self.shape = tuple(int(n) for n in shape)
        self.row_bytes = int(np.prod(self.shape[1:]))
        size = os.path.getsize(self.path)
        if size != self.offset + self.shape[0] * self.row_bytes:
            raise ValueError(f"face cache {self.path} is {size} bytes, not the {self.offset + self.shape[0] * self.row_bytes} its header promises (cut short?)")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> torch.Tensor:
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1).numpy()
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"face cache {self.path}: rows must be in 0..{self.shape[0] - 1}, got {rows.min()}..{rows.max()}")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        flat = out.reshape(len(rows), -1)
        starts = np.flatnonzero(np.diff(ordered, prepend=-2) != 1)  # runs of consecutive rows
        ends = np.append(starts[1:], len(rows))
        with open(self.path, "rb", buffering=0) as f:
            for a, b in zip(starts.tolist(), ends.tolist()):
                view = memoryview(flat[a:b]).cast("B")
                if os.preadv(f.fileno(), [view], self.offset + int(ordered[a]) * self.row_bytes) != len(view):
                    raise OSError(f"face cache {self.path}: short read at row {ordered[a]}")
        if not np.array_equal(order, np.arange(len(rows))):
            out[order] = out.copy()  # back to the order asked for
        return torch.from_numpy(out)


def _open(file: Path, shape: tuple[int, ...]) -> PackedFaces | None:
    """The packed file if it holds faces of ``shape``, else None (absent, stale or cut short)."""
    try:
        packed = PackedFaces(file)
    except (OSError, ValueError):
        return None
    return packed if packed.shape == shape else None


def cached_images(paths: list[str], height: int, width: int, color: str, cache_dir: str | Path, progress: bool = False) -> PackedFaces:
    """``[N, P, H, W]`` uint8 faces of ``paths``, from the cache (decoded and written first if absent)."""
    from rl_mask.owner.data import COLOR_MODES, load_image

    planes = COLOR_MODES[color]
    folder = Path(cache_dir)
    file = folder / f"faces-{cache_key(paths, height, width, color)[:32]}.npy"
    shape = (len(paths), planes, height, width)
    packed = _open(file, shape)
    if packed is not None:
        return packed
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
    return PackedFaces(file)

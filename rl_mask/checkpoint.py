"""Atomic checkpoint files and safe loading (a checkpoint is untrusted input).

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the
target, so a crash never leaves a half-written checkpoint. Loads use ``weights_only=True``:
tensors, numbers, strings and containers only, never arbitrary pickled objects.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or of the wrong kind; the message names the file."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """``torch.save`` to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", required: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint dict with ``weights_only=True``; clear errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt, truncated, or holds non-weight objects
        raise CheckpointError(f"checkpoint {path} does not load as weights-only data: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    missing = [k for k in required if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return obj


def build_checked(factory: Callable[[], nn.Module], state_dict: dict, path: str | Path) -> nn.Module:
    """The network ``factory`` builds from sizes a checkpoint records, loaded with its weights.

    Sizes read from a file are untrusted: a tampered width would allocate without bound before
    ``load_state_dict`` ever ran. So the network is built on the meta device first (no memory),
    and only if its tensor shapes are exactly those of ``state_dict`` (already in memory, so
    bounded by the file's size) is it built for real. The caller bounds what ``factory`` loops
    over (how many layers) with the config's ranges.
    """
    with torch.device("meta"):
        skeleton = factory()
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if want != have or len(have) != len(state_dict):
        diff = sorted(set(want.items()) ^ set(have.items()))[:2]
        raise CheckpointError(f"checkpoint {path}: the sizes it records describe a network its weights do not fit (first differences: {diff})")
    model = factory()
    model.load_state_dict(state_dict)
    return model

"""The files of inference: what crosses (``probes.npz`` to the server, ``embeddings.npz`` back)
and what stays with the owner (``probes.owner.json``: which image each row is).

``probes.npz`` holds exactly the ``ProtectedProbes`` fields and ``embeddings.npz`` exactly the
``ProbeEmbeddings`` fields, as float32 arrays; both are read without unpickling.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from rl_mask.checkpoint import atomic_write_bytes, atomic_write_text
from rl_mask.protocol import ProbeEmbeddings, ProtectedProbes


class InputError(ValueError):
    """A probe, embedding, pairs or image-list file that cannot be used; the message names it."""


def owner_file(probes_path: str | Path) -> Path:
    """Where the owner keeps the image names of ``probes.npz``: ``probes.owner.json`` beside it."""
    p = Path(probes_path)
    return p.with_name(p.name.removesuffix(".npz") + ".owner.json")


def _save_message(message, path: str | Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{f.name: getattr(message, f.name).detach().cpu().numpy().astype(np.float32) for f in fields(message)})
    atomic_write_bytes(path, buffer.getvalue())


def _load_message(cls, path: str | Path, ndim: int):
    path = Path(path)
    names = [f.name for f in fields(cls)]
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if sorted(z.files) != sorted(names):
                raise InputError(f"{path} holds {sorted(z.files)}, a {cls.__name__} file holds exactly {names}")
            arrays = {n: z[n] for n in names}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path} is not a {cls.__name__} .npz file: {exc}") from exc
    for name, a in arrays.items():
        if a.ndim != ndim or not np.issubdtype(a.dtype, np.floating) or a.shape[0] == 0:
            raise InputError(f"{path}: {name} is {a.dtype} {list(a.shape)}, expected a non-empty float array of {ndim} dimensions")
        if not np.isfinite(a).all():
            raise InputError(f"{path}: {name} holds NaN or infinite values")
    return cls(**{n: torch.from_numpy(a.astype(np.float32)) for n, a in arrays.items()})


def save_probes(probes: ProtectedProbes, path: str | Path) -> None:
    _save_message(probes, path)


def load_probes(path: str | Path) -> ProtectedProbes:
    return _load_message(ProtectedProbes, path, ndim=4)


def save_embeddings(embeddings: ProbeEmbeddings, path: str | Path) -> None:
    _save_message(embeddings, path)


def load_embeddings(path: str | Path) -> ProbeEmbeddings:
    return _load_message(ProbeEmbeddings, path, ndim=2)


def save_owner_record(path: str | Path, names: list[str], run: str, encoding: dict) -> None:
    """The owner's side of a probe file: row i of ``probes.npz`` is the image ``names[i]``."""
    atomic_write_text(path, json.dumps({"names": names, "run": run, "encoding": encoding}, indent=2))


def load_names(path: str | Path, rows: int) -> list[str]:
    """The image names of a probe file's rows, from its owner record."""
    path = Path(path)
    try:
        names = json.loads(path.read_text())["names"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not an owner record of a probe file (rl-mask encode writes one): {exc}") from exc
    if len(names) != rows:
        raise InputError(f"{path} names {len(names)} images, the embeddings have {rows} rows")
    return names

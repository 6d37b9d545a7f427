"""Restore RLlib checkpoints without ever letting RLlib's loaders read the run folder.

RLlib reads a component's ``*.msgpack`` state through ``msgpack_numpy``, whose decoder calls
``pickle.loads`` on any map ``{b"nd": True, b"kind": b"O", b"data": ...}`` (an object
ndarray), and where that exact file is missing it calls ``pickle.load`` on the ``.pkl`` beside
it; it follows symbolic links as it goes. A run folder sits on shared storage and is untrusted
input, so resume never hands it to RLlib as it is. Instead ``verified_copy`` reads every file
of the checkpoint once (through directory handles, never following a link), accepts only the
files rl-mask's own checkpoints hold (msgpack state, RLlib's JSON metadata), parses each
msgpack file with plain ``msgpack`` (no object hook, extension types refused) and walks it for
anything ``msgpack_numpy`` would unpickle or build from a non-plain dtype, and writes exactly
the bytes it checked into a private temporary folder (0700) that RLlib then restores from.
That copy holds no ``.pkl`` at all: RLlib's pickle fallback finds nothing to load, and
``class_and_ctor_args.pkl`` (read only by ``from_checkpoint``, which rl-mask never calls) is
left behind. A file swapped on shared storage after the check is never read.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import msgpack
import numpy as np

from rl_mask.checkpoint import CheckpointError

STATE_SUFFIX = ".msgpack"
#: RLlib's JSON metadata beside the state; plain data, copied after it parses as JSON.
METADATA_FILES = ("metadata.json", "rllib_checkpoint.json")
#: Written by RLlib next to every state file; read only by ``from_checkpoint``: never read, never copied.
CTOR_ARGS_FILE = "class_and_ctor_args.pkl"


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holding data that would be unpickled or executed: tampered, never restored."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that does not parse (truncated, half-written); an older one may do."""


def _refuse_ext(code: int, data: bytes):
    raise UnsafeCheckpointError(f"a msgpack extension type {code} ({len(data)} bytes)")


def _get(node: dict, key: str):
    """``msgpack_numpy`` keys are bytes; a str twin is checked too."""
    return node.get(key.encode(), node.get(key))


def _as_text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value if isinstance(value, str) else None


def _plain_dtype(descr) -> bool:
    """True for a plain numeric/bool/str dtype string such as ``'<f4'``."""
    text = _as_text(descr)
    if text is None:
        return False
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError):
        return False
    return not dtype.hasobject and dtype.kind not in "OV"


def _check_array_map(node: dict) -> None:
    """A ``msgpack_numpy`` array or scalar map: only plain dtypes, never ``kind`` O or V."""
    kind = _as_text(_get(node, "kind"))
    if kind:  # b"O": pickle.loads(data); b"V": structured dtype from an untrusted descr
        raise UnsafeCheckpointError(f"a numpy array of kind {kind!r} (msgpack_numpy would unpickle it or build it from an untrusted dtype)")
    if not _plain_dtype(_get(node, "type")):
        raise UnsafeCheckpointError(f"a numpy array with dtype {_get(node, 'type')!r}, not a plain numeric dtype")


def scan_tree(obj) -> None:
    """Walk a decoded msgpack tree; raise on any map ``msgpack_numpy`` would not decode plainly."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if _get(node, "nd") is not None:
                _check_array_map(node)
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, msgpack.ExtType):  # unreachable with ext_hook, kept as a guard
            raise UnsafeCheckpointError(f"a msgpack extension type {node.code}")


def scan_msgpack_bytes(data: bytes, path: Path) -> None:
    """Parse ``data`` (the bytes of ``path``) with plain msgpack; refuse anything that would be unpickled."""
    try:
        scan_tree(msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_refuse_ext))
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"checkpoint file {path} holds {exc}; it looks tampered with, refusing to restore it") from None
    except Exception as exc:  # truncated, trailing bytes, not msgpack at all
        raise CorruptCheckpointError(f"checkpoint file {path} is not valid msgpack ({type(exc).__name__}: {exc})") from exc


def scan_msgpack_file(path: Path) -> None:
    scan_msgpack_bytes(Path(path).read_bytes(), Path(path))


def _check_json(data: bytes, path: Path) -> None:
    try:
        json.loads(data)
    except ValueError as exc:
        raise CorruptCheckpointError(f"checkpoint file {path} is not valid JSON ({exc})") from exc


def _read_nofollow(name: str, dir_fd: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def read_verified(algo_dir: Path) -> dict[Path, bytes]:
    """Every file a restore needs under ``algo_dir``, read once and checked: ``{relative path: bytes}``.

    Raises ``UnsafeCheckpointError`` (a link, a pickle, a file rl-mask does not write, or
    msgpack that would be unpickled) or ``CorruptCheckpointError`` (missing or unparsable state).
    """
    algo_dir = Path(algo_dir)
    if algo_dir.is_symlink():
        raise UnsafeCheckpointError(f"checkpoint folder {algo_dir} is a link to {algo_dir.resolve()}; refusing to restore it")
    if not algo_dir.is_dir():
        raise CorruptCheckpointError(f"checkpoint folder {algo_dir} does not exist")
    files: dict[Path, bytes] = {}
    stateless: list[Path] = []
    for top, dirs, names, dir_fd in os.fwalk(algo_dir, follow_symlinks=False):
        here = Path(top)
        for name in sorted(dirs + names):
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise UnsafeCheckpointError(f"checkpoint {algo_dir} holds a link, {here / name}; rl-mask never writes one, refusing to restore it")
        for name in sorted(names):
            path = here / name
            if name == CTOR_ARGS_FILE:
                continue
            if name.endswith(".pkl"):
                raise UnsafeCheckpointError(f"checkpoint {algo_dir} holds pickled state ({path}); rl-mask only restores msgpack checkpoints it wrote")
            if not (name.endswith(STATE_SUFFIX) or name in METADATA_FILES):
                raise UnsafeCheckpointError(f"checkpoint {algo_dir} holds {path}, a file rl-mask's checkpoints never hold; refusing to restore it")
            data = _read_nofollow(name, dir_fd)
            (scan_msgpack_bytes if name.endswith(STATE_SUFFIX) else _check_json)(data, path)
            files[path.relative_to(algo_dir)] = data
        if not any(n.endswith(STATE_SUFFIX) for n in names):
            stateless.append(here)
    if stateless:  # after the walk: a tampered file anywhere is reported as such, not as damage
        raise CorruptCheckpointError(f"checkpoint folder {stateless[0]} holds no msgpack state file")
    return files


def check_algo_checkpoint(algo_dir: Path) -> None:
    """Fail early (before Ray starts) on a checkpoint ``verified_copy`` would refuse."""
    read_verified(algo_dir)


@contextmanager
def verified_copy(algo_dir: Path) -> Iterator[Path]:
    """A private temporary copy of the checked bytes of ``algo_dir``, for RLlib to restore from."""
    files = read_verified(algo_dir)
    with tempfile.TemporaryDirectory(prefix="rl-mask-restore-") as tmp:  # mode 0700
        root = Path(tmp)
        for rel, data in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        yield root

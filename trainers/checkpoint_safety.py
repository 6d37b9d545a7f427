"""Refuse RLlib checkpoints that would run code when RLlib reads them, before RLlib sees them.

RLlib reads ``*.msgpack`` state through ``msgpack_numpy``, whose decoder calls
``pickle.loads`` on any map ``{b"nd": True, b"kind": b"O", b"data": ...}`` (an object
ndarray). A tampered checkpoint can therefore run arbitrary code on the driver and on every
env runner that restores it. Here each state file is parsed with plain ``msgpack`` (no
object hook, extension types refused) and the decoded tree is walked for anything
``msgpack_numpy`` would unpickle or build from a non-plain dtype. State files in pickle
format (``*.pkl`` without a ``.msgpack`` twin) are refused outright.
"""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np

from rl_mask.checkpoint import CheckpointError

STATE_SUFFIXES = (".msgpack", ".msgpck")
#: Written by RLlib next to every state file; read only by ``from_checkpoint``, which we never call.
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


def scan_msgpack_file(path: Path) -> None:
    """Parse ``path`` with plain msgpack and refuse anything that would be unpickled."""
    data = path.read_bytes()
    try:
        scan_tree(msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_refuse_ext))
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"checkpoint file {path} holds {exc}; it looks tampered with, refusing to restore it") from None
    except Exception as exc:  # truncated, trailing bytes, not msgpack at all
        raise CorruptCheckpointError(f"checkpoint file {path} is not valid msgpack ({type(exc).__name__}: {exc})") from exc


def check_algo_checkpoint(algo_dir: Path) -> None:
    """Every RLlib state file under ``algo_dir`` is msgpack that decodes without pickle.

    Raises ``UnsafeCheckpointError`` (pickle inside or beside the state) or
    ``CorruptCheckpointError`` (missing or unparsable state).
    """
    if not algo_dir.is_dir():
        raise CorruptCheckpointError(f"checkpoint folder {algo_dir} does not exist")
    pickled = [p for p in sorted(algo_dir.rglob("*.pkl")) if p.name != CTOR_ARGS_FILE and not any(p.with_suffix(s).is_file() for s in STATE_SUFFIXES)]
    if pickled:
        raise UnsafeCheckpointError(f"checkpoint {algo_dir} holds pickled state ({pickled[0]}); rl-mask only restores msgpack checkpoints it wrote")
    states = sorted(p for s in STATE_SUFFIXES for p in algo_dir.rglob(f"*{s}"))
    if not states:
        raise CorruptCheckpointError(f"checkpoint {algo_dir} holds no msgpack state file")
    for path in states:
        scan_msgpack_file(path)

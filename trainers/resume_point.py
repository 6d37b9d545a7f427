"""Which checkpoint ``--resume`` restores: the newest one that is complete, readable and safe.

``checkpoints/latest`` names the newest checkpoint. It is only trusted to name a folder
``iter_NNNNNN`` directly inside ``checkpoints/`` (never a path elsewhere). A damaged
checkpoint (unreadable ``state.json``, truncated FR state or RLlib state) is skipped with a
warning and the previous one is used; a tampered one (pickled data) stops the resume.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from rl_mask.checkpoint import CheckpointError, load_checkpoint
from trainers.checkpoint_safety import UnsafeCheckpointError, check_algo_checkpoint

NAME = re.compile(r"iter_\d{6}")
STATE_KEYS = {"iteration": int, "env_steps": int, "wall_seconds": (int, float)}


@dataclass
class ResumePoint:
    path: Path
    state: dict  # state.json: iteration, env_steps, wall_seconds, fr_steps
    fr_state: dict  # fr_state.pt, loaded weights-only


def pointer_name(root: Path) -> str | None:
    """The checkpoint ``root/latest`` names, refused unless it is an ``iter_NNNNNN`` sibling."""
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not NAME.fullmatch(name):
        raise UnsafeCheckpointError(f"{pointer} names {name!r}, not a checkpoint folder iter_NNNNNN inside {root}; refusing to follow it")
    return name


def candidates(run_dir: Path) -> list[Path]:
    """The pointer's checkpoint first, then every other complete-looking one, newest first."""
    root = run_dir / "checkpoints"
    named = pointer_name(root)
    found = sorted((p for p in root.glob("iter_*") if NAME.fullmatch(p.name)), reverse=True) if root.is_dir() else []
    ordered = ([root / named] if named else []) + [p for p in found if p.name != named]
    for path in ordered:
        if path.is_symlink() or (path.exists() and path.resolve().parent != root.resolve()):
            raise UnsafeCheckpointError(f"checkpoint {path} is a link to {path.resolve()}, outside {root}; refusing to restore it")
    return ordered


def read_state(path: Path) -> dict:
    file = path / "state.json"
    try:
        state = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file} does not read as JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds a {type(state).__name__}, expected a mapping")
    for key, tp in STATE_KEYS.items():
        value = state.get(key)
        if not isinstance(value, tp) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"{file}: {key} must be a non-negative number, got {value!r}")
    return state


def load_point(path: Path) -> ResumePoint:
    """One checkpoint, checked whole: RLlib state first (refused if unsafe), then ours."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    check_algo_checkpoint(path / "algo")
    state = read_state(path)
    fr_state = load_checkpoint(path / "fr_state.pt", required=("trainer",))
    return ResumePoint(path, state, fr_state)


def resume_point(run_dir: str | Path) -> ResumePoint | None:
    """The checkpoint to resume from, or None when the run has none.

    Damaged checkpoints are skipped (a warning names each one and why); an unsafe one raises
    ``UnsafeCheckpointError``; if every checkpoint is damaged the last reason is raised.
    """
    run_dir = Path(run_dir).resolve()
    last_error: CheckpointError | None = None
    for path in candidates(run_dir):
        try:
            point = load_point(path)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as exc:
            print(f"rl-mask: warning: skipping damaged checkpoint {path.name}: {exc}", file=sys.stderr, flush=True)
            last_error = exc
            continue
        if last_error is not None:
            print(f"rl-mask: resuming from the previous checkpoint {path.name}", file=sys.stderr, flush=True)
        return point
    if last_error is not None:
        raise CheckpointError(f"no usable checkpoint under {run_dir / 'checkpoints'}; the last one tried: {last_error}")
    return None

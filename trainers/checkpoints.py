"""An adaptive run's checkpoints: the algorithm, the FR server's state and the counters in one
folder, made visible only when complete (``trainers.resume_point`` picks the one to resume)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from envs.fr_client import FRClient
from rl_mask.checkpoint import atomic_write_text, save_checkpoint
from trainers.resume_point import resume_point

KEEP_CHECKPOINTS = 2


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a resume would restore (see ``trainers.resume_point``)."""
    point = resume_point(run_dir)
    return point.path if point else None


def holds_run(run_dir: Path) -> bool:
    """A folder with a checkpoint or a summary is a run: a fresh start there is refused."""
    root = run_dir / "checkpoints"
    return (run_dir / "summary.json").exists() or (root / "latest").exists() or any(root.glob("iter_*"))


def write_checkpoint(run_dir: Path, algo, fr: FRClient, state: dict) -> Path:
    """Algorithm + FR state + counters in one folder, made visible only when complete."""
    root = run_dir / "checkpoints"
    name = f"iter_{state['iteration']:06d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # msgpack, not pickle: resuming never unpickles anything from the run folder.
    algo.save_to_path(str((tmp / "algo").resolve()), use_msgpack=True)
    save_checkpoint(fr.call("get_state"), tmp / "fr_state.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(root / "latest", name)
    for old in sorted(root.glob("iter_*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final

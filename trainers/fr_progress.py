"""How many FR steps a restarted FR actor lost, counted exactly rather than hidden.

The FR actor autosaves its full state every ``rl.fr_autosave_every`` FR steps (a full save
every step costs about 20 ms for 6 MB on a local disk, more on shared storage, against a
10-100 ms step). After a crash Ray restarts it from the last autosave, so the steps taken
since then are gone: the env runners got rewards for them, the FR network forgets them. To
say how many, the actor also writes its step count to a tiny file after every step: one
fixed-size record rewritten in place with a single ``pwrite`` (about 5 us; a write and rename
took 2 ms here), no fsync: it survives the process, which is what crashes (on the loss of a
whole node the last few steps may go uncounted). The restarted actor compares it with the
step it restored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def progress_path(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve() / "checkpoints" / "fr_progress.json"


RECORD = 64  # bytes: {"fr_step": N, "steps_lost": M} padded with spaces


class FRProgress:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def read(self) -> dict | None:
        """``{"fr_step", "steps_lost"}`` the last process wrote, or None (first start)."""
        try:
            data = json.loads(self.path.read_bytes()[:RECORD])
            return {"fr_step": int(data["fr_step"]), "steps_lost": int(data["steps_lost"])}
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # a write cut short: count nothing rather than guess
            return None

    def write(self, fr_step: int, steps_lost: int) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        record = json.dumps({"fr_step": fr_step, "steps_lost": steps_lost}).encode().ljust(RECORD)
        os.pwrite(self._fd, record, 0)

    def lost_since(self, restored_step: int, carried: int) -> tuple[int, int]:
        """``(lost now, lost in all)`` for a process that starts at ``restored_step``."""
        last = self.read()
        if last is None:
            return 0, carried
        now = max(0, last["fr_step"] - restored_step)
        return now, max(carried, last["steps_lost"]) + now

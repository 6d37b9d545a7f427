"""How many FR steps a restarted FR actor lost, counted exactly rather than hidden.

The FR actor autosaves its full state every ``rl.fr_autosave_every`` FR steps (a full save
every step costs about 20 ms for 6 MB on a local disk, more on shared storage, against a
10-100 ms step). After a crash Ray restarts it from the last autosave, so the steps taken
since then are gone: the env runners got rewards for them, the FR network forgets them. To
say how many, the actor also writes its step count to a tiny file after every step (one
small write and a rename, no fsync: it survives the process, which is what crashes); the
restarted actor compares it with the step it restored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def progress_path(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve() / "checkpoints" / "fr_progress.json"


class FRProgress:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")

    def read(self) -> dict | None:
        """``{"fr_step", "steps_lost"}`` the last process wrote, or None (first start)."""
        try:
            data = json.loads(self.path.read_text())
            return {"fr_step": int(data["fr_step"]), "steps_lost": int(data["steps_lost"])}
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # a write cut short: count nothing rather than guess
            return None

    def write(self, fr_step: int, steps_lost: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp.write_text(json.dumps({"fr_step": fr_step, "steps_lost": steps_lost}))
        os.replace(self._tmp, self.path)

    def lost_since(self, restored_step: int, carried: int) -> tuple[int, int]:
        """``(lost now, lost in all)`` for a process that starts at ``restored_step``."""
        last = self.read()
        if last is None:
            return 0, carried
        now = max(0, last["fr_step"] - restored_step)
        return now, max(carried, last["steps_lost"]) + now

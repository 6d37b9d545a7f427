"""A local Ray for one run, started outside the driver's process group.

``ray.init()`` starts the GCS, the raylet and their workers as children in the driver's
process group. ``timeout``, Ctrl-C in a terminal and batch schedulers signal that whole group:
Ray's daemons die at once, and the driver, which is finishing its iteration to write a
checkpoint (``trainers.shutdown``), loses its object store and writes nothing. So a run that
needs a local Ray starts one with ``ray start --head --block`` in a session of its own, where a
signal to the driver's group does not reach it, and joins it. The driver stops it when the run
ends, however it ends; if the driver itself is killed outright, the kernel ends the ``ray
start`` process (``PR_SET_PDEATHSIG``) and Ray's own fate-sharing takes its daemons with it.
Nothing of the run's Ray outlives the run.

The head runs without a dashboard, with token authentication (``RAY_AUTH_MODE=token`` unless
the caller set the mode), as ``ray.init`` does for a new local cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = "This command will now block forever"
START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Run by a fresh (single-threaded) interpreter in the new session, then exec'd into ``ray start``:
# the kernel sends it SIGKILL when the driver dies (the setting survives exec); a driver that died
# before the call is caught by the parent-pid check.
DIE_WITH_DRIVER = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGKILL); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


class LocalRay:
    """``ray start --head --block`` in its own session; ``address`` to join; ``stop()`` ends it all."""

    def __init__(self, wait: bool = True):
        """Starts the head; ``wait=False`` returns while it comes up (call ``wait_started()``)."""
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rlm-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.address = f"127.0.0.1:{_free_port()}"
        env = dict(os.environ)
        # Token auth as for a new ``ray.init`` cluster: the head writes ~/.ray/auth_token if there is
        # none, and this driver (mode unset) turns token auth on when it finds it.
        env.setdefault("RAY_AUTH_MODE", "token")
        # No drain on stop: Ray 2.60's head waits up to 30 s on SIGTERM for its node to drain (for
        # Serve traffic); this head is stopped only after the run's driver has let go of it.
        env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
        # ``ray start`` through this interpreter, not the ``ray`` script on PATH or beside it: the
        # head starts its workers with its own interpreter, and a script's shebang may name another
        # environment's (a copied or moved venv), whose rl_mask the trials would then import.
        cmd = [
            sys.executable, "-c", DIE_WITH_DRIVER, str(os.getpid()),
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            f"--port={self.address.split(':')[1]}", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
        ]
        self.log = self.temp_dir / "ray-start.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        if wait:
            self.wait_started()

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while STARTED not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"the local Ray head did not start (ray start exited {self.proc.returncode}):\n{tail}")
            time.sleep(0.2)

    def stop(self, grace_s: float = 10.0) -> None:
        """End the head and every process of its session (GCS, raylet, workers)."""
        group = self.proc.pid  # start_new_session made it the leader of its own group
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:  # the leader is gone; take whatever of its group remains
                time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

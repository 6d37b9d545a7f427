"""CPU threads that sleep while they wait: ``OMP_WAIT_POLICY=PASSIVE`` for every process we start.

torch's CPU kernels run in libgomp (OpenMP) parallel regions. By default an idle libgomp
thread spins for a while waiting for the next region, which is fine on a machine of its own
and ruinous on a shared one: beside any other busy process (an env runner, the attacker,
Ray's daemons, a test next door) the spinning threads hold the cores the others need, and
each region then waits for a thread the OS has descheduled. Measured on 2 cores beside other
work (``benchmarks/omp_wait.py``): an FR step loop with 2 threads ran at 27-36 images/s with
the default wait policy and 430-600 with passive waits.

libgomp reads the variable once, when torch is first imported, so it is set at the entry
points (the ``rl-mask`` command, the tests), before torch loads, and handed to the Ray
actors we start through their runtime environment; a value the user exported is kept.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def thread_env() -> dict[str, str]:
    """The variable for a process we start (a Ray actor's ``runtime_env``): the caller's choice, else passive."""
    return {WAIT_POLICY: os.environ.get(WAIT_POLICY, "PASSIVE")}


def prefer_passive_waits() -> bool:
    """Passive waits for this process (unless the user chose) and every process it starts.
    False when torch is loaded already: too late for this process, still right for its children."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
    return "torch" not in sys.modules

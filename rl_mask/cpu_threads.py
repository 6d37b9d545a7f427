"""torch's CPU threads in our processes: how the FR actor's wait between parallel regions
(``rl.fr_wait_policy``), and how many the driver's PPO update takes (``rl.learner_threads``).

torch's CPU kernels run in libgomp (OpenMP) parallel regions, and by default an idle libgomp
thread spins for a while before it sleeps. Alone on its cores that is the fastest choice;
beside another busy process it is ruinous: the spinning threads hold the cores the other
needs, and each region waits for a thread the OS has descheduled. ``OMP_WAIT_POLICY=PASSIVE``
makes them sleep at once. Measured on 2 cores (``benchmarks/omp_wait.py``, FR steps of 64
rows, 2 threads; ``benchmarks/results/omp_wait_*.json``):

=====================  =============  ==========================================
FR images/s            alone (quiet)  beside a busy 1-thread owner process
=====================  =============  ==========================================
libgomp default        856-985        115-148 (27 on a machine loaded besides)
PASSIVE                631-641        480-485 (319)
=====================  =============  ==========================================

In the adaptive pipeline on those 2 cores (``benchmarks/fr_scaling.py``, one env runner, 64-row
steps) a passive FR actor made 518 FR images/s against 495 with the default, and 418 against
327 with the sampled attacker beside it. Neither is right everywhere: ``rl.fr_wait_policy``
sets it for the FR actors (PASSIVE by default: on CPU they share their node with env runners;
ACTIVE for an FR actor alone on a CPU node; empty: the driver's environment), and the driver's own
``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` are forwarded to the actors it starts, which do not
inherit the driver's environment on a cluster. libgomp reads them once, when torch loads.

The driver's PPO update (RLlib's local learner) runs on minibatches of a few dozen rows: each
op is too small to share between threads, and every parallel region waits for a thread that
may have to preempt an actor on another core. On 2 cores beside the busy attacker it took
1.33 s an iteration with 2 threads and 0.18 s with 1 (0.2 s with 2 and no attacker).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

THREAD_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
WAIT_POLICIES = ("", "PASSIVE", "ACTIVE")


def runtime_env(wait_policy: str = "") -> dict:
    """Ray actor options for an actor we start: the driver's threading variables, with
    ``wait_policy`` (when given) as its ``OMP_WAIT_POLICY``; none when there is nothing to set
    (no runtime env of its own: such an actor starts 0.7 s sooner)."""
    env = {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ}
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    return {"runtime_env": {"env_vars": env}} if env else {}


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """This process's torch CPU threads set to ``threads`` inside the block (None: unchanged),
    and back to what they were after it, also when it raises."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)

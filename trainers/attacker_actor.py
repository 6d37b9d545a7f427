"""The Ray actor that hosts the attacker in the loop (``rl_mask.attacks.online``).

One per run, named (explicit namespace) so env runners on any node find it; every env runner
sends it the ``ProtectedBatch`` it sent the FR server, with the batch's settings. It is built
from an ``AttackerSetup`` (``rl_mask.protocol``), never from the owner's ``Config``. It asks for
a GPU only when the cluster has one to spare beyond the FR workers' (CPU otherwise). Ray
restarts it after a crash (``max_restarts=-1``); it then warms its decoder up again: the
attacker is a measuring instrument, and a restarted one is at worst weaker for a while.
With ``rl.attacker_mode=sampled`` no env step waits for it: on CPU it runs under Linux's
idle scheduling class (``SCHED_IDLE``: it gets a core only when nothing else wants one; nice
10 still took a share of the FR step's cores), and the FR workers keep the cores it would hold
only for its sampled share.
"""

from __future__ import annotations

import os

import ray
import torch

from rl_mask.attacks.online import OnlineAttacker
from rl_mask.config import Config
from rl_mask.cpu_threads import runtime_env
from rl_mask.owner.messages import attacker_setup
from rl_mask.protocol import AttackerSetup


def idle_priority() -> None:
    """This process (and the threads it starts from now on) to the idle scheduling class where
    the OS has one (Linux), else nice 10."""
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(10)


class AttackerActorImpl:
    def __init__(self, setup: dict, public: torch.Tensor, threads: int = 1):
        torch.set_num_threads(threads)
        device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        setup = AttackerSetup.from_dict(setup)
        if device == "cpu" and setup.mode == "sampled":
            idle_priority()  # off the critical path: idle cores only
        self.attacker = OnlineAttacker.from_setup(setup, public, device)

    def observe(self, batch, settings, crossed_since=()) -> dict:
        return self.attacker.observe(batch, settings, crossed_since)

    def set_train_steps(self, steps: int) -> int:
        return self.attacker.set_train_steps(steps)

    def status(self) -> dict:
        return self.attacker.info()

    def info(self) -> dict:
        return {**self.attacker.info(), "node_id": ray.get_runtime_context().get_node_id(), "threads": torch.get_num_threads(), "pid": os.getpid()}


AttackerActor = ray.remote(AttackerActorImpl)


def attacker_num_gpus(cfg: Config) -> float:
    """-1 = auto: one GPU if the cluster has one beyond what the FR workers take, else CPU."""
    rl = cfg.rl
    if rl.attacker_num_gpus >= 0:
        return rl.attacker_num_gpus
    gpus = ray.cluster_resources().get("GPU", 0)
    fr = rl.fr_workers * (rl.fr_num_gpus if rl.fr_num_gpus >= 0 else (1.0 if gpus >= 1 else 0.0))
    return 1.0 if gpus - fr >= 1 else 0.0


def attacker_cores(cfg: Config, threads: int) -> int:
    """Cores a CPU attacker holds on its node: its threads, or with ``rl.attacker_mode=sampled``
    its sampled share of them (rounded: at a quarter of the batches, none)."""
    return threads if cfg.rl.attacker_mode == "exact" else round(threads * cfg.rl.attacker_sample_rate)


def create_attacker_actor(cfg: Config, public: torch.Tensor, name: str, namespace: str):
    return AttackerActor.options(
        name=name, namespace=namespace, num_cpus=cfg.rl.attacker_num_cpus, num_gpus=attacker_num_gpus(cfg), max_restarts=-1, max_task_retries=-1, **runtime_env()
    ).remote(attacker_setup(cfg).to_dict(), public, cfg.rl.attacker_threads)

"""The Ray actor that hosts and trains the shared FR network.

One per run, named (with an explicit namespace) so env runners on any node find it. It asks
for a GPU when the cluster has one (fractions allowed) and runs on CPU otherwise; its CPU
request defaults to 0 so it never blocks placement on a small machine. With ``max_restarts``
Ray restarts it after a crash; the new process reloads the FR state it last autosaved, and
calls in flight are retried (``max_task_retries``), so env runners just see a slow step.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import ray
import torch

from rl_mask.config import Config
from rl_mask.protocol import TrainingSetup
from rl_mask.run_folder import autosave_path
from rl_mask.server.service import FRService


class FRActorImpl(FRService):
    """``FRService`` in an actor: picks its device and threads, reports where it runs."""

    def __init__(self, setup: dict, run_dir: str, autosave_every: int, threads: int = 0):
        torch.set_num_threads(threads or os.cpu_count() or 1)
        device = torch.device("cuda") if ray.get_gpu_ids() and torch.cuda.is_available() else torch.device("cpu")
        # The server is told only the TrainingSetup (no config with a face path in it).
        super().__init__(TrainingSetup.from_dict(setup), device, autosave_path=autosave_path(run_dir), autosave_every=autosave_every)

    def pid(self) -> int:
        return os.getpid()

    def rendezvous(self) -> str:
        """Where the data-parallel group meets: this node's address and a free port."""
        from rl_mask.server.data_parallel import free_port

        return f"tcp://{ray.util.get_node_ip_address()}:{free_port()}"

    def info(self) -> dict:
        ctx = ray.get_runtime_context()
        with warnings.catch_warnings():  # Ray's property reads a deprecated actor_id internally
            warnings.simplefilter("ignore")
            restarted = bool(ctx.was_current_actor_reconstructed)
        # A restarted actor says so, and which autosaved FR state it reloaded (restored_from).
        return {**super().info(), "node_id": ctx.get_node_id(), "restarted": restarted}


FRActor = ray.remote(FRActorImpl)


def fr_num_gpus(requested: float) -> float:
    """-1 = auto: one GPU if the cluster has any, else CPU."""
    if requested >= 0:
        return requested
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def create_fr_actor(cfg: Config, setup: TrainingSetup, run_dir: str | Path, name: str, namespace: str, rank: int = 0):
    rl = cfg.rl
    return FRActor.options(
        name=name,
        namespace=namespace,
        num_cpus=rl.fr_num_cpus,
        num_gpus=fr_num_gpus(rl.fr_num_gpus),
        max_restarts=rl.fr_max_restarts,
        max_task_retries=-1 if rl.fr_max_restarts != 0 else 0,
    ).remote(setup.to_dict(), str(Path(run_dir).resolve()), rl.fr_autosave_every if rank == 0 else 0, rl.fr_threads)

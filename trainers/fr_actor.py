"""The Ray actor that hosts and trains the shared FR network.

One per run, named (with an explicit namespace) so env runners on any node find it. It asks
for a GPU when the cluster has one (fractions allowed) and runs on CPU otherwise; its CPU
request defaults to 0 so it never blocks placement on a small machine. With ``max_restarts``
Ray restarts it after a crash; the new process reloads the FR state it last autosaved, and
calls in flight are retried (``max_task_retries``). The FR steps taken after that autosave
are lost (at most ``rl.fr_autosave_every - 1`` per restart): the actor counts them
(``trainers.fr_progress``) and reports the total as ``fr_steps_lost_to_restarts``.
With ``fr.rows_per_step`` the actor takes concurrent calls (a threaded actor), so that the
batches every env runner has in flight queue up for one aggregated step
(``rl_mask.server.step_queue``); the service's lock serialises everything that touches the network.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import ray
import torch

from rl_mask.config import Config
from rl_mask.cpu_threads import runtime_env
from rl_mask.protocol import TrainingSetup
from rl_mask.run_folder import autosave_path
from rl_mask.server.service import FRService
from trainers.fr_progress import FRProgress, progress_path


class FRActorImpl(FRService):
    """``FRService`` in an actor: picks its device and threads, reports where it runs."""

    def __init__(self, setup: dict, run_dir: str, autosave_every: int, threads: int = 0):
        self.steps_lost = 0  # FR steps lost to restarts, over the whole run (resumes included)
        self.threads = threads or os.cpu_count() or 1
        self.step_threads: int | None = None  # torch threads the last FR step ran with
        torch.set_num_threads(self.threads)
        device = torch.device("cuda") if ray.get_gpu_ids() and torch.cuda.is_available() else torch.device("cpu")
        # The server is told only the TrainingSetup (no config with a face path in it).
        setup = TrainingSetup.from_dict(setup)
        super().__init__(setup, device, autosave_path=autosave_path(run_dir), autosave_every=autosave_every, step_wait_s=setup.fr.step_wait_ms / 1000, step_thread=True)
        # Worker 0 (the one that autosaves) keeps the step counter the group's losses are counted by.
        self.progress = FRProgress(progress_path(run_dir)) if autosave_every else None
        if self.progress is not None:
            lost_now, self.steps_lost = self.progress.lost_since(self.trainer.step, self.steps_lost)
            if lost_now:
                print(f"FR actor restarted at FR step {self.trainer.step}: {lost_now} FR step(s) since the last autosave are lost ({self.steps_lost} in this run)", flush=True)
            self.progress.write(self.trainer.step, self.steps_lost)

    def train_messages(self, batches: list) -> list[dict]:
        # The step queue's stepper thread keeps the OpenMP team it first made: a later
        # ``set_threads`` (run on another of the actor's threads) reaches it here.
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        self.step_threads = torch.get_num_threads()
        return super().train_messages(batches)

    def after_step(self) -> None:
        if self.progress is not None:
            self.progress.write(self.trainer.step, self.steps_lost)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps_lost_to_restarts": self.steps_lost}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.steps_lost = int(state.get("steps_lost_to_restarts", 0))

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if self.progress is not None:
            self.progress.write(self.trainer.step, self.steps_lost)

    def pid(self) -> int:
        return os.getpid()

    def set_threads(self, threads: int) -> int:
        """Torch threads from the next FR step on (FR workers sharing a node split its cores)."""
        self.threads = max(1, int(threads))
        torch.set_num_threads(self.threads)
        return self.threads

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
        return {
            **super().info(),
            "node_id": ctx.get_node_id(),
            "node_cpus": os.cpu_count() or 1,
            "threads": self.threads,
            "step_threads": self.step_threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "restarted": restarted,
            "steps_lost_to_restarts": self.steps_lost,
        }


FRActor = ray.remote(FRActorImpl)


def fr_num_gpus(requested: float) -> float:
    """-1 = auto: one GPU if the cluster has any, else CPU."""
    if requested >= 0:
        return requested
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return 1.0
    # Looked up once: a GPU node the autoscaler adds later is not used (ask for 1 to wait for it).
    print("rl-mask: no GPU in the cluster now, the FR actor runs on CPU (rl.fr_num_gpus=1 waits for a GPU node)", flush=True)
    return 0.0


def fr_concurrency(cfg: Config) -> int:
    """Concurrent calls the FR actor takes: 1 without aggregation; with it, every batch the env
    runners can have in flight (each waits in the step queue) and a few calls besides."""
    rl = cfg.rl
    return 1 if cfg.fr.rows_per_step == 0 else max(1, rl.num_env_runners) * rl.max_inflight + 4


def create_fr_actor(cfg: Config, setup: TrainingSetup, run_dir: str | Path, name: str, namespace: str, rank: int = 0):
    rl = cfg.rl
    return FRActor.options(
        max_concurrency=fr_concurrency(cfg),
        name=name,
        namespace=namespace,
        num_cpus=rl.fr_num_cpus,
        num_gpus=fr_num_gpus(rl.fr_num_gpus),
        max_restarts=rl.fr_max_restarts,
        max_task_retries=-1 if rl.fr_max_restarts != 0 else 0,
        **runtime_env(rl.fr_wait_policy),  # how its threads wait (rl_mask.cpu_threads)
    ).remote(setup.to_dict(), str(Path(run_dir).resolve()), rl.fr_autosave_every if rank == 0 else 0, rl.fr_threads)

"""The FR server as ``rl.fr_workers`` Ray actors training one network (data parallel).

Worker r is the named actor ``NAME-r``; env runners reach them all through
``envs.fr_client.FRClient`` (a batch is split into one shard per worker). The group forms a
``torch.distributed`` process group (``rl_mask.server.data_parallel``) whose worker 0
broadcasts its weights. A worker restarted by Ray after a crash comes back outside the group:
``heal()`` (called by the run loop between iterations) copies worker 0's full state (weights,
optimizer, counters) to it and re-forms the group, so it rejoins with the group's weights.
With one worker this is the single FR actor of before. Workers on CPU that share a node split
its cores (``rl.fr_threads=0``), leaving those of a CPU attacker on the node: two processes
with all the cores each fight for them (measured on 2 cores: an FR step slows by 43% beside a
single-threaded load of 30% of one core).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import ray

from rl_mask.config import Config
from rl_mask.protocol import TrainingSetup
from trainers.fr_actor import create_fr_actor


def worker_names(name: str, workers: int) -> list[str]:
    return [name] if workers == 1 else [f"{name}-{r}" for r in range(workers)]


class FRGroup:
    def __init__(self, cfg: Config, setup: TrainingSetup, run_dir: str | Path, name: str, namespace: str, wait: bool = True):
        """Starts the workers; ``wait=False`` returns while they start (call ``ready()``), so
        that the caller can start other actors beside them."""
        self.names = worker_names(name, cfg.rl.fr_workers)
        self.actors = [create_fr_actor(cfg, setup, run_dir, n, namespace, rank=r) for r, n in enumerate(self.names)]
        self.reformed = 0
        self.threads = cfg.rl.fr_threads
        self.reserved: Counter = Counter()  # cores other CPU actors (the attacker) hold, per node
        if wait:
            self.ready()

    def ready(self) -> None:
        """Waits for the workers, shares out their nodes' cores and forms the group."""
        self.share_cores()
        if len(self.actors) > 1:
            self.form()

    def reserve(self, node_id: str, cores: int) -> None:
        """Another actor computes on ``cores`` of the node's CPUs: the FR workers there leave them."""
        self.reserved[node_id] += cores
        self.share_cores()

    def share_cores(self, infos: list[dict] | None = None) -> None:
        """With ``rl.fr_threads=0``: each CPU worker takes (its node's cores - reserved ones) /
        CPU workers on the node, at least one (a restarted worker starts with every core)."""
        if self.threads:
            return
        infos = infos or ray.get([a.info.remote() for a in self.actors])
        on_cpu = [i["device"] == "cpu" for i in infos]
        per_node = Counter(i["node_id"] for i, cpu in zip(infos, on_cpu) if cpu)
        wanted = [max(1, (i["node_cpus"] - self.reserved[i["node_id"]]) // per_node[i["node_id"]]) if cpu else i["threads"] for i, cpu in zip(infos, on_cpu)]
        ray.get([a.set_threads.remote(w) for a, i, w in zip(self.actors, infos, wanted) if w != i["threads"]])

    def form(self) -> None:
        init = ray.get(self.actors[0].rendezvous.remote())
        ray.get([a.join_group.remote(init, r, len(self.actors)) for r, a in enumerate(self.actors)])

    def heal(self) -> bool:
        """Bring restarted workers back into the group with worker 0's state; True if any was."""
        infos = ray.get([a.info.remote() for a in self.actors])
        self.share_cores(infos)  # a restarted worker starts with every core again
        if len(self.actors) == 1:
            return False
        lost = [r for r, i in enumerate(infos) if not i["in_group"]]
        if not lost:
            return False
        source = next(r for r in range(len(self.actors)) if r not in lost)
        state = ray.get(self.actors[source].get_state.remote())
        ray.get([self.actors[r].set_state.remote(state) for r in lost])
        self.form()
        self.reformed += 1
        return True

    def kill(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)

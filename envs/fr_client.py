"""How the data owner's side calls the FR server (or the attacker in the loop): a local
object, one Ray actor, or a data-parallel group of them, alike.

With ``N`` FR workers (``rl.fr_workers``) a ``ProtectedBatch`` is split row-wise into N
shards, one per worker; the workers all-reduce their gradients (``rl_mask.server.data_parallel``)
and take one step together, so the batch's loss is the mean of the shards' losses. Every
other call goes to worker 0. ``submit`` returns at once (Ray) so the caller can prepare its
next batch while the server computes (``result`` waits).
"""

from __future__ import annotations

from typing import Any

import torch

from rl_mask.protocol import ProtectedBatch

#: Services hosted in this process (debug mode: env, learner, FR network and attacker in one
#: process), by name; env configs name them with ``fr_local`` / ``attacker_local`` (configs
#: are deep-copied, so they carry names, not objects).
LOCAL_SERVICES: dict[str, Any] = {}


def shard_batch(batch: ProtectedBatch, n: int) -> list[ProtectedBatch]:
    """``n`` contiguous row shards of a batch (the data-parallel split)."""
    if n == 1:
        return [batch]
    parts = [torch.tensor_split(t, n) for t in (batch.inputs, batch.labels, batch.weights)]
    return [ProtectedBatch(*p) for p in zip(*parts)]


def combine_step_results(results: list[dict]) -> dict:
    """One data-parallel step's answer: worker 0's status, the batch loss (mean over shards)."""
    return {**results[0], "loss": float(sum(r["loss"] for r in results) / len(results))}


class FRClient:
    def __init__(self, target: Any = None, actor_names: list[str] | str | None = None, namespace: str | None = None, local_name: str | None = None):
        self._targets = None if target is None else (list(target) if isinstance(target, (list, tuple)) else [target])
        self._actor_names = [actor_names] if isinstance(actor_names, str) else actor_names
        self._namespace = namespace
        self._local_name = local_name

    @property
    def targets(self) -> list[Any]:
        if self._targets is None:
            if self._local_name is not None:
                self._targets = [LOCAL_SERVICES[self._local_name]]
            else:
                import ray

                self._targets = [ray.get_actor(name, namespace=self._namespace) for name in self._actor_names]
        return self._targets

    @property
    def target(self) -> Any:
        """Worker 0 (the only one, unless data-parallel)."""
        return self.targets[0]

    def submit(self, method: str, *args: Any) -> Any:
        """Start a call; ``result`` gives its answer. ``train_step`` goes to every worker."""
        targets = self.targets
        if method == "train_step" and len(targets) > 1:
            shards = shard_batch(args[0], len(targets))
            return ("group", [getattr(t, method).remote(s) for t, s in zip(targets, shards)])
        fn = getattr(targets[0], method)
        if hasattr(fn, "remote"):
            return ("ref", fn.remote(*args))
        return ("value", fn(*args))

    @staticmethod
    def result(handle: Any) -> Any:
        kind, value = handle
        if kind == "value":
            return value
        import ray

        if kind == "group":
            return combine_step_results(ray.get(value))
        return ray.get(value)

    @staticmethod
    def done(handle: Any) -> bool:
        """Whether ``result`` would answer at once."""
        kind, value = handle
        if kind == "value":
            return True
        import ray

        ready, _ = ray.wait(value if kind == "group" else [value], num_returns=len(value) if kind == "group" else 1, timeout=0)
        return len(ready) == (len(value) if kind == "group" else 1)

    def call(self, method: str, *args: Any) -> Any:
        return self.result(self.submit(method, *args))

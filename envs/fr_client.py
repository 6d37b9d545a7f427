"""How the data owner's side calls the FR server (or the attacker in the loop): a local
object, one Ray actor, or a data-parallel group of them, alike.

With ``N`` FR workers (``rl.fr_workers``) a ``ProtectedBatch`` is split row-wise into N
shards, one per worker; the workers all-reduce their gradients (``rl_mask.server.data_parallel``)
and take one step together, so the batch's loss is the mean of the shards' losses. Every
other call goes to worker 0. ``submit`` returns at once (Ray) so the caller can prepare its
next batch while the server computes (``result`` waits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rl_mask.protocol import ProtectedBatch

#: Services hosted in this process (debug mode: env, learner, FR network and attacker in one
#: process), by name; an ``Endpoint`` names them (RLlib deep-copies env configs, so they carry
#: names, not objects).
LOCAL_SERVICES: dict[str, Any] = {}


@dataclass(frozen=True)
class Endpoint:
    """Where a service (the FR server, the attacker in the loop) is reached: exactly one of
    named Ray ``actors`` (env runners on any node find them), a ``local`` name in
    ``LOCAL_SERVICES`` (debug mode), or a ``service`` object handed over directly (an object
    or actor handle, for code that builds the env itself; not for RLlib's env configs)."""

    actors: tuple[str, ...] = ()
    namespace: str | None = None
    local: str | None = None
    service: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "actors", (self.actors,) if isinstance(self.actors, str) else tuple(self.actors))
        given = [name for name in ("actors", "local", "service") if getattr(self, name) not in (None, ())]
        if len(given) != 1:
            raise ValueError(f"Endpoint needs exactly one of actors, local, service; got {given or 'none'}")
        if not all(isinstance(a, str) and a for a in self.actors):
            raise ValueError(f"Endpoint.actors={self.actors!r}: actor names must be non-empty strings")
        if self.local is not None and not (isinstance(self.local, str) and self.local):
            raise ValueError(f"Endpoint.local={self.local!r}: a name in LOCAL_SERVICES must be a non-empty string")

    def client(self) -> "FRClient":
        return FRClient(self.service, list(self.actors) or None, self.namespace, self.local)


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

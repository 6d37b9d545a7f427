"""Where a run's FR server and attacker in the loop live: one interface, two hosts.

``LocalRuntime`` (debug mode) hosts them in this process (``envs.fr_client.LOCAL_SERVICES``):
env, learner and FR network in one process, so breakpoints work everywhere and nothing is
transferred; it has no recovery saves (a crash ends the run; ``--resume`` starts from its
checkpoint). ``RayRuntime`` starts them as named Ray actors (``trainers.fr_group``,
``trainers.attacker_actor``) that env runners on any node reach, leaves a CPU attacker its
cores, and heals the FR group between iterations. The run loop (``trainers.train``) sees
only the interface: the FR client, the attacker client (or None), the env wiring, ``heal``
and ``close``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import ray
import torch

from envs.fr_client import LOCAL_SERVICES, Endpoint, FRClient
from envs.wiring import EnvWiring
from rl_mask.attacks.online import OnlineAttacker
from rl_mask.config import Config, ConfigError
from rl_mask.owner.messages import attacker_setup
from rl_mask.protocol import TrainingSetup
from rl_mask.server.service import FRService
from trainers.attacker_actor import attacker_cores, create_attacker_actor
from trainers.fr_group import FRGroup


def unique_name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


class Runtime:
    """The FR server and the attacker in the loop of one run, and how env runners reach them."""

    fr: FRClient
    attacker: FRClient | None
    fr_endpoint: Endpoint
    attacker_endpoint: Endpoint | None

    @staticmethod
    def check(cfg: Config) -> None:
        """Refuse a config this runtime cannot host, before anything is loaded or started."""

    @classmethod
    def start(cls, cfg: Config, setup: TrainingSetup, public: torch.Tensor, *, run_dir: str | Path, namespace: str) -> "Runtime":
        """Start the services of a run (``public``: the attacker's own faces; ``run_dir``: where
        FR actors autosave; ``namespace``: of named Ray actors)."""
        raise NotImplementedError

    def wiring(self, cfg: Config, *, judge: str | None, run_dir: str | Path, total_fr_steps: int) -> EnvWiring:
        """The env runners' wiring to this runtime's services."""
        return EnvWiring(cfg, self.fr_endpoint, self.attacker_endpoint, judge=judge, run_dir=str(run_dir), total_fr_steps=total_fr_steps)

    def heal(self) -> bool:
        """Bring restarted FR workers back into step; True if any was."""
        return False

    def close(self) -> None:
        """Release the services (idempotent)."""


class LocalRuntime(Runtime):
    """FR service and attacker hosted in this process (debug mode), the same ``FRService`` the actor hosts."""

    @staticmethod
    def check(cfg: Config) -> None:
        if cfg.rl.fr_workers != 1:
            raise ConfigError(f"rl.fr_workers={cfg.rl.fr_workers}: debug mode hosts one FR network in this process; use a Ray run for data-parallel FR workers")

    def __init__(self, cfg: Config, setup: TrainingSetup, public: torch.Tensor):
        self.check(cfg)
        self._names = [unique_name("fr")]
        self.fr_endpoint = Endpoint(local=self._names[0])
        self.attacker_endpoint = None
        try:
            LOCAL_SERVICES[self._names[0]] = FRService(setup)
            if cfg.rl.attacker_in_loop:
                self._names.append(unique_name("attacker"))
                LOCAL_SERVICES[self._names[1]] = OnlineAttacker.from_setup(attacker_setup(cfg), public)
                self.attacker_endpoint = Endpoint(local=self._names[1])
        except BaseException:
            self.close()
            raise
        self.fr = self.fr_endpoint.client()
        self.attacker = None if self.attacker_endpoint is None else self.attacker_endpoint.client()

    @classmethod
    def start(cls, cfg: Config, setup: TrainingSetup, public: torch.Tensor, *, run_dir: str | Path, namespace: str) -> "LocalRuntime":
        return cls(cfg, setup, public)  # nothing autosaved, nothing named in Ray

    def close(self) -> None:
        for name in self._names:
            LOCAL_SERVICES.pop(name, None)


class RayRuntime(Runtime):
    """``rl.fr_workers`` FR actors (one data-parallel group) and an attacker actor, named in ``namespace``."""

    def __init__(self, cfg: Config, setup: TrainingSetup, public: torch.Tensor, run_dir: str | Path, namespace: str):
        self.group: FRGroup | None = None
        self.attacker = None
        self.attacker_endpoint = None
        try:
            # The attacker starts beside the FR workers (each process's start is mostly imports).
            self.group = FRGroup(cfg, setup, run_dir, unique_name("fr"), namespace, wait=False)
            self.fr_endpoint = Endpoint(actors=tuple(self.group.names), namespace=namespace)
            self.fr = FRClient(self.group.actors)
            if cfg.rl.attacker_in_loop:
                name = unique_name("attacker")
                self.attacker = FRClient(create_attacker_actor(cfg, public, name, namespace))
                self.attacker_endpoint = Endpoint(actors=(name,), namespace=namespace)
            self.group.ready()
            if self.attacker is not None:
                where = self.attacker.call("info")
                if where["device"] == "cpu":  # the FR workers on its node leave it its cores
                    self.group.reserve(where["node_id"], attacker_cores(cfg, where["threads"]))
        except BaseException:
            self.close()
            raise

    @classmethod
    def start(cls, cfg: Config, setup: TrainingSetup, public: torch.Tensor, *, run_dir: str | Path, namespace: str) -> "RayRuntime":
        return cls(cfg, setup, public, run_dir, namespace)

    def heal(self) -> bool:
        if not self.group.heal():
            return False
        print(f"rl-mask: FR group re-formed after a worker restart ({self.group.reformed} so far)", flush=True)
        return True

    def close(self) -> None:
        if self.group is not None:
            self.group.kill()
            self.group = None
        if self.attacker is not None:
            ray.kill(self.attacker.target, no_restart=True)
            self.attacker = None

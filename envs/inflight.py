"""Batches in flight: ``rl.max_inflight`` sub-envs per env runner, stepped together.

A plain vector env steps its sub-envs one after another, and each step waits for its FR
step, so the FR server sits idle during every RPC round trip and every batch preparation.
Here a step first *sends* every sub-env's protected batch (the FR server queues them), then
draws every sub-env's next batch, then *receives* the answers in order: up to
``max_inflight`` batches per runner are queued at the server at once, and the next batches
are drawn while the server computes (after every send: an aggregated FR step waits for all
of them).

The sub-envs share the owner's validation score of the FR network (``envs.validation``):
one fetch and score per ``rl.eval_every`` FR steps serves them all.

Every reward still belongs to the step that earned it (the FR loss of that very batch):
each sub-env is its own episode stream, so PPO's bookkeeping (GAE per episode) is unchanged.
Resets follow gymnasium's next-step autoreset, as RLlib's env runner expects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import concatenate, iterate

from envs.hybrid_masking import HybridMaskingEnv


class InflightVectorEnv(SyncVectorEnv):
    def __init__(self, env_fns, **kwargs):
        super().__init__(env_fns, **kwargs)
        shared = self.envs[0].unwrapped.validation  # one FR network: scored once per window (envs.validation)
        for env in self.envs[1:]:
            env.unwrapped.validation = shared

    def step(self, actions):
        actions = list(iterate(self.action_space, actions))
        infos: dict[str, Any] = {}
        pending: dict[int, tuple] = {}
        for i, env in enumerate(self.envs):  # send everything first ...
            if not self._autoreset_envs[i]:
                pending[i] = env.unwrapped.send(actions[i])
        for i in pending:  # ... draw the next batches while the server computes ...
            self.envs[i].unwrapped.draw_next()
        for i, env in enumerate(self.envs):  # ... then collect, in order
            if self._autoreset_envs[i]:
                self._env_obs[i], env_info = env.reset()
                self._rewards[i], self._terminations[i], self._truncations[i] = 0.0, False, False
            else:
                self._env_obs[i], self._rewards[i], self._terminations[i], self._truncations[i], env_info = env.unwrapped.receive(pending[i])
            infos = self._add_info(infos, env_info, i)
        self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
        self._autoreset_envs = np.logical_or(self._terminations, self._truncations)
        return (self._observations.copy(), np.copy(self._rewards), np.copy(self._terminations), np.copy(self._truncations), infos)


def inflight_env(env_config: dict, worker_index: int, max_inflight: int) -> InflightVectorEnv:
    """``max_inflight`` sub-envs of one env runner, each with its own (worker, vector) seed."""

    def sub(vector_index: int):
        return lambda: HybridMaskingEnv({**dict(env_config), "worker_index": worker_index, "vector_index": vector_index})

    return InflightVectorEnv([sub(v) for v in range(max_inflight)], autoreset_mode=AutoresetMode.NEXT_STEP)

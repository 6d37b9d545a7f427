"""RLlib's single-agent env runner, building our in-flight vector env (``envs.inflight``).

RLlib's own vectorisation hands every sub-env the same ``EnvContext`` (so the same vector
index and seed) and steps them one after another; this runner gives each sub-env its worker
and vector index and steps them with ``rl.max_inflight`` batches in flight.
"""

from __future__ import annotations

from gymnasium.wrappers.vector import DictInfoToList
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from envs.inflight import inflight_env


class InflightEnvRunner(SingleAgentEnvRunner):
    def make_env(self) -> None:
        if self.env is not None:
            self.env.close()
        n = self.config.num_envs_per_env_runner
        self.env = DictInfoToList(inflight_env(self.config.env_config, self.worker_index, n))
        self.num_envs = n
        self._needs_initial_reset = True
        make_callback(
            "on_environment_created",
            callbacks_objects=self._callbacks,
            callbacks_functions=self.config.callbacks_on_environment_created,
            kwargs=dict(env_runner=self, metrics_logger=self.metrics, env=self.env.unwrapped, env_context=self.config.env_config),
        )

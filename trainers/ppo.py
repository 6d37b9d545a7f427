"""RLlib PPO (new API stack) for the strategy policy: every hyperparameter from ``cfg.rl``."""

from __future__ import annotations

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

from envs.hybrid_masking import HybridMaskingEnv
from envs.wiring import WIRING_KEY, EnvWiring
from rl_mask.config import Config
from trainers.env_runner import InflightEnvRunner


def total_fr_steps(cfg: Config) -> int:
    """FR steps the run plans: the FR learning-rate schedule's length. One per env step, or with
    aggregated steps (``fr.rows_per_step``) as many as full steps take the run's rows; steps that
    start before they are full (``fr.step_wait_ms``) end the schedule early, at its floor."""
    env_steps = cfg.rl.iterations * cfg.rl.train_batch_size
    if cfg.fr.rows_per_step == 0:
        return env_steps
    per_step = cfg.fr.rows_per_step // cfg.fr.batch_size  # whole batches: one is never split
    return -(-env_steps // per_step)


def build_ppo_config(wiring: EnvWiring) -> PPOConfig:
    """PPO whose envs are wired by ``wiring`` (its endpoints carry names: RLlib copies it to
    every env runner)."""
    rl = wiring.config.rl
    env_config = {WIRING_KEY: wiring}
    fragment = max(1, rl.train_batch_size // (max(1, rl.num_env_runners) * rl.max_inflight))
    return (
        PPOConfig()
        .environment(HybridMaskingEnv, env_config=env_config, normalize_actions=False, clip_actions=False)
        .env_runners(
            num_env_runners=rl.num_env_runners,
            # Each sub-env keeps one protected batch in flight (envs.inflight).
            env_runner_cls=InflightEnvRunner,
            num_envs_per_env_runner=rl.max_inflight,
            num_cpus_per_env_runner=rl.num_cpus_per_env_runner,
            rollout_fragment_length=fragment,
            sample_timeout_s=rl.sample_timeout_s,
        )
        .learners(num_learners=rl.num_learners, num_gpus_per_learner=0)
        .training(
            lr=rl.lr,
            gamma=rl.gamma,
            lambda_=rl.gae_lambda,
            train_batch_size_per_learner=rl.train_batch_size,
            minibatch_size=rl.minibatch_size,
            num_epochs=rl.num_epochs,
            entropy_coeff=rl.entropy_coeff,
            # FR losses are O(10) and returns O(100): do not clip the value loss at RLlib's 10.
            vf_clip_param=1e4,
        )
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(rl.hidden), fcnet_activation="tanh", vf_share_layers=False))
        .fault_tolerance(
            restart_failed_env_runners=True,
            max_num_env_runner_restarts=rl.env_runner_max_restarts,
            delay_between_env_runner_restarts_s=1.0,
        )
        .debugging(seed=rl.seed, log_level="WARN")
    )

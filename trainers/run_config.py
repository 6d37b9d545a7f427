"""The config an ``rl-mask train`` run uses: debug mode's overrides, a resumed run's own config."""

from __future__ import annotations

from pathlib import Path

from rl_mask.config import Config, ConfigError, load_config


def quick_policy_overrides() -> list[str]:
    """The small PPO budget of debug mode, also each policy's budget in ``rl-mask sweep --quick``
    (whose policies the sweeps measured with the exact attacker in the loop)."""
    return [
        "rl.num_env_runners=0",
        "rl.max_inflight=1",
        "rl.num_learners=0",
        "rl.train_batch_size=96",
        "rl.minibatch_size=32",
        "rl.iterations=6",
        "rl.policy_eval_steps=32",
        "rl.judge_steps=100",
        "rl.attacker_warmup_steps=50",
    ]


def debug_overrides() -> list[str]:
    """Local single-node mode: one process for env + learner, small batches, and the sampled
    attacker in the loop (it learns from every batch's settings but attacks and is judged on a
    quarter of them): on 2 cores the exact attacker, serial with the FR step in one process,
    took the run over 3 minutes."""
    return quick_policy_overrides() + ["rl.attacker_mode=sampled", "rl.attacker_sample_rate=0.25"]


def resolve_config(config_file: str | None, overrides: list[str], debug: bool, resume_dir: str | None) -> Config:
    """The config a run uses: a resumed run starts from its own saved config."""
    if resume_dir:
        saved = Path(resume_dir) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume {resume_dir}: no config.yaml there, not a run folder")
        if config_file:
            raise ConfigError("--resume uses the run's own config.yaml; change fields with --set instead of --config")
        return load_config(saved, overrides)
    return load_config(config_file, (debug_overrides() if debug else []) + overrides)

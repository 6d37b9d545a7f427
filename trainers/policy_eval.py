"""The trained policy judged on a frozen FR state: its action distribution and its reward
against a uniform-random policy on the same batches."""

from __future__ import annotations

import math

import numpy as np
import torch

from envs.fr_client import FRClient
from envs.hybrid_masking import HybridMaskingEnv
from rl_mask.config import Config


def policy_probs(module, obs: np.ndarray) -> np.ndarray:
    """Action probabilities of the trained policy for observations ``[N, D]``."""
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)})
        return torch.softmax(out["action_dist_inputs"], dim=-1).numpy()


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def score_policy(cfg: Config, fr: FRClient, module, steps: int, seed: int) -> dict:
    """The trained policy vs a uniform-random one on the same, frozen FR state and batches."""
    out = {}
    for name in ("policy", "uniform"):
        env = HybridMaskingEnv({"config": cfg, "fr_service": fr.target, "train_fr": False, "worker_index": 99, "vector_index": 0})
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        rewards, ks, probs = [], [], []
        for _ in range(steps):
            if name == "policy":
                p = policy_probs(module, obs[None])[0]
                probs.append(p)
                action = int(rng.choice(len(p), p=p))
            else:
                action = int(rng.integers(len(cfg.rl.k_choices)))
            obs, reward, _, truncated, info = env.step(action)
            rewards.append(reward)
            ks.append(info["k"])
            if truncated:
                obs, _ = env.reset()
        out[name] = {"mean_reward": float(np.mean(rewards)), "mean_k": float(np.mean(ks))}
        if probs:
            mean_p = np.mean(probs, axis=0)
            out["k_distribution"] = {str(k): round(float(p), 4) for k, p in zip(cfg.rl.k_choices, mean_p)}
            out["k_entropy"] = entropy(mean_p)
            out["k_entropy_uniform"] = math.log(len(cfg.rl.k_choices))
    out["reward_gain_over_uniform"] = out["policy"]["mean_reward"] - out["uniform"]["mean_reward"]
    return out

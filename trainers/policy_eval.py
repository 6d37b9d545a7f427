"""The trained policy judged on a frozen FR state: its distribution over every knob, and its
reward and leak against a uniform-random policy on the same batches."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from envs.fr_client import Endpoint, FRClient
from envs.hybrid_masking import HybridMaskingEnv
from envs.wiring import EnvWiring
from rl_mask.config import Config
from rl_mask.mask.settings import DIMENSIONS, SettingsSpace


def policy_probs(module, obs: np.ndarray, nvec: np.ndarray) -> list[np.ndarray]:
    """Per knob, the trained policy's action probabilities ``[N, n_knob]`` for observations ``[N, D]``
    (a ``MultiDiscrete`` action: one categorical per knob, logits side by side)."""
    with torch.no_grad():
        out = module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)})
        logits = torch.split(out["action_dist_inputs"], [int(n) for n in nvec], dim=-1)
        return [torch.softmax(part, dim=-1).numpy() for part in logits]


def sample_action(module, obs: np.ndarray, nvec: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """One action drawn from the trained policy for one observation, and its per-knob probabilities."""
    probs = [p[0] for p in policy_probs(module, obs[None], nvec)]
    return np.array([rng.choice(len(p), p=p / p.sum()) for p in probs]), probs


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def score_policy(cfg: Config, fr: FRClient, module, steps: int, seed: int, attacker=None, judge=None) -> dict:
    """The trained policy vs a uniform-random one on the same, frozen FR state and batches,
    against the same, frozen attacker in the loop (when given)."""
    frozen = FRClient(attacker).call("set_train_steps", 0) if attacker is not None else None
    try:
        return _score(cfg, fr, module, steps, seed, attacker, judge)
    finally:
        if frozen is not None:
            FRClient(attacker).call("set_train_steps", frozen)


def _score(cfg: Config, fr: FRClient, module, steps: int, seed: int, attacker, judge) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg.rl.attacker_mode = "exact"  # the comparison judges every batch, whatever the run sampled
    space = SettingsSpace.from_config(cfg.rl)
    nvec = space.nvec
    out: dict = {}
    for name in ("policy", "uniform"):
        wiring = EnvWiring(cfg, Endpoint(service=fr.target), None if attacker is None else Endpoint(service=attacker), judge=judge, train_fr=False)
        env = HybridMaskingEnv(wiring.env_config(worker_index=99))
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        rewards, leaks, probs, chosen = [], [], [], []
        for _ in range(steps):
            if name == "policy":
                action, p = sample_action(module, obs, nvec, rng)
                probs.append(p)
            else:
                action = np.array([rng.integers(n) for n in nvec])
            obs, reward, _, truncated, info = env.step(action)
            rewards.append(reward)
            leaks.append(info.get("leak_judged", info.get("leak", float("nan"))))  # the batch's own, not its setting's estimate
            chosen.append(info)
            if truncated:
                obs, _ = env.reset()
        out[name] = {"mean_reward": float(np.mean(rewards)), "mean_leak": float(np.mean(leaks)), "mean_k": float(np.mean([c["k"] for c in chosen]))}
        if probs:
            dist = {}
            for d, dim in enumerate(DIMENSIONS):
                mean_p = np.mean([p[d] for p in probs], axis=0)
                dist[dim] = {str(v): round(float(q), 4) for v, q in zip(space.choices[dim], mean_p)}
            out["action_distribution"] = dist
            out["k_distribution"] = dist["k"]
            out["k_entropy"] = entropy(np.array(list(dist["k"].values())))
            out["k_entropy_uniform"] = math.log(len(cfg.rl.k_choices))
    out["reward_gain_over_uniform"] = out["policy"]["mean_reward"] - out["uniform"]["mean_reward"]
    return out

"""The adaptive policy's reward, shared by the env and the TensorBoard logging.

reward = FR loss on the mixed batch (privacy: the harder the batch is to learn from, the
less it gives away) - lambda * max(0, accuracy_floor - validation accuracy) (utility). Without
the utility term the policy collapses to the largest k.
"""

from __future__ import annotations


def utility_penalty(val_acc: float, floor: float, lam: float) -> float:
    return lam * max(0.0, floor - val_acc)


def reward_parts(loss: float, val_acc: float, floor: float, lam: float) -> dict:
    penalty = utility_penalty(val_acc, floor, lam)
    return {"reward": loss - penalty, "reward_privacy": loss, "reward_utility_penalty": penalty}

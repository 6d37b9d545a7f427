"""The adaptive policy's reward, shared by the env and the TensorBoard logging.

``rl.reward``:

- ``leak`` (default): -leak_lambda * leak - utility penalty. ``leak`` is measured, not
  proxied: the fraction of the batch's rows whose reconstruction by the attacker in the loop
  the owner's judge names as one of the row's identities (``rl_mask.owner.judge.privacy.batch_leak``).
- ``paper`` (arXiv:2403.10558): FR loss on the mixed batch - utility penalty. The loss's
  floor (the entropy of the mixing weights) rises with k whatever the leak, so this reward
  mostly asks for the largest k; kept as a config choice and a benchmark row.
- ``leak+paper``: FR loss - leak_lambda * leak - utility penalty.

utility penalty = utility_lambda * max(0, accuracy_floor - validation accuracy). Without it
the policy would trade all utility for privacy.
"""

from __future__ import annotations


def utility_penalty(val_acc: float, floor: float, lam: float) -> float:
    return lam * max(0.0, floor - val_acc)


def reward_parts(loss: float, val_acc: float, leak: float, rl) -> dict:
    """The reward of one step and its terms (``rl``: the run's ``RLConfig``)."""
    penalty = utility_penalty(val_acc, rl.accuracy_floor, rl.utility_lambda)
    fr_term = loss if rl.reward in ("paper", "leak+paper") else 0.0
    leak_term = rl.leak_lambda * leak if rl.reward in ("leak", "leak+paper") else 0.0
    return {"reward": fr_term - leak_term - penalty, "reward_fr_loss": fr_term, "reward_leak": leak_term, "reward_utility_penalty": penalty}

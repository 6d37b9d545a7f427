"""A trained adaptive policy deployed for the benchmark, with the same FR budget as every row.

The policy of an ``rl-mask train`` run (``policy.pt``) protects the batches of a *fresh* FR
network trained for exactly the benchmark's ``fr_steps`` (one batch per step, as every other
row), with a fresh attacker in the loop of the same kind as in training (warmed up as at the
start of training: the policy's observation includes its leak, and the run's own judge
scores it; the run's trained attacker is not kept). Every batch it sends is the env's (one batch path),
and the first ``keep`` are kept with the owner's record (originals, provenance, settings), so
the benchmark attacks exactly the batches that crossed, not a re-draw from a distribution.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from tqdm.auto import tqdm

from envs.fr_client import Endpoint
from envs.hybrid_masking import HybridMaskingEnv
from envs.wiring import EnvWiring
from rl_mask.attacks.online import OnlineAttacker
from rl_mask.checkpoint import load_checkpoint, save_checkpoint
from rl_mask.config import Config, ConfigError
from rl_mask.mask.defences import HybridDefence
from rl_mask.mask.settings import DIMENSIONS
from rl_mask.owner.defences import build_defence, hybrid_defence
from rl_mask.owner.messages import attacker_setup, training_setup
from rl_mask.owner.stream import PrivateData, TrainingBatch
from rl_mask.run_folder import read_run
from rl_mask.server.service import FRService
from trainers.policy_eval import sample_action


@dataclass
class DeployedPolicy:
    defence: HybridDefence  # the deployed mask; its settings pool: what the policy chose, batch by batch
    fr_weights: Path
    batches: list[TrainingBatch]  # the first batches as sent, with the owner's record
    note: str
    action_distribution: dict[str, dict[str, float]]  # per knob, the fraction of batches with each value
    fr_steps: int  # FR steps the fresh network took (the benchmark's budget)


def load_policy(run_dir: Path, env: HybridMaskingEnv, hidden: list[int]):
    """The run's RL module, rebuilt for the env's spaces and the run's validated ``rl.hidden``
    (never sizes read from the weights file), weights from ``policy.pt`` (no unpickling)."""
    state = load_checkpoint(run_dir / "policy.pt", required=("state_dict", "hidden"))
    choices = state.get("choices")
    if choices is not None and choices != env.space.choices:
        raise ConfigError(f"{run_dir}/policy.pt was trained for the knobs {choices}, its config.yaml gives {env.space.choices}")
    if not isinstance(state["hidden"], (list, tuple)) or list(state["hidden"]) != list(hidden):
        raise ConfigError(f"{run_dir}/policy.pt records hidden layers {state['hidden']!r}, its config.yaml gives rl.hidden={hidden}")
    spec = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config=DefaultModelConfig(fcnet_hiddens=list(hidden), fcnet_activation="tanh", vf_share_layers=False),
        inference_only=True,  # policy.pt holds the env runners' module: no value function
    )
    module = spec.build()
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise ConfigError(f"{run_dir}/policy.pt does not fit this version's policy network ({exc})") from None
    return module.eval()


def deploy_policy(run_dir: str | Path, cfg: Config, data: PrivateData, out_dir: Path, fr_steps: int, keep: int, seed: int, progress: bool = False) -> DeployedPolicy:
    """Train a fresh FR network for ``fr_steps`` on batches the run's policy protects."""
    run = read_run(run_dir)
    d, r = cfg.data, run.cfg.data
    for name in ("height", "width", "color", "num_private", "train_per_identity", "val_per_identity", "split_seed"):
        if getattr(d, name) != getattr(r, name):  # the run's judge and policy know the run's private set
            raise ConfigError(f"--adaptive-run {run.path}: data.{name}={getattr(r, name)!r} differs from this benchmark's {getattr(d, name)!r}")
    if Path(d.resolved_root()).resolve() != Path(r.resolved_root()).resolve():
        raise ConfigError(f"--adaptive-run {run.path}: data.root {r.resolved_root()} differs from this benchmark's {d.resolved_root()}")
    owner_options = ("key", "key_seed", "eval_flip", "eval_extra_removed")  # the run's own: it is deployed as it was trained
    ours, theirs = ({k: v for k, v in vars(m).items() if k not in owner_options} for m in (cfg.mask, run.cfg.mask))
    if ours != theirs:
        raise ConfigError(f"--adaptive-run {run.path}: its mask {theirs} differs from this benchmark's {ours}")
    dcfg = copy.deepcopy(cfg)
    dcfg.mask = copy.deepcopy(run.cfg.mask)
    dcfg.rl = copy.deepcopy(run.cfg.rl)
    dcfg.rl.num_env_runners = 0
    dcfg.rl.horizon = max(1, dcfg.rl.horizon)
    dcfg.fr.steps = fr_steps
    dcfg.validate()
    defence = build_defence(dcfg, "adaptive", k_choices=dcfg.rl.k_choices)  # as the env builds it
    service = FRService(training_setup(dcfg, defence, data, total_steps=fr_steps))
    attacker, judge = None, None
    if dcfg.rl.attacker_in_loop:  # the policy observes the leak as it did in training
        judge = run.path / "judge.pt"
        if not judge.is_file():
            raise ConfigError(f"--adaptive-run {run.path}: no judge.pt (a run from before the attacker in the loop?)")
        attacker = Endpoint(service=OnlineAttacker.from_setup(attacker_setup(dcfg), data.split.public.float_images()))
    wiring = EnvWiring(dcfg, Endpoint(service=service), attacker, judge=None if judge is None else str(judge), total_fr_steps=fr_steps, keep_batches=keep)
    env = HybridMaskingEnv(wiring.env_config())
    module = load_policy(run.path, env, dcfg.rl.hidden)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    chosen = []
    for _ in tqdm(range(fr_steps), desc="adaptive (deployed policy)", disable=not progress, dynamic_ncols=True, leave=False):
        action, _ = sample_action(module, obs, env.nvec, rng)
        obs, _, _, truncated, info = env.step(action)
        chosen.append(env.space.decode(action))
        if truncated:
            obs, _ = env.reset()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(service.trained_model().file_content(), out_dir / "fr.pt")
    deployed = hybrid_defence(dcfg, "adaptive", dcfg.rl.k_choices, settings_pool=chosen)
    top = ", ".join(f"{s.k}/{s.flip}/{s.extra_removed}/{s.alpha}/{s.labels}: {n}" for s, n in Counter(chosen).most_common(3))
    note = (
        f"learned policy from {run.path} (reward {run.cfg.rl.reward!r}), deployed on a fresh FR network for this benchmark's {fr_steps} FR steps "
        f"{'with' if attacker else 'without'} the attacker in the loop; the attacked batches are exactly those it sent; most chosen settings (k/flip/extra removed/alpha/labels: batches): {top}"
    )
    return DeployedPolicy(deployed, out_dir / "fr.pt", env.kept_batches, note, action_counts(deployed), service.fr_step)


def action_counts(defence: HybridDefence) -> dict[str, dict[str, float]]:
    """Per knob, the fraction of the deployed policy's batches with each value."""
    pool = defence.settings_pool
    return {dim: {str(v): round(n / len(pool), 4) for v, n in sorted(Counter(getattr(s, dim) for s in pool).items())} for dim in DIMENSIONS}

"""The Gymnasium env on a local FR service (no Ray): API conformance, reward, seeding.

These use the paper's reward (FR loss) and no attacker; the attacker in the loop and the
knobs of the action are tested in test_adaptive_knobs.py."""

import copy

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from envs.fr_client import Endpoint
from envs.hybrid_masking import HybridMaskingEnv
from envs.inflight import inflight_env
from envs.reward import reward_parts
from envs.wiring import EnvWiring
from rl_mask.config import Config
from rl_mask.mask.settings import MaskSettings, SettingsSpace
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import prepare_data
from rl_mask.server.service import FRService
from rl_mask.use.held_out import score_trained


@pytest.fixture(scope="module")
def small_cfg():
    cfg = Config()
    cfg.fr.batch_size = 16
    cfg.rl.horizon = 4
    cfg.rl.eval_every = 3
    cfg.rl.reward = "paper"
    return cfg.validate()


def action(cfg, k: int, **knobs):
    """The action index vector that selects k (and other knobs; defaults: the first choice)."""
    space = SettingsSpace.from_config(cfg.rl)
    values = {d: space.choices[d][0] for d in ("flip", "extra_removed", "alpha", "labels")}
    return space.encode(MaskSettings(k=k, **{**values, **knobs}))


def fresh_service(small_cfg) -> FRService:
    data = prepare_data(small_cfg)
    defence = build_defence(small_cfg, "adaptive", k_choices=small_cfg.rl.k_choices)
    return FRService(training_setup(small_cfg, defence, data, total_steps=100), device="cpu")


@pytest.fixture(scope="module")
def service(small_cfg):
    return fresh_service(small_cfg)


def make_env(cfg, fr, worker_index: int = 0, **wiring):
    return HybridMaskingEnv(EnvWiring(cfg, Endpoint(service=fr), total_fr_steps=100, **wiring).env_config(worker_index=worker_index))


def test_check_env_passes(small_cfg, service):
    # Gymnasium's checker steps twice from the same seed and expects the same observation;
    # a training env moves the shared FR network in between (non-stationary by design), so
    # the checker runs on the same env with the FR network frozen (scored, not trained).
    check_env(make_env(small_cfg, service, train_fr=False), skip_render_check=True)


def test_step_trains_fr_and_rewards_loss_minus_penalty(small_cfg, service):
    env = make_env(small_cfg, service)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    step0 = service.fr_step
    a = action(small_cfg, 6)
    for _ in range(4):
        obs, reward, terminated, truncated, info = env.step(a)
        assert info["k"] == 6 and not terminated
        expected = reward_parts(info["fr_loss"], info["val_acc"], 0.0, small_cfg.rl)
        assert reward == pytest.approx(expected["reward"]) == pytest.approx(info["fr_loss"] - info["reward_utility_penalty"])
        assert info["reward_utility_penalty"] == pytest.approx(small_cfg.rl.utility_lambda * max(0.0, 0.8 - info["val_acc"]))
        assert obs[7 + 4] == 1.0 and obs[7:11].sum() == 0  # previous action, one-hot per knob (k first)
        assert obs[3] == pytest.approx(info["val_acc"]) and obs[4] == pytest.approx(info["val_acc"] - 0.8)
        assert info["val_fr_step"] // small_cfg.rl.eval_every == info["fr_step"] // small_cfg.rl.eval_every  # scored in this window
    assert truncated and service.fr_step == step0 + 4  # fixed horizon; one FR step per env step
    assert obs[-4] == 0.0  # band 0-5 is removed by the default mask
    assert (obs[-3:] > 0).all()


def test_the_env_scores_validation_on_its_own_side(small_cfg):
    """The validation accuracy in the reward is the owner's own score of the network the
    server hands back, on validation faces that never cross (every FR step here)."""
    cfg = copy.deepcopy(small_cfg)
    cfg.rl.eval_every = 1
    service = fresh_service(cfg)
    env = make_env(cfg, service)
    env.reset(seed=2)
    for _ in range(6):
        info = env.step(action(cfg, 2))[4]
        assert info["val_fr_step"] == info["fr_step"] == service.fr_step
        assert info["val_acc"] == score_trained(service.trained_model(), env.validation.held_out)["identification_acc"]
    assert len(env.validation.held_out) == len(prepare_data(cfg).val_labels)


def test_higher_k_costs_the_fr_network_more(small_cfg):
    """The privacy reward is real: on the same FR state, mixing more faces gives a higher loss.
    An FR network of its own (not the module's, which the other tests move), trained long
    enough and scored on enough batches that the gap is not noise: with 40 steps and 6
    batches it ranged 0.05-0.56 over 8 owner keys and went negative once in CI; with these
    sizes 0.25-0.65."""
    service = fresh_service(small_cfg)
    trainer = make_env(small_cfg, service, worker_index=5)
    trainer.reset(seed=1)
    for t in range(80):  # an FR network that has learned something
        trainer.step(action(small_cfg, small_cfg.rl.k_choices[t % 5]))
    losses = {}
    for k in (2, 6):
        env = make_env(small_cfg, service, train_fr=False)
        env.reset(seed=0)
        losses[k] = np.mean([env.step(action(small_cfg, k))[4]["fr_loss"] for _ in range(12)])
    assert losses[6] > losses[2]


def test_a_runner_sends_every_batch_in_flight_before_it_draws_the_next_ones(small_cfg, service):
    """An aggregated FR step starts once the runner's batches are all queued, so no sub-env
    may draw its next batch (the owner's slowest work) before the last one is sent; the
    answers are collected after the draws, and each sub-env's observation describes its own
    next batch."""
    vec = inflight_env(EnvWiring(small_cfg, Endpoint(service=service), total_fr_steps=100).env_config(worker_index=0), 0, 3)
    vec.reset(seed=4)
    calls = []
    for i, env in enumerate(vec.envs):
        for name in ("send", "_draw_batch", "receive"):
            real = getattr(env.unwrapped, name)
            setattr(env.unwrapped, name, lambda *a, _real=real, _call=(name, i): calls.append(_call) or _real(*a))
    a = action(small_cfg, 2)
    obs, rewards, _, _, infos = vec.step(np.stack([a] * 3))
    assert [c[0] for c in calls] == ["send"] * 3 + ["_draw_batch"] * 3 + ["receive"] * 3
    assert [c[1] for c in calls] == [0, 1, 2] * 3
    for i, env in enumerate(vec.envs):
        assert np.allclose(obs[i][-4:], env.unwrapped._band_energy(), atol=1e-6)
        assert rewards[i] == pytest.approx(infos["fr_loss"][i] - infos["reward_utility_penalty"][i])


def test_a_runners_sub_envs_fetch_and_score_the_network_once_per_window(small_cfg, service):
    """The sub-envs of one runner observe the same FR network: one fetch and score per
    ``rl.eval_every`` FR steps serves them all (each keeps the FR server waiting), and every
    sub-env's reward reads the score of the window its step ended in."""
    cfg = copy.deepcopy(small_cfg)
    cfg.rl.eval_every = 2
    service = fresh_service(cfg)
    fetched = []
    real = service.trained_model
    service.trained_model = lambda: fetched.append(service.fr_step) or real()
    vec = inflight_env(EnvWiring(cfg, Endpoint(service=service), total_fr_steps=100).env_config(worker_index=0), 0, 3)
    vec.reset(seed=1)
    assert fetched == [0]  # the first sub-env's reset scored the fresh network, the others read it
    for _ in range(3):  # 3 batches a step, one FR step each (no aggregation here)
        _, _, _, _, infos = vec.step(np.stack([action(cfg, 2)] * 3))
        assert all(scored // 2 >= fr // 2 for fr, scored in zip(infos["fr_step"], infos["val_fr_step"]))  # never older than its window
    # all 3 batches of a step are sent before any answer is read: the answers of FR steps 2, 4
    # and 8 opened new windows and found the network at 3, 6 and 9; the other 6 answers read them
    assert fetched == [0, 3, 6, 9]
    assert vec.envs[0].unwrapped.validation is vec.envs[2].unwrapped.validation


def test_an_episode_opens_with_the_batch_drawn_after_the_last_one_without_drawing_again(small_cfg, service):
    """The batch drawn while the server computed the episode's last step is the next
    episode's first: a reset without a new seed draws nothing (that draw would sit on the FR
    server's critical path, every ``rl.horizon`` steps); a reset with a seed starts over."""
    env = make_env(small_cfg, service)
    env.reset(seed=3)
    for _ in range(small_cfg.rl.horizon):
        _, _, _, truncated, _ = env.step(action(small_cfg, 2))
    assert truncated
    drawn, band = env._idx, env._band
    draws = []
    real = env.stream.draw
    env.stream.draw = lambda *a: draws.append(1) or real(*a)
    obs, _ = env.reset()
    assert not draws and env._idx is drawn
    assert np.allclose(obs[-4:], band) and np.allclose(band, env._band_energy(), atol=1e-6)
    env.step(action(small_cfg, 2))
    assert len(draws) == 1  # the step sent it and drew the next
    env.reset()  # the drawn batch is unsent: kept
    assert len(draws) == 1
    env.reset(seed=3)  # a new seed: a new batch order from its start
    first = make_env(small_cfg, service)
    first.reset(seed=3)
    assert len(draws) == 1 and torch.equal(env._idx, first._idx)


def test_each_runner_has_its_own_batch_order(small_cfg, service):
    a = make_env(small_cfg, service, worker_index=1)
    b = make_env(small_cfg, service, worker_index=2)
    a2 = make_env(small_cfg, service, worker_index=1)
    a.reset(), b.reset(), a2.reset()
    assert torch.equal(a._idx, a2._idx)
    assert not torch.equal(a._idx, b._idx)


def test_bad_action_is_refused(small_cfg, service):
    env = make_env(small_cfg, service)
    env.reset()
    with pytest.raises(ValueError, match="one index per knob: k, flip"):
        env.step([9, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="one index per knob"):
        env.step(3)


def test_a_leak_reward_without_an_attacker_is_refused(small_cfg, service):
    import copy

    cfg = copy.deepcopy(small_cfg)
    cfg.rl.reward = "leak"
    with pytest.raises(ValueError, match="rl.reward='leak' needs the attacker in the loop"):
        make_env(cfg, service)

"""The typed wiring of a run without Ray: the local runtime (debug mode) and the env's wiring.

An env wired by a ``LocalRuntime`` trains the FR service that runtime hosts; bad values fail
when the wiring is made, naming the field. The Ray runtime runs in test_train_ray.py."""

import copy
import pickle

import numpy as np
import pytest

from envs.fr_client import LOCAL_SERVICES, Endpoint
from envs.hybrid_masking import HybridMaskingEnv
from envs.wiring import EnvWiring
from rl_mask.config import Config, ConfigError
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import prepare_data
from trainers.runtime import LocalRuntime


@pytest.fixture(scope="module")
def cfg():
    c = Config()
    c.fr.batch_size = 16
    c.rl.horizon = 4
    c.rl.reward = "paper"
    c.rl.attacker_in_loop = False
    return c.validate()


@pytest.fixture(scope="module")
def parts(cfg):
    data = prepare_data(cfg)
    defence = build_defence(cfg, "adaptive", k_choices=cfg.rl.k_choices)
    return data, defence, training_setup(cfg, defence, data, total_steps=100)


def test_local_runtime_hosts_the_fr_service_an_env_trains_and_releases_it(cfg, parts, tmp_path):
    data, defence, setup = parts
    runtime = LocalRuntime(cfg, setup, data.split.public.float_images())
    try:
        assert runtime.attacker is None and runtime.fr_endpoint.local in LOCAL_SERVICES
        wiring = runtime.wiring(cfg, judge=None, run_dir=tmp_path, total_fr_steps=100)
        copied = pickle.loads(pickle.dumps(wiring))  # as RLlib hands it to an env runner: names, no objects
        assert copied.fr == wiring.fr and copied.run_dir == str(tmp_path)
        env = HybridMaskingEnv(copied.env_config())
        env.reset(seed=1)
        for _ in range(2):
            env.step(np.zeros(len(env.nvec), dtype=np.int64))
        assert runtime.fr.call("status")["fr_step"] == 2  # the env's batches reached the hosted service
    finally:
        runtime.close()
    assert runtime.fr_endpoint.local not in LOCAL_SERVICES


def test_local_runtime_refuses_data_parallel_fr_workers(cfg, parts):
    data, _, setup = parts
    bad = copy.deepcopy(cfg)
    bad.rl.fr_workers = 2
    before = dict(LOCAL_SERVICES)
    with pytest.raises(ConfigError, match=r"^rl\.fr_workers=2: debug mode hosts one FR network"):
        LocalRuntime(bad, setup, data.split.public.float_images())
    assert LOCAL_SERVICES == before  # nothing hosted by the refused runtime


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"keep_batches": -1}, "EnvWiring.keep_batches=-1"),
        ({"total_fr_steps": 0}, "EnvWiring.total_fr_steps=0"),
        ({"train_fr": "yes"}, "EnvWiring.train_fr='yes'"),
        ({"fr": "fr-1234"}, "EnvWiring.fr='fr-1234'"),
        ({"attacker": Endpoint(local="attacker-1")}, "EnvWiring.judge: the attacker in the loop needs the owner's judge"),
    ],
)
def test_env_wiring_refuses_a_bad_value_naming_the_field(cfg, change, field):
    values = {"config": cfg, "fr": Endpoint(local="fr-1"), **change}
    with pytest.raises(ValueError, match="^" + field.replace(".", r"\.").replace("(", r"\(")):
        EnvWiring(**values)


def test_endpoint_takes_exactly_one_way_to_reach_a_service():
    with pytest.raises(ValueError, match="exactly one of actors, local, service; got \\['actors', 'local'\\]"):
        Endpoint(actors=("fr-1",), local="fr-1")
    with pytest.raises(ValueError, match="exactly one of .* got none"):
        Endpoint()
    assert Endpoint(actors="fr-1").actors == ("fr-1",)


@pytest.mark.skipif(not hasattr(__import__("os"), "SCHED_IDLE"), reason="Linux's idle scheduling class")
def test_the_sampled_attackers_priority_leaves_busy_cores_to_others():
    """``rl.attacker_mode=sampled`` puts the attacker's actor in the idle scheduling class, and
    the threads it starts afterwards (torch's pool) inherit it (in a child: it cannot be undone)."""
    import subprocess
    import sys

    probe = (
        "import os, threading; from trainers.attacker_actor import idle_priority; idle_priority(); out = []; "
        "t = threading.Thread(target=lambda: out.append(os.sched_getscheduler(0))); t.start(); t.join(); "
        "print(os.sched_getscheduler(0) == os.SCHED_IDLE, out[0] == os.SCHED_IDLE)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"], result.stdout


def test_torch_threads_are_set_inside_the_block_and_restored_after_it_even_on_error():
    """The driver's PPO update runs with ``rl.learner_threads`` and hands the process back as it was."""
    import torch

    from rl_mask.cpu_threads import torch_threads

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):  # debug mode: the driver also hosts the FR step
        assert torch.get_num_threads() == before

"""Data-parallel FR server: two FR workers (Ray actors, gloo on CPU) train one network."""

import json

import pytest
import ray
import torch
from test_train_ray import tiny_config

from envs.fr_client import FRClient
from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import TrainingStream, prepare_data
from rl_mask.server.trainer import trainer_for
from trainers.checkpoints import latest_checkpoint
from trainers.fr_group import FRGroup
from trainers.train import NAMESPACE, train

pytestmark = pytest.mark.ray


def tiny(**rl) -> Config:
    return tiny_config(fr_workers=2, **rl)


@pytest.fixture(scope="module")
def ray_runtime():
    ray.init(num_cpus=2, include_dashboard=False, namespace=NAMESPACE)
    yield
    ray.shutdown()


def test_two_workers_take_the_step_one_worker_takes_on_the_whole_batch(ray_runtime, tmp_path):
    cfg = tiny()
    cfg.model.dropout = 0.0  # dropout masks come from each process's own RNG
    data = prepare_data(cfg)
    defence = build_defence(cfg, "fixed-k")
    setup = training_setup(cfg, defence, data, 100)
    stream = TrainingStream(cfg, defence, data)
    batches = [stream.next().masked.protected() for _ in range(3)]
    group = FRGroup(cfg, setup, tmp_path, "fr-dp-test", NAMESPACE)
    try:
        infos = ray.get([a.info.remote() for a in group.actors])  # two CPU workers on one node share its cores
        assert [i["threads"] for i in infos] == [max(1, i["node_cpus"] // 2) for i in infos]
        client = FRClient(group.actors)
        reference = trainer_for(setup, torch.device("cpu"))
        # The workers' thread count, so float sums run in the same order: AdamW turns the
        # rounding noise of a zero gradient (a bias before BatchNorm) into full-size steps.
        threads = torch.get_num_threads()
        torch.set_num_threads(infos[0]["threads"])
        try:
            for b in batches:
                out = client.call("train_step", b)
                ref_loss = reference.train_step(b, shards=2)  # per-shard BatchNorm, as each worker has
                assert out["loss"] == pytest.approx(ref_loss, rel=1e-4)
        finally:
            torch.set_num_threads(threads)
        states = ray.get([a.get_state.remote() for a in group.actors])
        ref = reference.model.state_dict()
        params = {n for n, _ in reference.model.named_parameters()}
        for name in params:
            for s in states:
                assert torch.allclose(s["trainer"]["model"][name], ref[name], atol=1e-5, rtol=1e-4), name
        assert all(s["trainer"]["step"] == 3 for s in states)
        # one network: both workers hold the same weights
        assert all(torch.equal(states[0]["trainer"]["model"][n], states[1]["trainer"]["model"][n]) for n in params)
    finally:
        group.kill()


def test_cpu_workers_leave_the_cores_another_actor_holds(ray_runtime, tmp_path):
    cfg = tiny_config()  # one FR worker
    cfg.rl.fr_wait_policy = "ACTIVE"  # not the default: the field reaches the actor's process
    data = prepare_data(cfg)
    group = FRGroup(cfg, training_setup(cfg, build_defence(cfg, "fixed-k"), data, 100), tmp_path, "fr-cores-test", NAMESPACE)
    try:
        stream = TrainingStream(cfg, build_defence(cfg, "fixed-k"), data)
        client = FRClient(group.actors)
        client.call("train_step", stream.next().masked.protected())
        info = ray.get(group.actors[0].info.remote())
        assert info["threads"] == info["step_threads"] == info["node_cpus"]  # alone on the node: every core
        assert info["omp_wait_policy"] == "ACTIVE"
        group.reserve(info["node_id"], 1)  # e.g. the attacker in the loop, on CPU beside it
        client.call("train_step", stream.next().masked.protected())  # on the step queue's thread, made before
        after = ray.get(group.actors[0].info.remote())
        assert after["threads"] == after["step_threads"] == max(1, info["node_cpus"] - 1)
    finally:
        group.kill()


def test_two_worker_run_checkpoints_and_resumes(ray_runtime, tmp_path):
    run = tmp_path / "run"
    first = train(tiny(), run, progress=False, stop_after=1)
    assert first["iterations"] == 1 and first["fr_workers"] == 2
    saved = torch.load(latest_checkpoint(run) / "fr_state.pt", weights_only=True)["trainer"]
    done = train(tiny(), run, progress=False, resume=True)
    assert done["finished"] and done["iterations"] == 2 and done["env_steps"] == 64
    assert done["fr_steps"] >= saved["step"] + 32
    assert json.loads((run / "summary.json").read_text())["fr_workers"] == 2


def test_a_killed_worker_comes_back_with_the_groups_weights(ray_runtime, tmp_path):
    """Ray restarts a crashed FR worker outside the group; heal() hands it worker 0's full state
    and re-forms the group, and the two go on training one network."""
    import os
    import signal
    import time

    cfg = tiny()
    cfg.model.dropout = 0.0
    data = prepare_data(cfg)
    defence = build_defence(cfg, "fixed-k")
    setup = training_setup(cfg, defence, data, 100)
    stream = TrainingStream(cfg, defence, data)
    group = FRGroup(cfg, setup, tmp_path, "fr-heal-test", NAMESPACE)
    try:
        client = FRClient(group.actors)
        for _ in range(2):
            client.call("train_step", stream.next().masked.protected())
        assert not group.heal()  # nobody lost: nothing to do
        old_pid = ray.get(group.actors[1].pid.remote())
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.time() + 120
        while True:  # Ray restarts the actor (rl.fr_max_restarts); wait until it answers
            try:
                info = ray.get(group.actors[1].info.remote(), timeout=30)
                break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                assert time.time() < deadline, "the FR worker was not restarted"
                time.sleep(1)
        assert info["restarted"] and not info["in_group"] and ray.get(group.actors[1].pid.remote()) != old_pid
        assert group.heal() and group.reformed == 1
        info = ray.get(group.actors[1].info.remote())
        assert info["threads"] == max(1, info["node_cpus"] // 2)  # not every core again
        states = ray.get([a.get_state.remote() for a in group.actors])
        params = [n for n, _ in torch.nn.Module.named_parameters(trainer_for(setup, torch.device("cpu")).model)]
        assert states[1]["trainer"]["step"] == states[0]["trainer"]["step"] == 2
        assert all(torch.equal(states[0]["trainer"]["model"][n], states[1]["trainer"]["model"][n]) for n in params)
        out = client.call("train_step", stream.next().masked.protected())  # the re-formed group trains on
        assert out["fr_step"] == 3
        states = ray.get([a.get_state.remote() for a in group.actors])
        assert all(torch.equal(states[0]["trainer"]["model"][n], states[1]["trainer"]["model"][n]) for n in params)
    finally:
        group.kill()

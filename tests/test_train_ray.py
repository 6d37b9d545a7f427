"""Adaptive training on a real Ray runtime: PPO with one env runner, TensorBoard, checkpoints, resume."""

import dataclasses
import json
import os

import pytest
import ray
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import prepare_data
from rl_mask.server.trainer import load_fr_model
from trainers.checkpoints import latest_checkpoint
from trainers.fr_actor import create_fr_actor
from trainers.train import NAMESPACE, train

pytestmark = pytest.mark.ray


def tiny_config(**rl) -> Config:
    cfg = Config()
    cfg.fr.batch_size = 16
    r = cfg.rl
    r.num_env_runners = 1
    r.num_cpus_per_env_runner = 1
    r.horizon = 4
    r.train_batch_size = 32
    r.minibatch_size = 16
    r.num_epochs = 2
    r.iterations = 2
    r.eval_every = 8
    r.checkpoint_every = 1
    r.image_every = 1
    r.policy_eval_steps = 8
    # the attacker in the loop and the owner's judge, at sizes that only exercise them
    r.attacker_warmup_steps = 2
    r.attacker_rows = 8
    r.attacker_batch_size = 4
    r.judge_steps = 5
    for k, v in rl.items():
        setattr(r, k, v)
    return cfg.validate()


@pytest.fixture(scope="module")
def ray_runtime():
    ray.init(num_cpus=2, include_dashboard=False, namespace=NAMESPACE)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def short_run(ray_runtime, tmp_path_factory):
    run = tmp_path_factory.mktemp("adaptive")
    summary = train(tiny_config(), run, progress=False)
    return run, summary


def test_short_ppo_run_writes_the_run_folder(short_run):
    run, summary = short_run
    assert summary["finished"] and summary["iterations"] == 2
    assert summary["fr_host"] == "ray actor" and len(summary["env_runner_nodes"]) == 1
    assert summary["env_steps"] == 64 and summary["fr_steps"] >= 64
    assert set(summary["k_distribution"]) == {"2", "3", "4", "5", "6"}
    assert abs(sum(summary["k_distribution"].values()) - 1) < 1e-3
    dist = summary["action_distribution"]  # the learned distribution of every knob
    assert set(dist) == {"k", "flip", "extra_removed", "alpha", "labels"}
    assert set(dist["labels"]) == {"soft", "hard"} and all(abs(sum(d.values()) - 1) < 1e-3 for d in dist.values())
    assert summary["reward"] == "leak" and summary["attacker"]["batches_attacked"] >= 64
    assert (run / "judge.pt").is_file()
    assert 0 <= summary["identification_acc"] <= 1
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk["env_steps"] == 64
    model, meta = load_fr_model(run / "fr.pt")
    assert meta["input_kind"] == "freq" and meta["num_classes"] == 20
    assert (run / "checkpoints" / "latest").read_text() == "iter_000002"
    assert (latest_checkpoint(run) / "algo").is_dir()


def test_export_masked_gives_the_batches_the_env_runner_sent(short_run, tmp_path):
    import numpy as np

    from rl_mask.owner.export import export_masked

    run, summary = short_run
    meta = export_masked(run, tmp_path / "masked.npz")
    f = np.load(tmp_path / "masked.npz")
    cfg = tiny_config()
    sent = cfg.rl.record_masked_batches * cfg.rl.max_inflight  # one env runner, max_inflight sub-envs
    assert meta["exact"] is True and meta["batches"] == sent
    assert sorted(f.files) == ["inputs", "labels", "message", "owner_labels", "owner_meta", "owner_settings", "owner_sources", "owner_weights", "weights"]
    assert f["inputs"].shape[0] == sent * cfg.fr.batch_size
    real = f["owner_sources"] >= 0
    settings = json.loads(str(f["owner_settings"]))
    assert len(settings) == sent and all(s["k"] in cfg.rl.k_choices for s in settings)
    # every batch mixes its settings' k faces; the owner's labels are the identities of the recorded sources
    ks = real.reshape(sent, cfg.fr.batch_size, -1).sum(-1)
    assert ks.min(axis=1).tolist() == [s["k"] for s in settings] and (ks.min(axis=1) == ks.max(axis=1)).all()
    assert (f["owner_labels"][real] == prepare_data(cfg).train_labels.numpy()[f["owner_sources"][real]]).all()
    # what crossed: every label and weight, or (labels=hard) only the dominant identity
    crossed_k = (f["weights"] > 0).reshape(sent, cfg.fr.batch_size, -1).sum(-1).max(axis=1)
    assert crossed_k.tolist() == [s["k"] if s["labels"] == "soft" else 1 for s in settings]
    assert np.allclose(f["weights"].sum(1), 1.0, atol=1e-5)


def test_tensorboard_events_hold_our_tags(short_run):
    run, _ = short_run
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in [
        "mask/reward",
        "mask/reward_leak",
        "mask/reward_fr_loss",
        "mask/reward_utility_penalty",
        "mask/leak",
        "mask/leak/whitebox",
        "fr/loss",
        "fr/val_identification_acc",
        "mask/k_mean",
        "mask/flip_mean",
        "mask/extra_removed_mean",
        "mask/alpha_mean",
        "mask/labels_fraction/hard",
        "ppo/env_runners/episode_return_mean",
        "ppo/learner/policy_loss",
        "ppo/learner/entropy",
    ]:
        assert tag in tags["scalars"], tag
    assert "mask/k" in tags["histograms"]
    # protected views of public faces only: no private face in the logs unless rl.log_private_faces
    assert tags["images"] == ["faces/public/protected"]
    grid = acc.Images("faces/public/protected")[0]
    assert grid.height == 112 * (1 + len(tiny_config().rl.k_choices))  # rows: channel removal only, then one per k
    steps = [e.step for e in acc.Scalars("mask/k_mean")]
    assert steps == [32, 64]  # x-axis: env steps sampled
    k_mean = acc.Scalars("mask/k_mean")[0].value
    assert 2 <= k_mean <= 6
    reward = acc.Scalars("mask/reward")[0].value
    parts = -acc.Scalars("mask/reward_leak")[0].value - acc.Scalars("mask/reward_utility_penalty")[0].value
    assert reward == pytest.approx(parts, rel=1e-5)
    assert acc.Scalars("mask/reward_leak")[0].value == pytest.approx(tiny_config().rl.leak_lambda * acc.Scalars("mask/leak")[0].value, rel=1e-5)
    assert [e.step for e in acc.Scalars("mask/leak")] == [32, 64]


def test_fr_actor_state_round_trip(ray_runtime, tmp_path):
    cfg = tiny_config()
    data = prepare_data(cfg)
    defence = build_defence(cfg, "fixed-k")
    setup = training_setup(cfg, defence, data, 100)
    a = create_fr_actor(cfg, setup, tmp_path, "fr-roundtrip-a", NAMESPACE)
    b = create_fr_actor(cfg, setup, tmp_path / "b", "fr-roundtrip-b", NAMESPACE)
    try:
        batch = defence.encode_train(data.train_images[:16], data.train_labels[:16], torch.Generator().manual_seed(0)).protected()
        ray.get(a.train_step.remote(batch))
        state = ray.get(a.get_state.remote())
        ray.get(b.set_state.remote(state))
        back = ray.get(b.get_state.remote())
        for name, tensor in state["trainer"]["model"].items():
            assert torch.equal(tensor, back["trainer"]["model"][name])
        assert back["trainer"]["step"] == 1
    finally:
        ray.kill(a)
        ray.kill(b)


def test_checkpoint_resume_continues_counters_and_restores_fr_weights(ray_runtime, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config()
    first = train(cfg, run, progress=False, stop_after=1)
    assert not first["finished"] and first["iterations"] == 1 and first["env_steps"] == 32
    ckpt = latest_checkpoint(run)
    saved = torch.load(ckpt / "fr_state.pt", weights_only=True)["trainer"]
    # resume, zero more iterations: the FR network that comes back is the saved one, exactly
    again = train(cfg, run, progress=False, resume=True, stop_after=0)
    assert again["iterations"] == 1 and again["env_steps"] == 32 and again["fr_steps"] == saved["step"]
    restored = torch.load(run / "fr.pt", weights_only=True)["state_dict"]
    assert restored.keys() == saved["model"].keys()
    for name, tensor in saved["model"].items():
        assert torch.equal(restored[name], tensor), name
    # resume to the end: counters go on from the checkpoint, not from zero
    done = train(cfg, run, progress=False, resume=True)
    assert done["finished"] and done["iterations"] == 2 and done["env_steps"] == 64
    assert done["fr_steps"] >= saved["step"] + 32
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("mask/k_mean")] == [32, 64]


def test_debug_mode_runs_env_learner_and_fr_in_one_process(ray_runtime, tmp_path, monkeypatch):
    """One process; export-masked of the run equals, byte for byte, what the FR server received;
    and the paper's reward runs without the attacker in the loop (nothing of it is built)."""
    import numpy as np

    from rl_mask.owner.export import export_masked
    from rl_mask.protocol import ProtectedBatch
    from rl_mask.server.service import FRService

    received: list[ProtectedBatch] = []
    real_step = FRService.train_step

    def spy(self, batch):
        received.append(ProtectedBatch(*(t.clone() for t in (batch.inputs, batch.labels, batch.weights))))
        return real_step(self, batch)

    monkeypatch.setattr(FRService, "train_step", spy)
    summary = train(tiny_config(num_env_runners=0, iterations=1, record_masked_batches=3, max_inflight=1, reward="paper", attacker_in_loop=False), tmp_path / "debug", progress=False, debug=True)
    assert summary["finished"] and summary["env_steps"] == 32 and summary["fr_steps"] >= 32
    assert summary["attacker"] is None and not (tmp_path / "debug" / "judge.pt").exists()
    assert np.isnan(summary["policy_vs_uniform"]["policy"]["mean_leak"])  # no leak measured, none made up
    assert summary["fr_host"] == "driver process (debug)" and summary["env_runner_nodes"] == []
    model, _ = load_fr_model(tmp_path / "debug" / "fr.pt")
    assert (tmp_path / "debug" / "checkpoints" / "latest").read_text() == "iter_000001"
    assert len(received) >= 32
    export_masked(tmp_path / "debug", tmp_path / "crossed.npz")
    f = np.load(tmp_path / "crossed.npz")
    n = 16  # fr.batch_size
    assert f["inputs"].shape[0] == 3 * n
    for i, sent in enumerate(received[:3]):
        rows = slice(i * n, (i + 1) * n)
        assert f["inputs"][rows].tobytes() == sent.inputs.numpy().astype(np.float32).tobytes()
        assert np.array_equal(f["labels"][rows][:, : sent.k], sent.labels.numpy())
        assert f["weights"][rows][:, : sent.k].tobytes() == sent.weights.numpy().tobytes()


def test_fresh_run_refuses_a_used_folder(ray_runtime, short_run):
    from rl_mask.config import ConfigError

    run, _ = short_run
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        train(tiny_config(), run, progress=False)


def test_fr_actor_restarts_with_its_last_saved_weights(ray_runtime, tmp_path):
    import signal

    from rl_mask.run_folder import autosave_path

    cfg = tiny_config(fr_autosave_every=2, fr_max_restarts=1)
    data = prepare_data(cfg)
    defence = build_defence(cfg, "fixed-k")
    actor = create_fr_actor(cfg, training_setup(cfg, defence, data, 100), tmp_path, "fr-crash", NAMESPACE)
    try:
        g = torch.Generator().manual_seed(0)
        for i in range(3):
            sl = slice(16 * i, 16 * i + 16)
            ray.get(actor.train_step.remote(defence.encode_train(data.train_images[sl], data.train_labels[sl], g).protected()))
        saved = torch.load(autosave_path(tmp_path), weights_only=True)["trainer"]
        assert saved["step"] == 2
        before = ray.get(actor.info.remote())
        assert not before["restarted"] and before["fr_step"] == 3
        os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)
        after = ray.get(actor.info.remote())  # Ray restarts it; the call is retried
        assert after["restarted"] and after["pid"] != before["pid"]
        assert after["restored_step"] == 2 and after["fr_step"] == 2
        # step 3 was taken and answered, then lost with the process: counted, not hidden
        assert before["steps_lost_to_restarts"] == 0 and after["steps_lost_to_restarts"] == 1
        state = ray.get(actor.get_state.remote())
        for name, tensor in saved["model"].items():
            assert torch.equal(state["trainer"]["model"][name], tensor), name
        assert state["steps_lost_to_restarts"] == 1  # carried in autosaves and checkpoints
    finally:
        ray.kill(actor, no_restart=True)


def test_resume_refuses_pickled_algorithm_state(tmp_path):
    from rl_mask.checkpoint import CheckpointError, save_checkpoint
    from rl_mask.config import save_config

    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "iter_000001"
    (ckpt / "algo").mkdir(parents=True)
    (ckpt / "algo" / "algorithm_state.pkl").write_bytes(b"\x80\x04N.")  # would be unpickled by RLlib
    save_checkpoint({"trainer": {}}, ckpt / "fr_state.pt")
    (ckpt / "state.json").write_text('{"iteration": 1, "env_steps": 32, "wall_seconds": 1.0}')
    (run / "checkpoints" / "latest").write_text("iter_000001")
    save_config(tiny_config(), run / "config.yaml")
    with pytest.raises(CheckpointError, match="holds pickled state"):
        train(tiny_config(), run, resume=True, progress=False)


def test_resume_refuses_a_tampered_real_checkpoint_and_runs_nothing(short_run, tmp_path, cli_env):
    import shutil
    import subprocess
    import sys

    import msgpack_numpy
    import numpy as np

    from test_checkpoint_safety import Payload

    run = tmp_path / "run"
    shutil.copytree(short_run[0], run)
    ckpt = latest_checkpoint(run)  # the real checkpoint passes the scan
    # the env runner's state: RLlib decodes it on the driver and on every env runner
    target = next(p for p in sorted((ckpt / "algo").rglob("*.msgpack")) if "env_runner" in p.relative_to(ckpt).as_posix())
    state = msgpack_numpy.unpackb(target.read_bytes(), strict_map_key=False)
    marker = tmp_path / "executed"
    state["tampered"] = np.array([Payload(marker)], dtype=object)
    target.write_bytes(msgpack_numpy.packb(state))
    msgpack_numpy.unpackb(target.read_bytes(), strict_map_key=False)  # RLlib's reader runs the payload
    assert marker.exists()
    marker.unlink()
    config_before = (run / "config.yaml").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.cli", "train", "--resume", str(run), "--quiet"],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"rl-mask: error: checkpoint file {target} holds a numpy array of kind 'O'" in proc.stderr
    assert "Traceback" not in proc.stderr and "Started a local Ray instance" not in proc.stdout + proc.stderr
    assert not marker.exists()
    assert (run / "config.yaml").read_bytes() == config_before


@pytest.mark.parametrize("tamper", ["state renamed beside a pickle", "component linked to pickles outside the run"])
def test_resume_refuses_tampered_component_files_and_runs_nothing(short_run, tmp_path, cli_env, tamper):
    """RLlib would unpickle ``module_state.pkl`` when ``module_state.msgpack`` is missing, and
    follows a linked component folder: the resume refuses both, in one line, before Ray starts."""
    import pickle
    import shutil
    import subprocess
    import sys

    from test_checkpoint_safety import Payload

    run = tmp_path / "run"
    shutil.copytree(short_run[0], run)
    ckpt = latest_checkpoint(run)
    marker = tmp_path / "executed"
    payload = pickle.dumps(Payload(marker))
    if tamper.startswith("state renamed"):
        module = ckpt / "algo" / "learner_group" / "learner" / "rl_module" / "default_policy"
        (module / "module_state.msgpack").rename(module / "module_state.msgpck")
        (module / "module_state.pkl").write_bytes(payload)
        expected = f"checkpoint {ckpt / 'algo'} holds {module / 'module_state.msgpck'}, a file rl-mask's checkpoints never hold; refusing to restore it"
    else:
        outside = tmp_path / "outside"
        outside.mkdir()
        for name in ("state.pkl", "class_and_ctor_args.pkl"):
            (outside / name).write_bytes(payload)
        component = ckpt / "algo" / "env_runner"
        shutil.rmtree(component)
        component.symlink_to(outside, target_is_directory=True)
        expected = f"checkpoint {ckpt / 'algo'} holds a link, {component}; rl-mask never writes one, refusing to restore it"
    proc = subprocess.run([sys.executable, "-m", "trainers.cli", "train", "--resume", str(run), "--quiet"], env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [f"rl-mask: error: {expected}"]
    assert not marker.exists()


def test_resume_never_reads_class_and_ctor_args(ray_runtime, short_run, tmp_path):
    """RLlib writes ``class_and_ctor_args.pkl`` beside every component; only ``from_checkpoint``
    reads it. A pickled payload in every one of them runs nowhere: the resume restores from a
    private copy that never holds them, and trains on."""
    import pickle
    import shutil

    from test_checkpoint_safety import Payload

    run = tmp_path / "run"
    shutil.copytree(short_run[0], run)
    marker = tmp_path / "executed"
    planted = list((latest_checkpoint(run) / "algo").rglob("class_and_ctor_args.pkl"))
    assert len(planted) >= 5
    for path in planted:
        path.write_bytes(pickle.dumps(Payload(marker)))
    done = train(tiny_config(iterations=3), run, progress=False, resume=True)
    assert done["finished"] and done["iterations"] == 3 and done["env_steps"] == 96
    assert not marker.exists()


def test_resume_falls_back_when_the_latest_checkpoint_is_damaged(ray_runtime, short_run, tmp_path, capfd):
    import shutil

    from trainers.resume_point import resume_point

    run = tmp_path / "run"
    shutil.copytree(short_run[0], run)
    state_file = run / "checkpoints" / "iter_000002" / "algo" / "algorithm_state.msgpack"
    state_file.write_bytes(state_file.read_bytes()[:-10])  # a write cut short
    point = resume_point(run)
    assert point.path.name == "iter_000001" and point.state["iteration"] == 1
    assert "skipping damaged checkpoint iter_000002" in capfd.readouterr().err
    done = train(tiny_config(), run, progress=False, resume=True)
    assert done["finished"] and done["iterations"] == 2 and done["env_steps"] == 64
    assert (run / "checkpoints" / "latest").read_text() == "iter_000002"
    resume_point(run)  # the rewritten checkpoint reads again


def test_auto_resume_continues_a_used_out_folder_that_plain_out_refuses(ray_runtime, short_run, tmp_path, capsys):
    import shutil

    from trainers.cli import main

    run = tmp_path / "run"
    shutil.copytree(short_run[0], run)
    assert main(["train", "--out", str(run), "--quiet"]) == 2  # a retried job without --auto-resume
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    (run / "summary.json").unlink()
    assert main(["train", "--out", str(run), "--auto-resume", "--quiet", "--iterations", "3"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 3 and summary["env_steps"] == 96  # counters went on from iteration 2
    assert main(["train", "--auto-resume", "--quiet"]) == 2
    assert "--auto-resume goes with --out RUN_DIR" in capsys.readouterr().err


def test_benchmark_deploys_the_policy_and_attacks_exactly_what_it_sent(short_run, tmp_path, monkeypatch):
    """The adaptive row: the run's policy protects a fresh FR network's batches for the
    benchmark's own FR budget; the attacks get exactly those batches; best-fixed is one of the
    grid rows, chosen at the adaptive row's utility."""
    from test_benchmark import tiny_benchmark_config

    import trainers.deploy_policy as deploy_policy
    from rl_mask.attacks.label_aware import LabelAwareUnmixing
    from rl_mask.bench.benchmark import run_benchmark

    run, _ = short_run
    sent, sent_settings, attacked = [], [], []
    real_deploy = deploy_policy.deploy_policy

    def deploy(*args, **kwargs):
        out = real_deploy(*args, **kwargs)
        sent.extend(b.masked.protected() for b in out.batches)
        sent_settings.extend(dataclasses.asdict(b.masked.settings) for b in out.batches)
        return out

    real_attack = LabelAwareUnmixing.attack

    def spy_attack(self, target, progress=False):
        attacked.append(target)
        return real_attack(self, target, progress)

    monkeypatch.setattr(LabelAwareUnmixing, "attack", spy_attack)
    cfg = tiny_benchmark_config(["adaptive", "best-fixed"])
    cfg.benchmark.attacks = ["whitebox", "label-aware"]
    cfg.benchmark.quick.grid_points = 2
    results = run_benchmark(cfg, tmp_path / "bench", quick=True, adaptive_run=str(run), deploy=deploy, progress=False)
    names = [d["name"] for d in results["defences"]]
    assert names[0] == "adaptive" and names[-1] == "best-fixed" and sum(n.startswith("fixed[") for n in names) == 2
    adaptive = results["defences"][0]
    assert adaptive["replayed_batches"] is False and "deployed on a fresh FR network" in adaptive["note"]
    assert set(adaptive["action_distribution"]) == {"k", "flip", "extra_removed", "alpha", "labels"}
    # the FR network of the row trained exactly the benchmark's FR steps, as every other row
    assert [d["fr_steps"] for d in results["defences"]] == [cfg.benchmark.quick.fr_steps] * len(names)
    # the attacks got exactly the batches the deployed policy sent (attack_batches of them)
    target = attacked[0]
    assert len(target.crossed) == cfg.benchmark.quick.attack_batches == len(sent)
    for got, want in zip(target.crossed, sent):
        assert all(torch.equal(getattr(got, f), getattr(want, f)) for f in ("inputs", "labels", "weights"))
    assert target.settings is not None and all(s is not None for s in target.settings)
    assert adaptive["attacked_settings"] == sent_settings  # the row says which draws its leak is of
    best = results["defences"][-1]
    chosen = next(d for d in results["defences"] if d["name"] == best["best_fixed_of"])
    assert best["attacks"] == chosen["attacks"] and best["utility"] == chosen["utility"]

"""A real two-node Ray cluster on this machine: ray job submit, faults, resume.

The cluster is two raylets started with ``ray start`` (a head with 1 CPU, a second node
with 1 CPU), token authentication on; drivers are separate processes, as on a cluster.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rl_mask.config import default_data_root

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env(data: bool = True) -> dict:
    """Drivers and clients get RL_MASK_DATA; the raylets (and so every worker) do not."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = "token"  # the cluster and every client use ~/.ray/auth_token
    env.pop("RL_MASK_DATA", None)
    if data:
        env["RL_MASK_DATA"] = default_data_root()
    env.pop("RAY_ADDRESS", None)
    return env


def ray_cli(*args, env, check=True, timeout=120):
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True, check=check, timeout=timeout)


def stop_nodes(*temp_dirs: str, timeout: float = 15.0) -> None:
    """Stop this test's Ray nodes and nothing else: ``ray stop`` stops every Ray process on the
    machine, a sweep or job the developer is running beside the tests included (it did). A
    node's processes are those whose command line names its temp dir (raylet, GCS, dashboard,
    log monitor) and their descendants (workers and agents rename themselves)."""
    roots = [p for p in psutil.process_iter(["cmdline"]) if any(d in arg for arg in (p.info["cmdline"] or []) for d in temp_dirs)]
    procs = {p.pid: p for p in roots}
    for p in roots:
        try:
            procs.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    for p in procs.values():
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env, node_env = cluster_env(), cluster_env(data=False)
    ray_cli("get-auth-token", "--generate", env=env)
    port, dash = free_port(), free_port()
    common = ["--num-cpus", "1", "--object-store-memory", str(300 * 1024**2), "--disable-usage-stats"]
    # Each node its own temp dir, as on separate machines: two runtime-env agents sharing one
    # folder would clean up each other's unpacked job working directories.
    head_tmp, worker_tmp = tempfile.mkdtemp(prefix="rlmh"), tempfile.mkdtemp(prefix="rlmw")
    ray_cli("start", "--head", f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={head_tmp}", *common, env=node_env)
    try:
        ray_cli("start", f"--address=127.0.0.1:{port}", f"--temp-dir={worker_tmp}", *common, env=node_env)
        yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "env": env, "tmp": tmp_path_factory.mktemp("cluster")}
    finally:
        stop_nodes(head_tmp, worker_tmp)
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)


def tiny_config(path: Path, iterations: int = 2, **rl) -> Path:
    cfg = {
        "fr": {"batch_size": 16},
        "rl": {
            "num_env_runners": 2,
            "num_cpus_per_env_runner": 1,
            "horizon": 4,
            "train_batch_size": 32,
            "minibatch_size": 16,
            "num_epochs": 2,
            "iterations": iterations,
            "eval_every": 8,
            "checkpoint_every": 1,
            "image_every": 2,
            "policy_eval_steps": 8,
            "fr_autosave_every": 4,
            # the attacker in the loop and the owner's judge, at sizes that only exercise them
            "attacker_warmup_steps": 2,
            "attacker_rows": 8,
            "attacker_batch_size": 4,
            "judge_steps": 5,
            **rl,
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_driver(cluster, *args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trainers.cluster_entry", "--address", cluster["address"], "--quiet", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"driver exited ({proc.returncode}) before {what}:\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def ray_processes(title: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith(f"ray::{title}"):
            out.append(p)
    return out


def alive_actor_pids(cluster, class_name: str) -> list[int]:
    """PIDs of the live actors of a class, from Ray's state API (worker processes can carry
    an actor's title without hosting it)."""
    out = ray_cli("list", "actors", "--address", cluster["address"], "--filter", f"class_name={class_name}", "--filter", "state=ALIVE", "--format", "json", env=cluster["env"])
    return [int(a["pid"]) for a in json.loads(out.stdout)]


def finish(proc: subprocess.Popen, timeout: float = 400) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-6000:]
    return out


def iterations_done(run: Path) -> int:
    latest = run / "checkpoints" / "latest"
    return int(latest.read_text().split("_")[1]) if latest.is_file() else 0


def test_job_submit_succeeds_with_env_runners_on_both_nodes(cluster):
    # The job's code is the uploaded working dir, where no default face folder is found, and
    # RL_MASK_DATA is in the driver's environment only: the env runners and the FR actor only
    # have the root the driver resolved and put in the config. (``--data`` reaches the same
    # field: tests/test_cluster_configs.py.)
    run = cluster["tmp"] / "job-run"
    cfg = tiny_config(cluster["tmp"] / "job.yaml")
    root = default_data_root()
    entry = [f"RL_MASK_DATA={root}", "python", "-m", "trainers.cluster_entry", "--out", str(run), "--config", str(cfg), "--quiet"]
    job_id = "rl-mask-test-job"
    result = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", cluster["dashboard"], "--runtime-env", "cluster/runtime_env.yaml",
         "--submission-id", job_id, "--", *entry],
        cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=500,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    status = subprocess.run(
        [sys.executable, "-c", f"from ray.job_submission import JobSubmissionClient as C; print(C({cluster['dashboard']!r}).get_job_status({job_id!r}).value)"],
        env=cluster["env"], capture_output=True, text=True, timeout=60,
    )
    assert status.stdout.strip().splitlines()[-1] == "SUCCEEDED", status.stdout + status.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["env_steps"] == 64
    assert len(summary["env_runner_nodes"]) == 2  # one env runner on each node
    assert (run / "checkpoints" / "latest").read_text() == "iter_000002"
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "fr.pt").is_file() and (run / "config.yaml").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["root"] == str(Path(root).resolve())


def test_bad_config_fails_before_the_cluster_is_touched(cluster):
    bad = cluster["tmp"] / "bad.yaml"
    bad.write_text("rl: {k_choices: [2, 0]}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.cluster_entry", "--address", "127.0.0.1:1", "--out", str(cluster["tmp"] / "never"), "--config", str(bad)],
        cwd=REPO, env=cluster["env"], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "rl.k_choices=[2, 0] is out of range" in proc.stderr
    assert not (cluster["tmp"] / "never").exists()


def test_killing_an_env_runner_mid_run_still_completes(cluster):
    run = cluster["tmp"] / "kill-runner"
    proc = start_driver(cluster, "--out", str(run), "--config", str(tiny_config(cluster["tmp"] / "kr.yaml", iterations=4)))
    wait_for(lambda: iterations_done(run) >= 1, 300, "the first checkpoint", proc)
    runners = ray_processes("InflightEnvRunner")
    assert len(runners) == 2
    runners[0].send_signal(signal.SIGKILL)
    finish(proc)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["iterations"] == 4
    assert not runners[0].is_running()


def test_killing_the_fr_actor_mid_run_recovers_its_weights(cluster):
    run = cluster["tmp"] / "kill-fr"
    proc = start_driver(cluster, "--out", str(run), "--config", str(tiny_config(cluster["tmp"] / "kf.yaml", iterations=4)))
    wait_for(lambda: iterations_done(run) >= 1 and (run / "checkpoints" / "fr_autosave.pt").is_file(), 300, "an FR autosave", proc)
    (actor,) = [psutil.Process(pid) for pid in alive_actor_pids(cluster, "FRActorImpl")]
    actor.send_signal(signal.SIGKILL)
    finish(proc)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["iterations"] == 4
    assert summary["fr_actor_restarted"] is True
    assert summary["fr_restored_from"].endswith("fr_autosave.pt") and summary["fr_restored_step"] >= 4
    assert summary["fr_steps"] > summary["fr_restored_step"]
    # the FR steps taken after the last autosave are gone, and said so (autosave every 4 steps)
    assert 0 <= summary["fr_steps_lost_to_restarts"] < 4
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.value for e in acc.Scalars("fr/steps_lost_to_restarts")][-1] == summary["fr_steps_lost_to_restarts"]


def test_killing_the_whole_run_then_resume_continues_the_counters(cluster):
    run = cluster["tmp"] / "kill-all"
    cfg = tiny_config(cluster["tmp"] / "ka.yaml", iterations=4)
    proc = start_driver(cluster, "--out", str(run), "--config", str(cfg))
    wait_for(lambda: iterations_done(run) >= 2, 300, "two checkpoints", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run / "summary.json").exists()
    at_kill = iterations_done(run)
    state = json.loads((run / "checkpoints" / f"iter_{at_kill:06d}" / "state.json").read_text())
    resumed = start_driver(cluster, "--resume", str(run))
    finish(resumed)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["iterations"] == 4 and summary["env_steps"] == 4 * 32
    assert summary["fr_steps"] >= state["fr_steps"] + (4 - at_kill) * 32
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("mask/k_mean")]
    assert steps == [32, 64, 96, 128]  # nothing repeated or lost across the kill

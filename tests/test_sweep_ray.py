"""``rl-mask sweep`` through Ray Tune on the real faces, at budgets that only exercise it: a
two-trial sweep (a fixed grid point and a policy) stopped with SIGINT after its first trial,
resumed without rerunning it, and both trials read back with their confirmation (each is its
side's front, so both are measured again with fresh seeds); the policy is measured over two
seeds, the grid point over one. One sweep for all of it: the suite's time."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rl_mask.bench.benchmark import SEED_STRIDE
from rl_mask.bench.sweep_plan import FIXED, POLICY, read_confirmations, read_plan
from rl_mask.config import load_config
from trainers.sweep_trial import trial_dir

pytestmark = pytest.mark.ray

#: Debug-sized everything: one PPO iteration of 16 env steps, 4 FR steps per measurement.
TINY = {
    "fr": {"batch_size": 16, "eval_every": 2},
    "rl": {
        "iterations": 1, "train_batch_size": 16, "minibatch_size": 8, "num_epochs": 1, "horizon": 4, "eval_every": 8,
        "checkpoint_every": 1, "policy_eval_steps": 4, "attacker_warmup_steps": 2, "attacker_rows": 4,
        "attacker_batch_size": 4, "judge_steps": 5, "record_masked_batches": 1, "num_env_runners": 0, "max_inflight": 1,
    },
    "benchmark": {"quick": {"fr_steps": 4, "eval_model_steps": 4, "attack_batches": 1, "context_batches": 1, "decoder_steps": 3, "decoder_batch_size": 8}},
    # the policy measured over two seeds (sweep.policy_seeds), the grid point over one
    "sweep": {"leak_lambdas": [10.0], "grid_sample": 1, "attacks": ["whitebox"], "trial_cpus": 1, "max_concurrent": 1, "policy_seeds": 2},
}


def _sweep(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "trainers.cli", "sweep", "--quiet", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _flat(tree, prefix=""):
    """``{"rl": {"iterations": 1}}`` -> ``["--set", "rl.iterations=1"]``."""
    out = []
    for key, value in tree.items():
        out += _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else ["--set", f"{prefix}{key}={json.dumps(value)}"]
    return out


def test_a_two_trial_sweep_stopped_mid_way_resumes_without_rerunning_its_finished_trial_and_reads_both_back(tmp_path, cli_env):
    sweep = tmp_path / "sweep"
    # --set, not --config: --quick's debug PPO budget overrides a config file, as train --debug's does
    proc = _sweep(["--quick", *_flat(TINY), "--out", str(sweep)], cli_env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        first = None
        while time.monotonic() < deadline and proc.poll() is None:
            if (sweep / "plan.json").is_file():
                first = trial_dir(sweep, read_plan(sweep)[0][0]) / "trial.json"
                if first.is_file():
                    break
            time.sleep(0.2)
        assert first is not None and first.is_file(), "the first trial never finished"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the driver's whole process group
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    plan, _ = read_plan(sweep)
    assert proc.returncode != 0, out
    assert f"--resume {sweep}" in out
    second = trial_dir(sweep, plan[1]) / "trial.json"
    assert not second.exists() and not (sweep / "results.json").exists()
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (first, trial_dir(sweep, plan[0]) / "measure" / "results.json")}

    resumed = _sweep(["--resume", str(sweep)], cli_env)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "1 of 2 trials to run (1 done)" in out and "2 of 2 confirmation trials to run (0 done)" in out
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in before} == before  # the finished trial was not rerun
    results = json.loads((sweep / "results.json").read_text())
    assert [r["key"] for r in results["trials"]] == [t.key for t in plan] and second.is_file()
    assert (sweep / "tune" / "attempt-2").is_dir() and results["wall_seconds"] > 0
    cfg = load_config(sweep / "config.yaml")  # the seeds that make this sweep one seed of an experiment
    assert results["run_seeds"] == {"rl": cfg.rl.seed, "fr": cfg.fr.seed, "benchmark": cfg.benchmark.seed, "grid": cfg.sweep.grid_seed}
    check_two_trial_sweep(sweep, results)


def check_two_trial_sweep(sweep, results):
    """Both trials of the finished sweep read back: records, measurements, the policy's own run,
    the judges shared through SWEEP/fits, and the confirmation."""
    assert os.stat(sweep).st_mode & 0o777 == 0o700
    plan, quick = read_plan(sweep)
    assert quick and [t.kind for t in plan] == [FIXED, POLICY]
    assert list((sweep / "tune").glob("attempt-1/*/result.json"))  # Tune ran the trials
    by_key = {r["key"]: r for r in results["trials"]}
    for trial in plan:
        record = json.loads((trial_dir(sweep, trial) / "trial.json").read_text())
        assert record == by_key[trial.key]
        assert 0 <= record["utility"] <= 1 and 0 <= record["leak"] <= 1 and record["worst_attack"] == "whitebox"
        measured = json.loads((trial_dir(sweep, trial) / "measure" / "results.json").read_text())
        row = measured["defences"][0]
        assert record["utility"] == row["utility"]["identification_acc"] and record["leak"] == row["attacks"]["whitebox"]["acc1"]
        assert record["fr_steps_measured"] == row["fr_steps"] == TINY["benchmark"]["quick"]["fr_steps"]
        # the policy's figures are the mean over its two measurements, the repeat's FR steps apart
        seeds = 2 if trial.kind == POLICY else 1
        assert record["seeds"] == measured["seeds"] == seeds and record["fr_steps_repeats"] == (seeds - 1) * row["fr_steps"]
        assert len(row["attacks"]["whitebox"]["seeds"]["acc1"]) == seeds and record["leak"] == pytest.approx(sum(row["attacks"]["whitebox"]["seeds"]["acc1"]) / seeds)
    fixed, policy = (by_key[t.key] for t in plan)
    assert fixed["fr_steps_training"] == 0 and fixed["setting"] == plan[0].setting
    # the policy trial trained with its own leak_lambda, then was deployed and attacked
    run = trial_dir(sweep, plan[1]) / "run"
    assert load_config(run / "config.yaml").rl.leak_lambda == 10.0 and (run / "policy.pt").is_file()
    assert policy["fr_steps_training"] == json.loads((run / "summary.json").read_text())["fr_steps"] >= 16
    assert policy["action_distribution"] and policy["leak_lambda"] == 10.0
    assert results["summary"]["sides"][POLICY]["fr_steps"] == policy["fr_steps"]
    # measurements of one seed share one judge (SWEEP/fits): the policy's first seed, measured
    # after the grid point, wrote no judge file, its second seed did (the file before it is the
    # training run's judge: other steps); the grid point's confirmation (its seed 1) shares the
    # policy's seed-1 judge; the policy's confirmation (its seeds 2 and 3) writes two more
    judges = sorted(j.stat().st_mtime_ns for j in (sweep / "fits").glob("judge-*.pt"))
    started = (trial_dir(sweep, plan[1]) / "measure" / "config.yaml").stat().st_mtime_ns
    assert len(judges) == 5 and judges[1] < started < judges[2]
    # each side's front is its one trial: both measured again, with the seeds after the first
    # measurement's, the policy deployed again (not retrained)
    confirm = read_confirmations(sweep, plan)
    assert [c.confirms for c in confirm] == [t.key for t in plan] and [c["confirms"] for c in results["confirmations"]] == [t.key for t in plan]
    for trial, again_trial, seeds in ((plan[0], confirm[0], 1), (plan[1], confirm[1], 2)):
        first, again = (load_config(trial_dir(sweep, t) / "measure" / "config.yaml") for t in (trial, again_trial))
        assert again.benchmark.seed == first.benchmark.seed + seeds * SEED_STRIDE and again.fr.seed == first.fr.seed + seeds * SEED_STRIDE
        assert again.benchmark.seeds == first.benchmark.seeds == seeds
    assert results["confirmations"][1]["fr_steps_training"] == 0 and not (trial_dir(sweep, confirm[1]) / "run").exists()
    assert list((sweep / "tune").glob("attempt-3/*/result.json"))  # the confirmation: a Tune experiment of its own
    assert results["summary"]["confirmed"]["axes"]["raw"]["picked_on_first_measurement"] == {POLICY: [plan[1].key], FIXED: [plan[0].key]}
    md = (sweep / "results.md").read_text()
    assert all(f"`{k}`" in md for k in by_key) and "hypervolume" in md and "## The picks measured again" in md
    assert f"took {TINY['benchmark']['quick']['fr_steps']} FR steps on the policy side and 0 on the grid's" in md  # the repeat, apart
    assert (sweep / "front.png").stat().st_size > 0

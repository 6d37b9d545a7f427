"""One trial of ``rl-mask sweep``, run inside a Ray Tune trial (or any process).

A policy trial is ``rl-mask train`` (``trainers.train.train``, in-process layout: the trial is
the unit Tune spreads over the cluster) with its ``rl.leak_lambda``, then the benchmark with
the trained policy deployed on a fresh FR network (``--adaptive-run``); a fixed trial is the
benchmark of one fixed setting of the knobs. Both are measured by the same benchmark code,
budget and attacks. A confirmation trial measures a finished trial again with the benchmark's
seeds that follow the first measurement's (a policy trial's trained policy is deployed again,
not retrained). A policy trial may be measured over more seeds than a grid point
(``sweep.policy_seeds``): repeats of one measurement, averaged. The trial writes under ``SWEEP/trials/KEY/``::

    run/         the policy's rl-mask train run folder (policy trials)
    measure/     the benchmark folder (results.json, results.md, runs/)
    trial.json   the trial's figures (written last, atomically: its presence means done)

Fits that many trials repeat exactly (the judge; the decoders of views several settings share,
such as the evaluation door's k = 1 view) are kept in ``SWEEP/fits/`` (``rl_mask.fit_cache``)
and done once per sweep.

An interrupted trial picks up where it stopped: its training run resumes from its latest
checkpoint (or starts over on the leftovers of an attempt killed before one), and a
measurement without ``results.json`` is the sweep's own unfinished attempt and is redone.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path

from rl_mask.bench.benchmark import deployed_owner_suffixes, run_benchmark, seed_config
from rl_mask.bench.sweep_plan import POLICY, Trial
from rl_mask.bench.sweep_report import trial_record
from rl_mask.checkpoint import atomic_write_text
from rl_mask.config import Config, ConfigError, load_config, parse_settings
from rl_mask.fit_cache import use_cache_dir
from rl_mask.run_folder import RUN_DIR_MODE
from rl_mask.train_fr import set_threads
from trainers.checkpoints import holds_run
from trainers.deploy_policy import deploy_policy
from trainers.train import train

TRIALS_DIR = "trials"
FITS_DIR = "fits"
RECORD = "trial.json"
#: What a finished record must hold, with numbers where numbers belong.
RECORD_NUMBERS = ("utility", "leak", "fr_steps", "wall_seconds")


def trial_dir(sweep_dir: Path, trial: Trial) -> Path:
    return sweep_dir / TRIALS_DIR / trial.key


def read_record(sweep_dir: Path, trial: Trial) -> dict | None:
    """The trial's finished record, or None if it has not finished."""
    path = trial_dir(sweep_dir, trial) / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("key") != trial.key or not all(isinstance(record.get(k), (int, float)) and math.isfinite(record[k]) for k in RECORD_NUMBERS):
        raise ConfigError(f"{path}: not the record of trial {trial.key!r} (fields {', '.join(RECORD_NUMBERS)} must be numbers)")
    return record


def trial_threads(cfg: Config) -> int:
    """Torch threads of a trial: its CPU share, at least one."""
    return max(1, int(cfg.sweep.trial_cpus))


def measurement_seeds(cfg: Config, trial: Trial) -> int:
    """How many benchmark seeds measure the trial: ``sweep.policy_seeds`` for a policy trial
    where set, ``benchmark.seeds`` otherwise."""
    if trial.kind == POLICY and cfg.sweep.policy_seeds:
        return cfg.sweep.policy_seeds
    return cfg.benchmark.seeds


def policy_config(cfg: Config, trial: Trial) -> Config:
    """The trial's ``rl-mask train`` config: its ``rl.leak_lambda``, env, learner and FR network
    in the trial's own process (train's debug layout)."""
    out = copy.deepcopy(cfg)
    out.rl.leak_lambda = float(trial.leak_lambda)
    out.rl.num_env_runners = 0
    out.rl.max_inflight = 1
    out.rl.num_learners = 0
    out.rl.fr_workers = 1
    return out.validate()


def train_policy(cfg: Config, run: Path, progress: bool) -> dict:
    """Train (or resume, or take the finished) policy run; returns its summary."""
    summary_path = run / "summary.json"
    if summary_path.is_file() and (run / "policy.pt").is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("finished"):
            return summary
    resume = holds_run(run)
    return train(cfg, run, resume=resume, retry=not resume, debug=True, progress=progress)


def run_trial(sweep_dir: Path, trial: Trial, quick: bool, progress: bool = False) -> dict:
    """Train (policy trials) and measure one trial; write and return its record."""
    done = read_record(sweep_dir, trial)
    if done is not None:
        return done
    cfg = load_config(sweep_dir / "config.yaml")
    use_cache_dir(sweep_dir / FITS_DIR)
    set_threads(trial_threads(cfg))
    if cfg.fr.threads == 0:
        cfg.fr.threads = trial_threads(cfg)
    out = trial_dir(sweep_dir, trial)
    out.mkdir(parents=True, exist_ok=True, mode=RUN_DIR_MODE)
    bench = copy.deepcopy(cfg)
    bench.benchmark.attacks = list(cfg.sweep.attacks)
    bench.benchmark.seeds = measurement_seeds(cfg, trial)
    fr_training, train_seconds, policy_run = 0, 0.0, None
    if trial.kind == POLICY:
        if trial.confirms:
            policy_run = str(sweep_dir / TRIALS_DIR / trial.confirms / "run")  # the confirmed trial's policy, finished
            if not (Path(policy_run) / "policy.pt").is_file():
                raise ConfigError(f"{trial.key}: the policy of {trial.confirms} is missing ({policy_run}/policy.pt)")
        else:
            summary = train_policy(policy_config(cfg, trial), out / "run", progress)
            fr_training, train_seconds, policy_run = int(summary["fr_steps"]), float(summary["wall_seconds"]), str(out / "run")
        bench.benchmark.defences = ["adaptive"]
    else:
        # the owner options a policy run of this config deploys (key, flipped k = 1 messages)
        bench.benchmark.defences = [f"fixed[{trial.setting}]" + deployed_owner_suffixes(cfg, parse_settings(trial.setting)["flip"])]
    if trial.confirms:  # the seeds after the first measurement's: fresh FR network, draws, attackers, judge
        bench = seed_config(bench, bench.benchmark.seeds)
    bench.validate()
    measure = out / "measure"
    if measure.exists():  # this sweep's own attempt, stopped before its results.json
        print(f"rl-mask sweep: {trial.key}: redoing the unfinished measurement in {measure}", flush=True)
        shutil.rmtree(measure)
    started = time.perf_counter()
    results = run_benchmark(bench, measure, quick=quick, adaptive_run=policy_run, deploy=deploy_policy if policy_run else None, progress=progress)
    record = trial_record(trial, results, fr_training, train_seconds + time.perf_counter() - started)
    atomic_write_text(out / RECORD, json.dumps(record, indent=2))
    return record

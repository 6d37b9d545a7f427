"""``rl-mask sweep``: policy trials over ``rl.leak_lambda`` and the fixed-grid baseline, as one
Ray Tune experiment, measured the same way, into one owner-only sweep folder.

Each trial (``trainers.sweep_trial``) is a Tune function trainable with the resources of
``sweep.trial_cpus`` / ``sweep.trial_gpus``, so Tune spreads the trials over whatever Ray the
driver joined: a local one started for the sweep (``trainers.local_ray``, as ``rl-mask train``
does) or a cluster (``--address``). Sweep folder::

    SWEEP/config.yaml    the validated config (every trial reads it)
    SWEEP/plan.json      the trials: the fixed settings drawn and the policy trials
    SWEEP/confirm.json   the confirmation trials: the picks of the plan's measurements, measured again
    SWEEP/trials/KEY/    each trial's run and measurement folders and its trial.json
    SWEEP/tune/          Ray Tune's own experiment folders (one per attempt)
    SWEEP/fits/          fits several trials repeat exactly (the judge, shared decoders: rl_mask.fit_cache)
    SWEEP/wall.json      the sweep's wall time, summed over its attempts
    SWEEP/results.json, results.md, front.png

When the plan's trials are done, the points picked from their measurements (each side's
front, the grid point each front policy is compared with) are measured again with a fresh
measurement seed (``sweep.confirm``; ``rl_mask.bench.sweep_report.confirmed``), as a second
Tune experiment: the best of 24 noisy grid points is low partly by chance, and a pick is
reported on figures it was not picked on.

Resuming (``--resume SWEEP``) runs a new Tune experiment over the trials that have no
``trial.json`` yet; a trial that was cut off resumes its own training run. Tune's
``Tuner.restore`` is not used: it unpickles the experiment state from the folder, and nothing
in a run folder is ever unpickled here (it may sit on shared storage). What a restore would add
(Tune's own trial checkpoints) the trials do not use: their checkpoints are rl-mask's.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import ray
from ray import tune

from rl_mask.bench.sweep_plan import FIXED, Trial, confirmation_of, make_plan, read_confirmations, read_plan, write_confirmations, write_plan
from rl_mask.bench.sweep_report import summarize, to_confirm, write_sweep_report
from rl_mask.checkpoint import atomic_write_text
from rl_mask.config import Config, ConfigError, knob_grid_size, load_config, save_config
from rl_mask.run_folder import RUN_DIR_MODE, claim_out_dir
from trainers.sweep_trial import read_record, run_trial
from trainers.train import init_ray

TUNE_DIR = "tune"


class SweepIncomplete(ConfigError):
    """Trials without a result after the Tune run (stopped, or failed): the sweep can be resumed."""


def _trial_fn(params: dict, sweep_dir: str) -> None:
    """The Tune trainable: one trial, its headline figures reported to Tune."""
    sweep = Path(sweep_dir)
    trials, quick = read_plan(sweep)
    trial = next(t for t in trials + (read_confirmations(sweep, trials) or []) if t.key == params["trial"])
    record = run_trial(sweep, trial, quick)
    tune.report({k: record[k] for k in ("utility", "leak", "fr_steps", "wall_seconds")})


def _attempt_name(tune_dir: Path) -> str:
    n = 1 + sum(1 for p in tune_dir.glob("attempt-*") if p.is_dir()) if tune_dir.is_dir() else 1
    return f"attempt-{n}"


def run_tune(cfg: Config, sweep_dir: Path, keys: list[str], address: str | None, progress: bool) -> None:
    """The trials ``keys`` as one Tune experiment (errors are collected, not raised: the caller
    checks which trials wrote a record)."""
    sweep = cfg.sweep
    resources = {"cpu": sweep.trial_cpus, "gpu": sweep.trial_gpus}
    tune_dir = sweep_dir / TUNE_DIR
    tune_dir.mkdir(mode=RUN_DIR_MODE, exist_ok=True)
    local_ray = init_ray(address)
    try:
        trainable = tune.with_resources(tune.with_parameters(_trial_fn, sweep_dir=str(sweep_dir)), resources)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(keys)},
            tune_config=tune.TuneConfig(max_concurrent_trials=sweep.max_concurrent or None, reuse_actors=False),
            run_config=tune.RunConfig(name=_attempt_name(tune_dir), storage_path=str(tune_dir), verbose=1 if progress else 0, failure_config=tune.FailureConfig(max_failures=0)),
        )
        tuner.fit()
    finally:
        if local_ray is not None:
            ray.shutdown()
            local_ray.stop()


WALL_FILE = "wall.json"


def wall_seconds(sweep_dir: Path) -> float:
    """The sweep's wall time so far, over every attempt (``SWEEP/wall.json``)."""
    path = sweep_dir / WALL_FILE
    if not path.is_file():
        return 0.0
    try:
        value = json.loads(path.read_text())["seconds"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a wall-time record ({exc})") from None
    if not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"{path}: seconds must be a number >= 0, not {value!r}")
    return float(value)


def add_wall_seconds(sweep_dir: Path, seconds: float) -> None:
    atomic_write_text(sweep_dir / WALL_FILE, json.dumps({"seconds": round(wall_seconds(sweep_dir) + seconds, 2)}))


def check_budget(cfg: Config, quick: bool) -> None:
    """What the benchmark budget must allow for every trial of this sweep."""
    mode = "quick" if quick else "full"
    budget = getattr(cfg.benchmark, mode)
    k = max(cfg.rl.k_choices)
    if budget.decoder_batch_size < k:
        raise ConfigError(f"benchmark.{mode}.decoder_batch_size={budget.decoder_batch_size}: the white-box decoder trains on settings that mix up to k={k} faces (rl.k_choices); it needs >= {k}")


def run_stage(cfg: Config, sweep_dir: Path, trials: list[Trial], what: str, address: str | None, progress: bool, started: float) -> list[dict]:
    """Run the ``trials`` that have no record yet as one Tune experiment; returns every trial's
    record. Raises ``SweepIncomplete`` naming the unfinished trials when some did not finish."""
    todo = [t.key for t in trials if read_record(sweep_dir, t) is None]
    if todo:
        print(f"rl-mask sweep: {len(todo)} of {len(trials)} {what} to run ({len(trials) - len(todo)} done) in {sweep_dir}", flush=True)
        try:
            run_tune(cfg, sweep_dir, todo, address, progress)
        finally:
            add_wall_seconds(sweep_dir, time.perf_counter() - started)
    records = [read_record(sweep_dir, t) for t in trials]
    missing = [t.key for t, r in zip(trials, records) if r is None]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise SweepIncomplete(f"{len(missing)} of {len(trials)} {what} have no result ({shown}: stopped, or failed with an error in {sweep_dir / TUNE_DIR}/attempt-*/*/error.txt); continue with rl-mask sweep --resume {sweep_dir}")
    return records


def run_sweep(cfg: Config | None, out_dir: str | Path, *, quick: bool = False, address: str | None = None, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) a sweep into ``out_dir``; returns the results (also ``results.json``).
    A resumed sweep keeps its own config and mode (``quick``). Raises ``SweepIncomplete`` naming the unfinished trials when some did not finish."""
    started = time.perf_counter()
    sweep_dir = Path(out_dir).resolve()
    if resume:
        if not (sweep_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume {sweep_dir}: no config.yaml there, not a sweep folder")
        cfg = load_config(sweep_dir / "config.yaml")
        plan, quick = read_plan(sweep_dir)  # the mode it was started in
        os.chmod(sweep_dir, RUN_DIR_MODE)
    else:
        if cfg is None:
            raise ConfigError("a new sweep needs a config")
        cfg = copy.deepcopy(cfg)
        cfg.data.root = os.path.abspath(cfg.data.resolved_root())  # the trials' processes get this absolute path
        cfg.validate()
        check_budget(cfg, quick)
        plan = make_plan(cfg)
        claim_out_dir(sweep_dir)
        save_config(cfg, sweep_dir / "config.yaml")
        write_plan(plan, quick, sweep_dir)
    records = run_stage(cfg, sweep_dir, plan, "trials", address, progress, started)
    confirmations = None
    if cfg.sweep.confirm:
        chosen = read_confirmations(sweep_dir, plan)
        if chosen is None:  # written once, from the plan's finished measurements
            picked = set(to_confirm(records, cfg.benchmark.best_fixed_tolerance))
            chosen = [confirmation_of(t) for t in plan if t.key in picked]
            write_confirmations(chosen, sweep_dir)
        confirmations = run_stage(cfg, sweep_dir, chosen, "confirmation trials", address, progress, time.perf_counter())
    fixed = sum(1 for t in plan if t.kind == FIXED)
    whole = fixed == knob_grid_size(cfg.rl)
    results = {
        "mode": "quick" if quick else "full",
        "seeds": cfg.benchmark.seeds,
        "attacks": list(cfg.sweep.attacks),
        "data_root": cfg.data.root,
        "grid": f"{fixed} settings" + (" (the whole grid)" if whole else f" of the whole grid's {knob_grid_size(cfg.rl)}, drawn at random without replacement with random.Random({cfg.sweep.grid_seed})"),
        # what makes this sweep one seed of an experiment: two sweeps that share these measured
        # the same draw twice (``bench.sweep_seeds`` refuses to read them as two seeds)
        "run_seeds": {"rl": cfg.rl.seed, "fr": cfg.fr.seed, "benchmark": cfg.benchmark.seed, "grid": cfg.sweep.grid_seed},
        "trials": records,
        "confirmations": confirmations,
        "summary": summarize(records, cfg.benchmark.best_fixed_tolerance, confirmations),
        "wall_seconds": round(wall_seconds(sweep_dir), 2),
    }
    write_sweep_report(results, sweep_dir)
    return results

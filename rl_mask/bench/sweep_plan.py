"""The trials of one ``rl-mask sweep``: policy trials (one ``rl.leak_lambda`` each) and the
fixed-grid baseline (the whole knob grid, or a seeded random sample of it, never a hand-picked
list), written once to ``SWEEP/plan.json`` so that a resumed sweep runs exactly the same trials;
and the confirmation trials (``SWEEP/confirm.json``, written once when the plan's trials are
done): the points picked from those measurements (each side's front, the grid points the
policies are compared with), measured again with a fresh measurement seed, so that the figures
a pick is reported on are not the ones it was picked on.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from rl_mask.checkpoint import atomic_write_text
from rl_mask.config import Config, ConfigError, RLConfig, parse_settings

POLICY, FIXED = "policy", "fixed"
PLAN_FILE = "plan.json"
CONFIRM_FILE = "confirm.json"


@dataclass(frozen=True)
class Trial:
    key: str  # unique, also the trial's folder name under SWEEP/trials/
    kind: str  # POLICY or FIXED
    leak_lambda: float | None = None  # policy trials
    setting: str | None = None  # fixed trials: "k=...,flip=...,extra_removed=...,alpha=...,labels=..."
    confirms: str | None = None  # confirmation trials: the key of the trial measured again


def knob_grid(rl: RLConfig) -> list[str]:
    """Every fixed setting of the policy's knobs, in a stable order."""
    product = itertools.product(rl.k_choices, rl.flip_choices, rl.extra_removed_choices, rl.alpha_choices, rl.label_choices)
    return [f"k={k},flip={float(f)},extra_removed={e},alpha={float(a)},labels={lab}" for k, f, e, a, lab in product]


def grid_settings(rl: RLConfig, sample: int, seed: int) -> list[str]:
    """The whole grid (``sample`` 0) or ``sample`` settings drawn from it without replacement
    by ``random.Random(seed)``, kept in grid order."""
    grid = knob_grid(rl)
    if sample == 0 or sample >= len(grid):
        return grid
    chosen = set(random.Random(seed).sample(range(len(grid)), sample))
    return [s for i, s in enumerate(grid) if i in chosen]


def make_plan(cfg: Config) -> list[Trial]:
    """Fixed points first (cheap: no PPO), then the policy trials."""
    sweep = cfg.sweep
    fixed = [Trial(f"fixed-{s}", FIXED, setting=s) for s in grid_settings(cfg.rl, sweep.grid_sample, sweep.grid_seed)]
    policy = [Trial(f"policy-leak_lambda={float(lam)}", POLICY, leak_lambda=float(lam)) for lam in sweep.leak_lambdas]
    return fixed + policy


def write_plan(trials: list[Trial], quick: bool, sweep_dir: Path) -> None:
    atomic_write_text(sweep_dir / PLAN_FILE, json.dumps({"quick": quick, "trials": [asdict(t) for t in trials]}, indent=2))


def confirmation_of(trial: Trial) -> Trial:
    """The trial that measures ``trial`` again (a policy trial's trained policy is deployed
    again, not retrained)."""
    return Trial(f"confirm-{trial.key}", trial.kind, leak_lambda=trial.leak_lambda, setting=trial.setting, confirms=trial.key)


def _trial_records(path: Path, items):
    """``(index, item, Trial)`` for each entry of a trial list read from ``path`` (an entry that
    is not a trial record is refused by its index)."""
    for i, item in enumerate(items if isinstance(items, list) else [None]):
        try:
            yield i, item, Trial(**item)
        except TypeError:
            raise ConfigError(f"{path}: trials[{i}] is not a trial record: {item!r}") from None


def _check_unique(path: Path, trials: list[Trial]) -> None:
    if len({t.key for t in trials}) != len(trials):
        raise ConfigError(f"{path}: repeated trial keys")


def write_confirmations(trials: list[Trial], sweep_dir: Path) -> None:
    atomic_write_text(sweep_dir / CONFIRM_FILE, json.dumps({"trials": [asdict(t) for t in trials]}, indent=2))


def read_confirmations(sweep_dir: Path, plan: list[Trial]) -> list[Trial] | None:
    """``SWEEP/confirm.json``'s trials (None: not written yet), each checked to be the
    confirmation of a trial of ``plan``."""
    path = sweep_dir / CONFIRM_FILE
    if not path.is_file():
        return None
    try:
        items = json.loads(path.read_text())["trials"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a list of confirmation trials ({exc})") from None
    by_key = {t.key: t for t in plan}
    out = []
    for i, item, trial in _trial_records(path, items):
        if trial.confirms not in by_key or trial != confirmation_of(by_key[trial.confirms]):
            raise ConfigError(f"{path}: trials[{i}] is not the confirmation of a trial of {PLAN_FILE}: {item!r}")
        out.append(trial)
    _check_unique(path, out)
    return out


def read_plan(sweep_dir: Path) -> tuple[list[Trial], bool]:
    """``SWEEP/plan.json``: the trials and the budget mode (``quick``), checked field by field
    (a resumed sweep trusts nothing it reads)."""
    path = sweep_dir / PLAN_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no plan.json, not an rl-mask sweep folder")
    try:
        plan = json.loads(path.read_text())
        items, quick = plan["trials"], plan["quick"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a sweep plan ({exc})") from None
    if not isinstance(quick, bool):
        raise ConfigError(f"{path}: quick must be true or false, not {quick!r}")
    trials = []
    for i, item, trial in _trial_records(path, items):
        ok = isinstance(trial.key, str) and "/" not in trial.key and trial.key not in ("", ".", "..") and trial.confirms is None
        if trial.kind == POLICY:
            ok = ok and isinstance(trial.leak_lambda, (int, float)) and trial.leak_lambda >= 0 and trial.setting is None
        elif trial.kind == FIXED:
            try:
                parse_settings(trial.setting)
            except (ValueError, TypeError):
                ok = False
        else:
            ok = False
        if not ok:
            raise ConfigError(f"{path}: trials[{i}] is not a valid trial: {item!r}")
        trials.append(trial)
    _check_unique(path, trials)
    return trials, quick

"""Numbers with error bars: per-seed benchmark figures aggregated into means, 95% intervals and
significance calls, so that a difference between two defences is read as real only when the
data say so.

Interval rule (stated in ``results.md``):

- N >= 2 seeds: Student-t interval of the mean over seeds (``scipy.stats.t``);
- N = 1 seed: for accuracy-type figures (keys starting with ``acc``, and the utility's
  identification accuracy) a Wilson binomial interval over the n judged samples
  (``scipy.stats.binomtest``); other figures get no interval.

Significance rule: N >= 2: Welch's t-test over seeds, p < 0.05 (no spread in either group:
different iff the means differ); N = 1: the two 95% intervals do not overlap.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA = 1 - LEVEL


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def t_interval(values: list[float]) -> tuple[float, float]:
    """95% t-interval of the mean of ``values`` (N >= 2); zero spread gives a point."""
    x = np.asarray(values, dtype=float)
    mean, sem = float(x.mean()), float(stats.sem(x))
    if not np.isfinite(sem) or sem == 0:
        return mean, mean
    lo, hi = stats.t.interval(LEVEL, df=len(x) - 1, loc=mean, scale=sem)
    return float(lo), float(hi)


def spread_beyond_measurement(values: list[float], standard_errors: list[float], target_width: float | None = None) -> dict:
    """How much of the spread of ``values`` over seeds their own measurement noise explains.

    Each seed's figure is the thing measured (which moves with the seed) plus measurement noise
    of standard error ``standard_errors[i]``, so (method of moments) the variance over seeds is
    the thing's own variance plus the mean squared standard error. Returns the sd over seeds,
    the rms standard error, the width of the 95% t-interval that measurement noise alone would
    give at this N, the sd left beyond it (0 where the noise explains all of it) and, given
    ``target_width``, how many measurements per seed (averaged) would bring the interval to it
    at this N (None: not even without any noise, the thing itself spreads too much)."""
    n = len(values)
    if n < 2 or len(standard_errors) != n:
        raise ValueError(f"need N >= 2 values and one standard error each, got {n} values and {len(standard_errors)} standard errors")
    sd = float(np.std(values, ddof=1))
    mse = float(np.mean(np.square(standard_errors)))
    factor = 2 * float(stats.t.ppf(1 - ALPHA / 2, n - 1)) / math.sqrt(n)  # interval width per unit sd
    beyond = math.sqrt(max(0.0, sd * sd - mse))
    out = {
        "sd_between_seeds": sd,
        "rms_standard_error": math.sqrt(mse),
        "width": factor * sd,
        "width_from_measurement_alone": factor * math.sqrt(mse),
        "sd_beyond_measurement": beyond,
    }
    if target_width is not None:
        room = (target_width / factor) ** 2 - beyond * beyond  # variance left for the averaged measurement
        out["target_width"] = target_width
        out["measurements_per_seed_for_target"] = None if room <= 0 else max(1, math.ceil(mse / room))
    return out


def wilson_interval(rate: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion ``rate`` observed over ``n`` trials."""
    k = int(round(rate * n))
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def aggregate(per_seed: list[dict], trials: dict[str, int] | None = None) -> dict:
    """Mean of every numeric key over seeds (non-numeric keys: the first seed's value), with
    ``ci`` {key: [lo, hi]}, ``seeds`` {key: [values]} and ``ci_method``.

    ``trials`` names the keys that are proportions and their number of trials: with one seed
    they get a Wilson interval (other keys get none); with several, their t-interval is
    clipped to [0, 1]."""
    trials = trials or {}
    first = per_seed[0]
    out: dict = {}
    ci: dict[str, list[float] | None] = {}
    seeds: dict[str, list[float]] = {}
    for key, v in first.items():
        values = [d.get(key) for d in per_seed]
        if not all(_is_number(x) for x in values):
            out[key] = v
            continue
        values = [float(x) for x in values]
        out[key] = float(np.mean(values))
        seeds[key] = values
        if len(values) >= 2:
            lo, hi = t_interval(values)
            ci[key] = [max(lo, 0.0), min(hi, 1.0)] if key in trials else [lo, hi]  # proportions stay in [0, 1]
        elif key in trials and trials[key] > 0 and 0 <= values[0] <= 1:
            ci[key] = list(wilson_interval(values[0], trials[key]))
        else:
            ci[key] = None
    out["ci"] = ci
    out["seeds"] = seeds
    out["ci_method"] = "t over seeds" if len(per_seed) >= 2 else "Wilson over samples (proportions only)"
    return out


def accuracy_trials(cell: dict) -> dict[str, int]:
    """Accuracy-type keys of a judged cell (``acc1``, ``acc5``, ``acc1_any``, ...) and their n."""
    n = int(cell.get("n", 0))
    return {k: n for k, v in cell.items() if k.startswith("acc") and not k.endswith("_rel") and _is_number(v)}


def relative_leaks(cell: dict, judge_acc1: float, judge_acc5: float) -> dict:
    """Each leak as a fraction of what the judge gets right on clean held-out faces
    (``acc1*`` / judge acc@1, ``acc5*`` / judge acc@5): 1 means the reconstructions are
    recognised as well as real photos."""
    out = {}
    for k, v in cell.items():
        if not _is_number(v) or k.endswith("_rel"):
            continue
        if k.startswith("acc1"):
            out[f"{k}_rel"] = float(v) / judge_acc1 if judge_acc1 > 0 else math.nan
        elif k.startswith("acc5"):
            out[f"{k}_rel"] = float(v) / judge_acc5 if judge_acc5 > 0 else math.nan
    return out


def scale_interval(ci: list[float] | None, by: float) -> list[float] | None:
    """An interval divided by a positive constant (a Wilson leak interval -> relative leak)."""
    if ci is None or not by > 0:
        return None
    return [ci[0] / by, ci[1] / by]


def differ(a: dict, b: dict, key: str) -> dict:
    """Is ``key`` significantly different between two aggregated dicts? Returns
    ``{"significant", "p" (or None), "rule"}`` (see the module docstring)."""
    va, vb = a["seeds"][key], b["seeds"][key]
    if len(va) >= 2 and len(vb) >= 2:
        if np.std(va) == 0 and np.std(vb) == 0:
            return {"significant": bool(np.mean(va) != np.mean(vb)), "p": None, "rule": "welch (no spread)"}
        p = float(stats.ttest_ind(va, vb, equal_var=False).pvalue)
        return {"significant": bool(p < ALPHA), "p": p, "rule": "welch"}
    ca, cb = a["ci"].get(key), b["ci"].get(key)
    if ca is None or cb is None:
        return {"significant": False, "p": None, "rule": "no interval"}
    return {"significant": bool(ca[1] < cb[0] or cb[1] < ca[0]), "p": None, "rule": "non-overlap"}

"""Several sweeps of one face set, each fully reseeded, read as seeds of one experiment.

One sweep (``rl-mask sweep``) compares its policies with its grid on one draw of everything:
a grid sample, a PPO seed, FR and measurement seeds. Whether the policy is stable, and whether
it beats the best fixed setting, are questions over such draws. Here each sweep is one seed:
per ``leak_lambda``, the policy's leak and identification, and its difference from the best
grid point of its own sweep (picked as the sweep picks it, at the policy's identification);
per leak axis, each side's hypervolume (each trial's leak: its worst message, the training
batches or the probe door). Across seeds: the mean, the 95% t-interval
(``stats.t_interval``) and its width. A difference is called only when its interval excludes 0.
Two sweeps of the same seeds (one run again after a fix) are one seed measured twice, and are
refused: read as two seeds they would narrow the interval by a repeat, not by a new draw.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from scipy import stats

from rl_mask.bench.stats import spread_beyond_measurement, t_interval
from rl_mask.bench.sweep_plan import FIXED, POLICY
from rl_mask.bench.sweep_report import leak_above_reference, summarize

AXES = ("raw", "above_reference")
#: The widest 95% interval over seeds the issue accepts for the policy's leak (10 points).
TARGET_WIDTH = 0.10
NORMAL_95 = 1.959964
SIDES = (POLICY, FIXED)


def load_sweep(folder: Path) -> dict:
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.json (is {folder} a finished rl-mask sweep?)")
    results = json.loads(path.read_text())
    for field in ("data_root", "trials", "summary"):
        if field not in results:
            raise ValueError(f"{path}: field {field!r} missing (not a sweep's results)")
    return results


def seed_identity(results: dict) -> tuple:
    """What makes a sweep one seed: its ``run_seeds`` (rl, fr, benchmark, grid), or, in a
    results.json written before they were recorded, its grid draw (the grid seed's description
    and the fixed trials drawn), since every recorded sweep moved all its seeds together."""
    if "run_seeds" in results:
        return ("run_seeds", tuple(sorted(results["run_seeds"].items())))
    return ("grid draw", results.get("grid"), tuple(sorted(t["key"] for t in results["trials"] if t["kind"] == FIXED)))


def refuse_repeated_seeds(folders: list[Path], recorded: list[dict]) -> None:
    seen: dict[tuple, Path] = {}
    for folder, results in zip(folders, recorded):
        identity = seed_identity(results)
        if identity in seen:
            what = "the same seeds " + str(dict(identity[1])) if identity[0] == "run_seeds" else "the same grid draw (" + str(identity[1]) + "; no run_seeds recorded)"
            raise ValueError(
                f"{seen[identity]} and {folder} ran with {what}: two measurements of one seed are not two seeds; read one of them"
            )
        seen[identity] = folder


def _training_batches_only(records: list[dict] | None) -> list[dict] | None:
    """The records as if the probe door had not been attacked: the front then reads the
    training batches alone (what the policy's reward scores, and the sweeps' rule before every
    message counted)."""
    return None if records is None else [{**r, "door_leak": None} for r in records]


def one_seed(results: dict, training_batches_only: bool = False) -> dict:
    """The figures of one sweep that are compared across seeds, summarised again from its trials
    by today's rules (``sweep_report.summarize``), so that sweeps run before a rule changed (what
    the front's leak counts) read alike; ``training_batches_only``: the door left out."""
    trials, confirmations = results["trials"], results.get("confirmations")
    if training_batches_only:
        trials, confirmations = _training_batches_only(trials), _training_batches_only(confirmations)
    summary = summarize(trials, results["summary"].get("best_fixed_tolerance", 0.02), confirmations)
    policies = {r["key"]: r for r in trials if r["kind"] == POLICY}
    fresh = {c["policy"]: c for c in (summary["confirmed"] or {}).get("policy_vs_best_fixed", [])}
    per_lambda = {}
    for c in summary["policy_vs_best_fixed"]:
        policy = policies[c["policy"]]
        row = {
            "leak": c["policy_leak"],
            # measurements averaged into it (``sweep.policy_seeds``): its standard error is theirs
            "measurements": policy.get("seeds", 1),
            "leak_standard_error": standard_error(c["policy_leak_ci"], policy.get("seeds", 1)),
            "utility": c["policy_utility"],
            "above_reference": leak_above_reference(policy),
            "best_fixed": c["best_fixed"],
            "best_fixed_leak": c["fixed_leak"],
            "best_fixed_utility": c["fixed_utility"],
            "leak_minus_best_fixed": c["policy_leak"] - c["fixed_leak"],
            "utility_minus_best_fixed": c["policy_utility"] - c["fixed_utility"],
        }
        if c["policy"] in fresh:
            f = fresh[c["policy"]]
            row["fresh"] = {
                "leak": f["policy_leak"],
                "leak_standard_error": standard_error(f["policy_leak_ci"], policy.get("seeds", 1)),
                "best_fixed": f["best_fixed"],
                "leak_minus_best_fixed": f["policy_leak"] - f["fixed_leak"],
                "utility_minus_best_fixed": f["policy_utility"] - f["fixed_utility"],
            }
        per_lambda[str(policy["leak_lambda"])] = row
    hypervolume = {"raw": {side: summary["sides"][side]["hypervolume"] for side in SIDES}, "above_reference": summary["above_reference"]["hypervolume"]}
    return {
        "data_root": results["data_root"],
        "grid": results.get("grid"),
        "grid_points": sum(r["kind"] == FIXED for r in trials),
        "per_leak_lambda": per_lambda,
        "hypervolume": hypervolume,
        **{
            verdict: {"raw": summary[verdict], "above_reference": summary["above_reference"][verdict]}
            for side in ("fixed_front_weakly_dominates_policy_front", "policy_front_weakly_dominates_fixed_front")
            for verdict in (side, side + "_within_intervals")
        },
        "fr_steps_ratio_policy_to_fixed": summary["fr_steps_ratio_policy_to_fixed"],
        "policy_vs_best_fixed": summary["policy_vs_best_fixed"],
    }


def standard_error(ci: list[float] | None, seeds: int = 1) -> float | None:
    """A figure's standard error read off its 95% interval: half its width over 1.96 for one
    measurement seed (a Wilson interval is a little lopsided: this is the symmetric
    approximation), over the t quantile for a t-interval over ``seeds`` seeds."""
    if not ci:
        return None
    return (ci[1] - ci[0]) / (2 * (NORMAL_95 if seeds < 2 else float(stats.t.ppf(0.975, seeds - 1))))


def _noise(values: list[float], errors: list[float | None]) -> dict | None:
    """``stats.spread_beyond_measurement`` at the issue's 10-point target, where every seed has
    a standard error."""
    return None if any(e is None for e in errors) else spread_beyond_measurement(values, errors, TARGET_WIDTH)


def spread(values: list[float]) -> dict:
    """Per-seed values, their mean, 95% t-interval and its width (N >= 2)."""
    lo, hi = t_interval(values)
    return {"per_seed": values, "mean": sum(values) / len(values), "ci": [lo, hi], "width": hi - lo}


def _difference(values: list[float], lower_is: str, higher_is: str) -> dict:
    s = spread(values)
    s["verdict"] = lower_is if s["ci"][1] < 0 else higher_is if s["ci"][0] > 0 else "no difference the interval shows"
    return s


def across_seeds(folders: list[Path], training_batches_only: bool = False) -> dict:
    """Every sweep's figures and, over them as seeds, means and 95% t-intervals (each trial's
    leak: its worst message, or with ``training_batches_only`` its training batches')."""
    if len(folders) < 2:
        raise ValueError(f"need at least 2 sweeps to read as seeds, got {len(folders)}")
    recorded = [load_sweep(f) for f in folders]
    roots = {r["data_root"] for r in recorded}
    if len(roots) > 1:
        raise ValueError(f"the sweeps are on different face sets: {sorted(roots)}")
    refuse_repeated_seeds(folders, recorded)
    seeds = [one_seed(r, training_batches_only) for r in recorded]
    lambdas = [set(s["per_leak_lambda"]) for s in seeds]
    if any(lam != lambdas[0] for lam in lambdas):
        raise ValueError(f"the sweeps ran different leak_lambda values: {[sorted(lam) for lam in lambdas]}")
    grid_sizes = [s["grid_points"] for s in seeds]
    per_lambda = {}
    for lam in sorted(lambdas[0], key=float):
        rows = [s["per_leak_lambda"][lam] for s in seeds]
        per_lambda[lam] = {
            "measurements_per_seed": [r.get("measurements", 1) for r in rows],
            "leak": spread([r["leak"] for r in rows]),
            "utility": spread([r["utility"] for r in rows]),
            "above_reference": spread([r["above_reference"] for r in rows]),
            "leak_minus_best_fixed": _difference([r["leak_minus_best_fixed"] for r in rows], "the policy leaks less", "the best grid point leaks less"),
            "utility_minus_best_fixed": _difference([r["utility_minus_best_fixed"] for r in rows], "the best grid point identifies better", "the policy identifies better"),
        }
        # where the spread over seeds comes from: each seed's own measurement noise, and the rest
        per_lambda[lam]["leak_noise"] = _noise([r["leak"] for r in rows], [r["leak_standard_error"] for r in rows])
        if all("fresh" in r for r in rows):  # every sweep measured this policy and its pick again
            per_lambda[lam]["fresh_leak_minus_best_fixed"] = _difference([r["fresh"]["leak_minus_best_fixed"] for r in rows], "the policy leaks less", "the best grid point leaks less")
            # the same policy measured twice per seed (first and fresh), averaged: half the measurement variance
            both = [(r["leak"] + r["fresh"]["leak"]) / 2 for r in rows]
            errors = [None if None in (r["leak_standard_error"], r["fresh"]["leak_standard_error"]) else math.hypot(r["leak_standard_error"], r["fresh"]["leak_standard_error"]) / 2 for r in rows]
            per_lambda[lam]["leak_two_measurements"] = spread(both)
            per_lambda[lam]["leak_two_measurements_noise"] = _noise(both, errors)
    hypervolume = {
        axis: {side: spread([s["hypervolume"][axis][side] for s in seeds]) for side in SIDES}
        | {"policy_minus_fixed": _difference([s["hypervolume"][axis][POLICY] - s["hypervolume"][axis][FIXED] for s in seeds], "the grid's front is larger", "the policies' front is larger")}
        for axis in AXES
    }
    return {
        "what": "each sweep read as one seed: per leak_lambda the policy's figures and its difference from its sweep's best grid point (first measurement), per leak axis the hypervolumes; mean and 95% t-interval over the sweeps",
        "leak": "the training batches' worst attack (the probe door left out)" if training_batches_only else "each trial's worst message: the training batches' worst attack or the probe door",
        "folders": [str(f) for f in folders],
        "data_root": roots.pop(),
        "per_sweep": seeds,
        # sweeps run only for more policy seeds (a grid of 1) read the policy's own rows alone:
        # a best grid point, a grid front or a hypervolume over unlike grids is not one quantity
        "grid_points": grid_sizes,
        "grids_differ": len(set(grid_sizes)) > 1,
        "per_leak_lambda": per_lambda,
        "hypervolume": hypervolume,
    }


def _pct(s: dict) -> str:
    return f"{100 * s['mean']:.1f} [{100 * s['ci'][0]:.1f}, {100 * s['ci'][1]:.1f}] (width {100 * s['width']:.1f})"


def _noise_lines(summary: dict) -> list[str]:
    """Where the policy's leak spread over seeds comes from (points)."""
    lines = []
    for lam, row in summary["per_leak_lambda"].items():
        counts = sorted(set(row.get("measurements_per_seed", [1])))
        first = "one measurement per seed" if counts == [1] else f"{' or '.join(map(str, counts))} measurements averaged per seed"
        for key, value, what in (
            ("leak_noise", "leak", first),
            ("leak_two_measurements_noise", "leak_two_measurements", "first and fresh measurement averaged per seed"),
        ):
            n = row.get(key)
            if not n:
                continue
            need = n["measurements_per_seed_for_target"]
            unit = ("measurement(s)" if counts == [1] else f"average(s) of {' or '.join(map(str, counts))} measurements") if key == "leak_noise" else "averages of two"
            lines.append(
                f"- leak_lambda {lam}, {what}: policy leak {_pct(row[value])}; measurement noise alone gives a width of {100 * n['width_from_measurement_alone']:.1f} "
                f"(sd over seeds {100 * n['sd_between_seeds']:.1f}, rms standard error {100 * n['rms_standard_error']:.1f}, sd beyond the noise {100 * n['sd_beyond_measurement']:.1f}); "
                + (f"a width of {100 * n['target_width']:.0f} at this N needs {need} such {unit} per seed" if need else f"no number of measurements per seed reaches a width of {100 * n['target_width']:.0f} at this N")
            )
    return ["", "Where the policy's leak spread comes from:", "", *lines] if lines else []


def markdown(summary: dict) -> str:
    lines = [
        f"{len(summary['folders'])} sweeps as seeds ({summary['data_root']}); leak: {summary['leak']}; mean [95% t-interval] in points",
        "",
        *(
            [f"**The sweeps' grids differ in size ({', '.join(map(str, summary['grid_points']))} points): read the policy's own figures (leak, identification, the spread below) only; everything that compares with the grid mixes unlike grids.**", ""]
            if summary["grids_differ"]
            else [f"**The sweeps ran for the policy alone (grids of {min(summary['grid_points'])} point): read the policy's own figures only; a best grid point, a front or a hypervolume of one point says nothing about the grid.**", ""]
            if min(summary["grid_points"]) < 2
            else []
        ),
        "| leak_lambda | policy leak | identification | leak above reference | leak minus best grid point | identification minus best grid point |",
        "|---|---|---|---|---|---|",
    ]
    for lam, row in summary["per_leak_lambda"].items():
        cells = [_pct(row[k]) for k in ("leak", "utility", "above_reference", "leak_minus_best_fixed", "utility_minus_best_fixed")]
        lines.append(f"| {lam} | " + " | ".join(cells) + " |")
    lines += _noise_lines(summary)
    fresh = {lam: row["fresh_leak_minus_best_fixed"] for lam, row in summary["per_leak_lambda"].items() if "fresh_leak_minus_best_fixed" in row}
    if fresh:
        lines += ["", "Measured again (the sweeps' confirmations), leak minus best grid point: " + "; ".join(f"leak_lambda {lam}: {_pct(s)}, {s['verdict']}" for lam, s in fresh.items())]
    lines += ["", "Sweeps in which one front weakly dominates the other (by the means / within the 95% intervals; both directions within the intervals: the fronts cannot be told apart):", ""]
    for verdict, title in (("policy_front_weakly_dominates_fixed_front", "policies over grid"), ("fixed_front_weakly_dominates_policy_front", "grid over policies")):
        counts = [
            f"{axis} {sum(s[verdict][axis] for s in summary['per_sweep'])} / {sum(s.get(verdict + '_within_intervals', {}).get(axis, False) for s in summary['per_sweep'])} of {len(summary['per_sweep'])}"
            for axis in AXES
        ]
        lines.append(f"- {title}: " + "; ".join(counts))
    lines += ["", "| leak axis | hypervolume, policies | hypervolume, grid | policies minus grid |", "|---|---|---|---|"]
    for axis, hv in summary["hypervolume"].items():
        cells = [f"{hv[k]['mean']:.3f} [{hv[k]['ci'][0]:.3f}, {hv[k]['ci'][1]:.3f}]" for k in (*SIDES, "policy_minus_fixed")]
        lines.append(f"| {axis} | " + " | ".join(cells) + f" ({hv['policy_minus_fixed']['verdict']}) |")
    return "\n".join(lines) + "\n"

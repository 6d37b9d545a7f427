"""A benchmark measured over several seeds, read on a subset of them.

``benchmark.seeds`` = N measures a defence N times (fresh FR network, draws, attackers and
judge each time) and keeps every seed's figure beside the mean (``stats.aggregate``'s
``seeds`` lists). Read on its first m seeds, it is what a benchmark of m seeds would have
reported; read on one seed, it is that measurement alone. That shows, from one run, how an
interval over sweep seeds narrows with measurements per seed (``sweep.policy_seeds``), and
what one measurement's own noise is, measured rather than read off a Wilson interval.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rl_mask.bench.aggregate import UTILITY_KEY
from rl_mask.bench.stats import accuracy_trials, aggregate
from rl_mask.bench.sweep_plan import POLICY, Trial
from rl_mask.bench.sweep_report import raw_leak, trial_record
from rl_mask.bench.sweep_seeds import spread


def _subset(figures: dict, indices: list[int], trials: dict[str, int] | Callable[[dict], dict[str, int]] | None = None) -> dict:
    """An aggregated cell (``stats.aggregate``'s output, its ``seeds`` lists kept) aggregated
    again over the seeds ``indices`` alone, with the same rules: a t-interval over several
    seeds (proportions in ``trials`` clipped to [0, 1]), a Wilson interval for one seed."""
    per_seed = [{key: values[i] for key, values in figures.get("seeds", {}).items()} for i in indices]
    out = aggregate(per_seed, trials(per_seed[0]) if callable(trials) else trials)
    kept = {k: v for k, v in figures.items() if k not in out and k not in ("ci", "seeds", "ci_method")}
    return {**kept, **out}


def measured_on(results: dict, indices: list[int]) -> dict:
    """Benchmark ``results`` read on the seeds ``indices`` (0-based, each < ``results["seeds"]``):
    every defence's utility and attack cells, and the judge, as a benchmark of those seeds
    would have aggregated them (a t-interval over several, a Wilson interval for one; on one
    seed the relative leaks, ``*_rel``, get none)."""
    n = int(results["seeds"])
    if not indices or any(not 0 <= i < n for i in indices) or len(set(indices)) != len(indices):
        raise ValueError(f"seeds {indices}: each must be one of the {n} measured (0..{n - 1}), without repeats")
    n_test = int(results["data"]["private_test_images"])
    # new dicts where figures change; the rest is shared with ``results`` (read, never written)
    return {
        **results,
        "seeds": len(indices),
        "per_seed": [results["per_seed"][i] for i in indices] if "per_seed" in results else None,
        "evaluation_model": _subset(results["evaluation_model"], indices, {"test_acc": n_test, "test_top5": n_test, "train_acc": 0}),
        "defences": [
            {
                **row,
                "utility": _subset(row["utility"], indices, {UTILITY_KEY: n_test, "identification_top5": n_test}),
                "attacks": {a: _subset(c, indices, accuracy_trials) for a, c in row["attacks"].items()},
            }
            for row in results["defences"]
        ],
    }


def _policy_record(key: str, leak_lambda: float, results: dict, indices: list[int]) -> dict:
    return trial_record(Trial(key, POLICY, leak_lambda=leak_lambda), measured_on(results, indices), 0, 0.0)


def width_by_measurements(sweeps: list[tuple[dict, dict[str, dict]]], target_width: float) -> dict:
    """Sweeps read as seeds (each: its ``results.json`` and, per policy trial key, the trial's
    benchmark results over N measurements): per ``leak_lambda`` and for m = 1..N (the fewest
    any sweep has), each seed's policy figures from its first m measurements, as a sweep with
    ``sweep.policy_seeds`` = m would have recorded them, and their mean, 95% t-interval over the
    seeds and its width against ``target_width``; and per seed every measurement alone (the
    worst message, the training batches' worst attack, the probe door, identification) with
    the spread between them: one measurement's own noise."""
    if len(sweeps) < 2:
        raise ValueError(f"need at least 2 sweeps to read as seeds, got {len(sweeps)}")
    keys = [sorted(measures) for _, measures in sweeps]
    if any(k != keys[0] for k in keys) or not keys[0]:
        raise ValueError(f"the sweeps' policy trials differ: {keys}")
    out: dict = {}
    for key in keys[0]:
        leak_lambda = next(t["leak_lambda"] for t in sweeps[0][0]["trials"] if t["key"] == key)
        counts = [int(measures[key]["seeds"]) for _, measures in sweeps]
        per_seed = []
        for _, measures in sweeps:
            alone = [_policy_record(key, leak_lambda, measures[key], [i]) for i in range(int(measures[key]["seeds"]))]
            leaks = [raw_leak(r) for r in alone]
            per_seed.append({
                "worst_message": leaks,
                "training_batches": [r["leak"] for r in alone],
                "probe_door": [r["door_leak"] for r in alone],
                "identification": [r["utility"] for r in alone],
                "sd_between_measurements": float(np.std(leaks, ddof=1)) if len(leaks) > 1 else None,
            })
        by_m = []
        for m in range(1, min(counts) + 1):
            records = [_policy_record(key, leak_lambda, measures[key], list(range(m))) for _, measures in sweeps]
            leak = spread([raw_leak(r) for r in records])
            by_m.append({"measurements": m, "leak": leak, "identification": spread([r["utility"] for r in records]), "within_target": bool(leak["width"] <= target_width)})
        sds = [s["sd_between_measurements"] for s in per_seed if s["sd_between_measurements"] is not None]
        out[str(leak_lambda)] = {
            "key": key,
            "measurements": counts,
            "target_width": target_width,
            "per_seed": per_seed,
            # one measurement's noise, pooled over the seeds (root mean variance)
            "sd_of_one_measurement": float(np.sqrt(np.mean(np.square(sds)))) if sds else None,
            "by_measurements_per_seed": by_m,
        }
    return out


def markdown(summary: dict) -> str:
    lines = []
    for lam, row in summary.items():
        lines += [
            f"leak_lambda {lam}: {len(row['per_seed'])} sweeps as seeds, measurements per seed {row['measurements']}; the worst message's leak "
            f"(mean [95% t-interval over the seeds], width), target width {100 * row['target_width']:.0f}",
            "",
            "| measurements per seed | policy leak | width | identification |",
            "|---|---|---|---|",
        ]
        for r in row["by_measurements_per_seed"]:
            s, u = r["leak"], r["identification"]
            lines.append(f"| {r['measurements']} | {100 * s['mean']:.1f} [{100 * s['ci'][0]:.1f}, {100 * s['ci'][1]:.1f}] | {100 * s['width']:.1f}{'' if r['within_target'] else ' (over)'} | {100 * u['mean']:.1f} |")
        lines += ["", "| seed | each measurement alone: worst message (training batches / probe door) | sd between them |", "|---|---|---|"]
        for i, s in enumerate(row["per_seed"]):
            each = ", ".join(f"{100 * w:.1f} ({100 * b:.1f}/{'-' if d is None else f'{100 * d:.1f}'})" for w, b, d in zip(s["worst_message"], s["training_batches"], s["probe_door"]))
            sd = s["sd_between_measurements"]
            lines.append(f"| {i + 1} | {each} | {'-' if sd is None else f'{100 * sd:.1f}'} |")
        one = row["sd_of_one_measurement"]
        lines += ["", f"One measurement's own sd, pooled: {'-' if one is None else f'{100 * one:.1f}'} points.", ""]
    return "\n".join(lines)

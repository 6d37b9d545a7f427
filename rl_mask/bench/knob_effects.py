"""What each knob value costs and protects across sweeps, and what the policies chose.

A sweep measures 24 grid points; one point's identification on 40-60 test faces carries
10-15 points of noise, so no single sweep says which knob costs the FR network most. Pooled
over several sweeps of one face set, every knob value is read over every grid point that has
it (the other knobs vary alike): mean identification and worst-message leak with their 95%
t-intervals. Beside them, the policies' mean share of batches per knob value (their deployed
action distribution), so a policy that spends its batches on a value the grid finds costly
shows as such. Read-only over ``results.json``; nothing is re-measured.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rl_mask.bench.stats import t_interval
from rl_mask.bench.sweep_plan import FIXED, POLICY
from rl_mask.bench.sweep_report import raw_leak
from rl_mask.config import parse_settings
from rl_mask.mask.settings import DIMENSIONS


def _interval(values: list[float]) -> list[float] | None:
    return list(t_interval(values)) if len(values) >= 2 else None


def knob_effects(sweeps: list[dict]) -> dict:
    """``sweeps``: the ``results.json`` of finished sweeps of one face set."""
    grid: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"utility": [], "leak": []})
    policies = []
    for results in sweeps:
        for trial in results["trials"]:
            if trial["kind"] == FIXED:
                for knob, value in parse_settings(trial["setting"]).items():
                    cell = grid[(knob, str(value))]
                    cell["utility"].append(trial["utility"])
                    cell["leak"].append(raw_leak(trial))
            elif trial["kind"] == POLICY and trial.get("action_distribution"):
                policies.append(trial)
    rows = []
    for knob in DIMENSIONS:
        for (_, value), cell in sorted(((k, c) for k, c in grid.items() if k[0] == knob), key=lambda kc: _order(kc[0][1])):
            shares = [p["action_distribution"].get(knob, {}).get(value, 0.0) for p in policies]
            rows.append({
                "knob": knob,
                "value": value,
                "grid_points": len(cell["utility"]),
                "utility": float(np.mean(cell["utility"])),
                "utility_ci": _interval(cell["utility"]),
                "leak": float(np.mean(cell["leak"])),
                "leak_ci": _interval(cell["leak"]),
                "policy_share": float(np.mean(shares)) if shares else None,
                "policy_share_range": [float(min(shares)), float(max(shares))] if shares else None,
            })
    return {"sweeps": len(sweeps), "grid_trials": sum(t["kind"] == FIXED for r in sweeps for t in r["trials"]), "policies": len(policies), "policy_utility": [p["utility"] for p in policies], "rows": rows}


def _order(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def markdown(effects: dict) -> str:
    def pct(x):
        return "" if x is None else f"{100 * x:.1f}%"

    def ci(c):
        return "" if c is None else f" [{100 * c[0]:.1f}, {100 * c[1]:.1f}]"

    lines = [
        f"{effects['sweeps']} sweep(s), {effects['grid_trials']} grid trials, {effects['policies']} policies "
        f"(identification {', '.join(pct(u) for u in effects['policy_utility'])}).",
        "",
        "| knob | value | grid points | grid identification | grid leak (worst message) | policies' share of batches (range) |",
        "|---|---|---|---|---|---|",
    ]
    for r in effects["rows"]:
        share = "" if r["policy_share"] is None else f"{pct(r['policy_share'])} ({pct(r['policy_share_range'][0])}-{pct(r['policy_share_range'][1])})"
        lines.append(f"| {r['knob']} | {r['value']} | {r['grid_points']} | {pct(r['utility'])}{ci(r['utility_ci'])} | {pct(r['leak'])}{ci(r['leak_ci'])} | {share} |")
    return "\n".join(lines)

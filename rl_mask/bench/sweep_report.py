"""The outputs of ``rl-mask sweep``: one record per trial (``trial_record``, from the trial's
benchmark results), and for the whole sweep ``results.json``, ``results.md`` (every trial,
both fronts with their hypervolume, FR steps and wall time per side, which front points
dominate which) and ``front.png`` (both fronts with 95% error bars)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rl_mask.bench.front import REFERENCE, best_at_utility, dominance, hypervolume, pareto_front, weakly_dominates  # noqa: E402
from rl_mask.bench.report import counted, worst_case  # noqa: E402
from rl_mask.bench.sweep_plan import FIXED, POLICY, Trial  # noqa: E402
from rl_mask.checkpoint import atomic_write_text  # noqa: E402
from rl_mask.config import EVAL_DOOR_ATTACKS  # noqa: E402

SIDES = {POLICY: "policy (RL sweep)", FIXED: "fixed grid"}
UTILITY = "identification_acc"


def trial_record(trial: Trial, results: dict, fr_steps_training: int, wall_seconds: float) -> dict:
    """A trial's figures from its benchmark results (one row: the deployed policy or the fixed
    point): utility, the worst judged leak of the training batches (and which attack), the
    probe door's leak, each with its 95% interval, and FR steps."""
    row = results["defences"][0]
    cells = counted(row)
    # the front's leak: the training batches, which the policy's settings protect; the evaluation
    # door (k = 1 encodings of held-out faces, the same for every trial) is reported beside it
    attack, cell = worst_case({"attacks": {a: c for a, c in cells.items() if a not in EVAL_DOOR_ATTACKS}})
    door = {a: c for a, c in cells.items() if a in EVAL_DOOR_ATTACKS}
    door_attack = max(door, key=lambda a: door[a]["acc1"]) if door else None
    utility = row["utility"]
    measured = int(row.get("fr_steps", 0))
    return {
        "key": trial.key,
        "kind": trial.kind,
        "leak_lambda": trial.leak_lambda,
        "setting": trial.setting,
        "utility": utility[UTILITY],
        "utility_ci": utility.get("ci", {}).get(UTILITY),
        "leak": cell["acc1"],
        "leak_ci": cell.get("ci", {}).get("acc1"),
        # the do-nothing attacker's figure on the same rows (its any-of-k floor grows with k)
        "leak_reference": cell.get("reference_acc1"),
        "worst_attack": attack,
        "door_leak": door[door_attack]["acc1"] if door else None,
        "door_leak_ci": door[door_attack].get("ci", {}).get("acc1") if door else None,
        "leak_by_attack": {a: c["acc1"] for a, c in cells.items()},
        "fr_steps_training": int(fr_steps_training),
        "fr_steps_measured": measured,
        "fr_steps": int(fr_steps_training) + measured,
        "wall_seconds": round(float(wall_seconds), 2),
        "judge_test_acc": results["evaluation_model"]["test_acc"],
        "judge_competent": bool(results["evaluation_model"]["competent"]),
        "chance_acc1": results["data"]["chance_acc1"],
        "action_distribution": row.get("action_distribution"),
        "seeds": results["seeds"],
        "mode": results["mode"],
    }


def raw_leak(record: dict) -> float:
    return record["leak"]


def leak_above_reference(record: dict) -> float:
    """The leak beyond the do-nothing attacker on the same rows, 0 when at or below it: the
    any-of-k figure's chance floor grows with k, so raw leaks of different k do not compare."""
    return max(0.0, record["leak"] - record["leak_reference"])


def _points(records: list[dict], leak_of=raw_leak) -> list[tuple[str, float, float]]:
    return [(r["key"], leak_of(r), r["utility"]) for r in records]


def fronts(records: list[dict], leak_of=raw_leak) -> dict:
    """On one leak axis: each side's front and hypervolume, which front points dominate which,
    and whether one front weakly dominates the other (by the means)."""
    points = {kind: _points([r for r in records if r["kind"] == kind], leak_of) for kind in SIDES}
    names = {kind: pareto_front(points[kind]) for kind in SIDES}
    on_front = {kind: [p for p in points[kind] if p[0] in names[kind]] for kind in SIDES}
    policy, fixed = on_front[POLICY], on_front[FIXED]
    return {
        "front": names,
        "hypervolume": {kind: hypervolume(points[kind]) if points[kind] else 0.0 for kind in SIDES},
        "policy_dominates": dominance(policy, fixed),
        "fixed_dominates": dominance(fixed, policy),
        "policy_front_weakly_dominates_fixed_front": bool(policy and fixed and weakly_dominates(policy, fixed)),
        "fixed_front_weakly_dominates_policy_front": bool(policy and fixed and weakly_dominates(fixed, policy)),
    }


def _apart(a: list[float] | None, b: list[float] | None) -> bool:
    """Two 95% intervals that do not overlap (a conservative reading of a difference)."""
    return bool(a and b and (a[1] < b[0] or b[1] < a[0]))


def best_fixed_comparison(records: list[dict], tolerance: float) -> list[dict]:
    """Each policy trial against the best fixed point of the grid drawn, picked as the
    benchmark's ``best-fixed`` row is (``pick_best_fixed``): the lowest leak among the points
    whose identification is at least the policy's minus ``tolerance``, else the most accurate
    point. The pick reads the same measurements it is compared on, which favours the grid."""
    grid = [r for r in records if r["kind"] == FIXED]
    if not grid:
        return []
    out = []
    for policy in (r for r in records if r["kind"] == POLICY):
        best, matched = best_at_utility(grid, lambda r: r["utility"], raw_leak, target=policy["utility"], tolerance=tolerance)
        rule = f"lowest leak within {100 * tolerance:g} points of the policy's identification" if matched else "no grid point that accurate: the most accurate one"
        leak_apart = _apart(policy.get("leak_ci"), best.get("leak_ci"))
        if leak_apart:
            verdict = "the policy leaks less" if policy["leak"] < best["leak"] else "the grid point leaks less"
        else:
            verdict = "no difference the intervals show"
        out.append({
            "policy": policy["key"], "best_fixed": best["key"], "rule": rule,
            "policy_leak": policy["leak"], "policy_leak_ci": policy.get("leak_ci"), "fixed_leak": best["leak"], "fixed_leak_ci": best.get("leak_ci"),
            "policy_utility": policy["utility"], "policy_utility_ci": policy.get("utility_ci"), "fixed_utility": best["utility"], "fixed_utility_ci": best.get("utility_ci"),
            "leak_intervals_apart": leak_apart, "utility_intervals_apart": _apart(policy.get("utility_ci"), best.get("utility_ci")), "verdict": verdict,
        })
    return out


def summarize(records: list[dict], tolerance: float = 0.02) -> dict:
    """Per side: trials, front, hypervolume, FR steps and summed trial wall time; across sides
    which front points dominate which, and whether one front weakly dominates the other; and
    each policy against the best fixed point of the grid (``best_fixed_comparison``)."""
    raw = fronts(records)
    sides = {}
    for kind in SIDES:
        rows = [r for r in records if r["kind"] == kind]
        sides[kind] = {
            "trials": len(rows),
            "front": raw["front"][kind],
            "hypervolume": raw["hypervolume"][kind],
            "fr_steps": sum(r["fr_steps"] for r in rows),
            "trial_wall_seconds": round(sum(r["wall_seconds"] for r in rows), 2),
        }
    referenced = all(r.get("leak_reference") is not None for r in records)
    return {
        "sides": sides,
        **{k: raw[k] for k in ("policy_dominates", "fixed_dominates", "policy_front_weakly_dominates_fixed_front", "fixed_front_weakly_dominates_policy_front")},
        # the same on the leak above the do-nothing reference (None: records without it)
        "above_reference": fronts(records, leak_above_reference) if records and referenced else None,
        "fr_steps_ratio_policy_to_fixed": (sides[POLICY]["fr_steps"] / sides[FIXED]["fr_steps"]) if sides[FIXED]["fr_steps"] else None,
        "hypervolume_reference": {"leak": REFERENCE[0], "utility": REFERENCE[1]},
        "best_fixed_tolerance": tolerance,
        "policy_vs_best_fixed": best_fixed_comparison(records, tolerance),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _with_ci(value: float, ci: list[float] | None) -> str:
    return _pct(value) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _dominance_lines(fronts_: dict, prefix: str = "") -> list[str]:
    """One line per front point that dominates points of the other side."""
    return [
        f"- {prefix}{label} front point `{name}` dominates {', '.join(f'`{b}`' for b in beaten)}."
        for label, mapping in (("policy", fronts_["policy_dominates"]), ("grid", fronts_["fixed_dominates"]))
        for name, beaten in mapping.items()
        if beaten
    ]


def _above(record: dict) -> str:
    """The leak minus the do-nothing reference on the same rows, in points (records from before
    the reference was kept show n/a)."""
    ref = record.get("leak_reference")
    return "n/a" if ref is None else f"{100 * (record['leak'] - ref):+.1f} (reference {100 * ref:.1f}%)"


def markdown(results: dict) -> str:
    s = results["summary"]
    sides = s["sides"]
    records = results["trials"]
    lines = [
        "# rl-mask sweep: privacy-utility fronts",
        "",
        f"Mode `{results['mode']}`, {results['seeds']} measurement seed(s) per trial, data `{results['data_root']}`. "
        f"Every trial is measured by the benchmark (`rl-mask benchmark`, same budget, attacks {', '.join(f'`{a}`' for a in results['attacks'])}): "
        "a policy trial trains a policy with its `rl.leak_lambda` (`rl-mask train`), then deploys it on a fresh FR network; a fixed trial "
        "trains the FR network under one fixed setting of the knobs. Leak = the worst judged attack's identity leak (acc@1, any of the k "
        "mixed identities) on the training batches, which the settings protect; the probe door (`whitebox-eval`: the k = 1 inference probes of held-out faces, "
        "the same encoding in every trial) is its own column and not on the front's axis, so read a trial's worst case as the larger of the two. "
        "Utility = identification acc@1 on held-out private faces. 95% intervals (one seed: Wilson over the judged samples).",
        "",
        f"Fixed grid: {results['grid']}.",
        "",
        "## The two sides",
        "",
        "| side | trials | front | hypervolume | FR steps | summed trial wall time |",
        "|---|---|---|---|---|---|",
    ]
    for kind, title in SIDES.items():
        side = sides[kind]
        lines.append(f"| {title} | {side['trials']} | {len(side['front'])} point(s) | {side['hypervolume']:.4f} | {side['fr_steps']} | {side['trial_wall_seconds'] / 60:.1f} min |")
    ratio = s["fr_steps_ratio_policy_to_fixed"]
    lines += [
        "",
        f"Hypervolume: the area of the (leak, utility) square dominated by a side's points, from the reference point leak = {REFERENCE[0]:g}, utility = {REFERENCE[1]:g} (higher is better; 1 would be zero leak at full utility).",
        f"The policy side spent {'n/a' if ratio is None else f'{ratio:.2f}x'} the FR steps of the grid (its training steps plus the deployment's). "
        f"Sweep wall time {results['wall_seconds'] / 60:.1f} min over all its attempts (trials run side by side as resources allow).",
        "",
        f"- The policy front weakly dominates the grid front (by the means): **{'yes' if s['policy_front_weakly_dominates_fixed_front'] else 'no'}**.",
        f"- The grid front weakly dominates the policy front (by the means): **{'yes' if s['fixed_front_weakly_dominates_policy_front'] else 'no'}**.",
    ]
    lines += _dominance_lines(s)
    above = s.get("above_reference")
    if above:
        hv = above["hypervolume"]
        lines += [
            "",
            f"**On the leak above the do-nothing reference** (each trial's worst leak minus the do-nothing attacker's on the same rows, 0 at or below it; "
            f"the raw any-of-k leak's chance floor grows with k, so raw leaks of different k do not compare): hypervolume policy {hv[POLICY]:.4f}, grid {hv[FIXED]:.4f}; "
            f"the policy front weakly dominates the grid front: **{'yes' if above['policy_front_weakly_dominates_fixed_front'] else 'no'}**; "
            f"the grid front the policy front: **{'yes' if above['fixed_front_weakly_dominates_policy_front'] else 'no'}**.",
        ]
        lines += _dominance_lines(above, "(above the reference) ")
    lines += ["", "Dominance is read from the means; with intervals as wide as below, a single-seed difference is not evidence."]
    comparison = s.get("policy_vs_best_fixed", [])
    if comparison:
        lines += [
            "",
            "## Each policy against the best fixed point of the grid",
            "",
            f"The grid point is picked as the benchmark's `best-fixed` row is: the lowest leak among the points whose identification is at least the policy's minus "
            f"{100 * s['best_fixed_tolerance']:g} points (else the most accurate point). It is picked on the same measurements it is compared on, which favours the grid. "
            "A difference counts only where the 95% intervals are apart.",
            "",
            "| policy | best fixed point of the grid | leak: policy | leak: grid point | identification: policy | identification: grid point | reading |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in comparison:
            lines.append(
                f"| `{c['policy']}` | `{c['best_fixed']}` | {_with_ci(c['policy_leak'], c['policy_leak_ci'])} | {_with_ci(c['fixed_leak'], c['fixed_leak_ci'])} "
                f"| {_with_ci(c['policy_utility'], c['policy_utility_ci'])} | {_with_ci(c['fixed_utility'], c['fixed_utility_ci'])} | {c['verdict']} |"
            )
    lines += ["", "## Every trial", ""]
    lines += ["| trial | on its side's front | identification acc@1 | training-batch leak (worst attack) | leak above the do-nothing reference | probe door | FR steps (training + measured) | wall |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        on_front = "yes" if r["key"] in sides[r["kind"]]["front"] else ""
        judge = "" if r["judge_competent"] else " (judge below floor: UNRELIABLE)"
        lines.append(
            f"| `{r['key']}` | {on_front} | {_with_ci(r['utility'], r['utility_ci'])} | {_with_ci(r['leak'], r['leak_ci'])} ({r['worst_attack']}){judge} "
            f"| {_above(r)} | {'not run' if r['door_leak'] is None else _with_ci(r['door_leak'], r['door_leak_ci'])} "
            f"| {r['fr_steps']} ({r['fr_steps_training']} + {r['fr_steps_measured']}) | {r['wall_seconds'] / 60:.1f} min |"
        )
    lines += ["", "Plot: `front.png` (every trial with its 95% intervals, each side's front joined)."]
    return "\n".join(lines) + "\n"


def _err(value: float, ci: list[float] | None) -> list[list[float]]:
    return [[value - ci[0]], [ci[1] - value]] if ci else [[0.0], [0.0]]


def _panel(ax, records: list[dict], front_of: dict, hv: dict, shift, title: str, xlabel: str) -> None:
    """One leak axis: every trial with its intervals (``shift(r)`` subtracted from the leak),
    each side's front joined."""
    for kind, color, marker in ((FIXED, "tab:blue", "s"), (POLICY, "tab:red", "o")):
        rows = [r for r in records if r["kind"] == kind]
        front = set(front_of[kind])
        for i, r in enumerate(rows):
            x, ci = r["leak"] - shift(r), [c - shift(r) for c in r["leak_ci"]] if r["leak_ci"] else None
            ax.errorbar(x, r["utility"], xerr=_err(x, ci), yerr=_err(r["utility"], r["utility_ci"]), fmt=marker, ms=6,
                        capsize=2, color=color, alpha=1.0 if r["key"] in front else 0.35, label=SIDES[kind] if i == 0 else None, zorder=3)
            if kind == POLICY:
                ax.annotate(f"λ={r['leak_lambda']:g}", (x, r["utility"]), textcoords="offset points", xytext=(5, 4), fontsize=8, color=color)
        fp = sorted((r["leak"] - shift(r), r["utility"]) for r in rows if r["key"] in front)
        if len(fp) > 1:
            ax.step(*zip(*fp), where="post", color=color, alpha=0.6, zorder=2)
    ax.set_title(f"{title}: hypervolume policy {hv[POLICY]:.3f}, grid {hv[FIXED]:.3f}", fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("utility: identification acc@1 (held-out)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def plot_fronts(results: dict, path: Path) -> None:
    """Both fronts on the raw leak (left) and, where the records hold it, on the leak above the
    do-nothing reference (right; the front's hypervolume there counts a leak below it as 0)."""
    records, summary = results["trials"], results["summary"]
    above = summary.get("above_reference")
    fig, axes = plt.subplots(1, 2 if above else 1, figsize=(13.0 if above else 7.0, 5.2), squeeze=False)
    raw_ax = axes[0][0]
    _panel(raw_ax, records, {k: summary["sides"][k]["front"] for k in SIDES}, {k: summary["sides"][k]["hypervolume"] for k in SIDES}, lambda r: 0.0,
           f"rl-mask sweep ({results['mode']}), raw leak", "identity leak of the training batches: worst judged attack acc@1  [lower is more private]")
    raw_ax.set_xlim(-0.02, 1.02)
    chance = records[0]["chance_acc1"] if records else None
    if chance:
        raw_ax.axvline(chance, color="grey", ls="--", lw=1)
        raw_ax.text(chance, 0.02, " chance", color="grey", fontsize=8)
    if above:
        ax = axes[0][1]
        _panel(ax, records, above["front"], above["hypervolume"], lambda r: r["leak_reference"], "above the do-nothing reference",
               "worst leak minus the do-nothing attacker's on the same rows  [0: no more than guessing]")
        ax.axvline(0.0, color="grey", ls="--", lw=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_sweep_report(results: dict, out: Path) -> None:
    """``results.json``, ``results.md``, ``front.png`` into the sweep folder."""
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "results.md", markdown(results))
    plot_fronts(results, out / "front.png")

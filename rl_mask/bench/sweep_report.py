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

from rl_mask.bench.front import REFERENCE, best_at_utility, dominance, hypervolume, pareto_front, weakly_dominates, weakly_dominates_within  # noqa: E402
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
    # the training batches' worst attack and the probe door's (k = 1 encodings of held-out faces,
    # flipped as the setting's evaluation messages are), apart: the front reads the worse of the two
    attack, cell = worst_case({"attacks": {a: c for a, c in cells.items() if a not in EVAL_DOOR_ATTACKS}})
    door = {a: c for a, c in cells.items() if a in EVAL_DOOR_ATTACKS}
    door_attack = max(door, key=lambda a: door[a]["acc1"]) if door else None
    utility = row["utility"]
    measured = int(row.get("fr_steps", 0))
    return {
        "key": trial.key,
        "kind": trial.kind,
        "confirms": trial.confirms,
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
        "door_leak_reference": door[door_attack].get("reference_acc1") if door else None,
        "leak_by_attack": {a: c["acc1"] for a, c in cells.items()},
        "fr_steps_training": int(fr_steps_training),
        "fr_steps_measured": measured,
        "fr_steps": int(fr_steps_training) + measured,
        # measurements beyond the first (a policy trial measured over sweep.policy_seeds): their
        # FR steps narrow the figure's interval, they search nothing; reported apart from fr_steps
        "fr_steps_repeats": measured * (int(results["seeds"]) - 1),
        "wall_seconds": round(float(wall_seconds), 2),
        "judge_test_acc": results["evaluation_model"]["test_acc"],
        "judge_competent": bool(results["evaluation_model"]["competent"]),
        "chance_acc1": results["data"]["chance_acc1"],
        "action_distribution": row.get("action_distribution"),
        "attacked_settings": row.get("attacked_settings"),
        "seeds": results["seeds"],
        "mode": results["mode"],
    }


def _messages(record: dict) -> list[tuple[str, float, list[float] | None, float | None]]:
    """What an attacker holds of a trial, each as (message, leak, 95% interval, the do-nothing
    attacker's figure on it): the training batches (their worst attack) and, where it was
    attacked, the probe door (its reference: the k = 1 probes' do-nothing figure; records from
    before it was kept: chance)."""
    out = [("training batches", record["leak"], record.get("leak_ci"), record.get("leak_reference"))]
    if record.get("door_leak") is not None:
        reference = record.get("door_leak_reference")
        out.append(("probe door", record["door_leak"], record.get("door_leak_ci"), record.get("chance_acc1") if reference is None else reference))
    return out


def worst_message(record: dict) -> tuple[str, float, list[float] | None]:
    """The message that leaks most (raw) and its leak and interval: every message counts, so the
    front's raw leak is the worse of the training batches and the probe door (as the benchmark's
    worst case is)."""
    name, leak, ci, _ = max(_messages(record), key=lambda m: m[1])
    return name, leak, ci


def raw_leak(record: dict) -> float:
    return worst_message(record)[1]


def worst_above_reference(record: dict) -> tuple[float, list[float] | None]:
    """The largest excess over the do-nothing attacker among the messages, and its interval
    shifted the same way (not clipped at 0: for plotting)."""
    rows = [(leak - ref, [c - ref for c in ci] if ci else None) for _, leak, ci, ref in _messages(record) if ref is not None]
    return max(rows, key=lambda r: r[0])


def leak_above_reference(record: dict) -> float:
    """The leak beyond the do-nothing attacker on the same rows, 0 when at or below it, worst
    over the messages: the any-of-k figure's chance floor grows with k, so raw leaks of
    different k do not compare."""
    return max(0.0, worst_above_reference(record)[0])


def raw_leak_interval(record: dict) -> list[float]:
    """The 95% interval of ``raw_leak`` (the worst message's; the mean itself where none was kept)."""
    _, leak, ci = worst_message(record)
    return list(ci) if ci else [leak, leak]


def above_reference_interval(record: dict) -> list[float]:
    """The 95% interval of ``leak_above_reference``, clipped at 0 as the figure is."""
    excess, ci = worst_above_reference(record)
    return [max(0.0, c) for c in (ci or [excess, excess])]


#: The leak axes a front is read on: each a trial's leak and its 95% interval.
AXES = {"raw": (raw_leak, raw_leak_interval), "above_reference": (leak_above_reference, above_reference_interval)}


def _interval_points(records: list[dict], interval_of) -> dict[str, tuple]:
    return {r["key"]: (r["key"], tuple(interval_of(r)), tuple(r.get("utility_ci") or [r["utility"], r["utility"]])) for r in records}


def fronts(records: list[dict], axis: str = "raw") -> dict:
    """On one leak axis: each side's front and hypervolume, which front points dominate which,
    and whether one front weakly dominates the other, by the means and within the 95%
    intervals (``front.weakly_dominates_within``: a point of the other front counts as better
    only where an interval is apart)."""
    leak_of, interval_of = AXES[axis]
    points = {kind: [(r["key"], leak_of(r), r["utility"]) for r in records if r["kind"] == kind] for kind in SIDES}
    names = {kind: pareto_front(points[kind]) for kind in SIDES}
    on_front = {kind: [p for p in points[kind] if p[0] in names[kind]] for kind in SIDES}
    policy, fixed = on_front[POLICY], on_front[FIXED]
    intervals = _interval_points(records, interval_of)
    policy_within, fixed_within = ([intervals[name] for name in names[kind]] for kind in (POLICY, FIXED))
    return {
        "front": names,
        "hypervolume": {kind: hypervolume(points[kind]) if points[kind] else 0.0 for kind in SIDES},
        "policy_dominates": dominance(policy, fixed),
        "fixed_dominates": dominance(fixed, policy),
        "policy_front_weakly_dominates_fixed_front": bool(policy and fixed and weakly_dominates(policy, fixed)),
        "fixed_front_weakly_dominates_policy_front": bool(policy and fixed and weakly_dominates(fixed, policy)),
        "policy_front_weakly_dominates_fixed_front_within_intervals": bool(policy and fixed and weakly_dominates_within(policy_within, fixed_within)),
        "fixed_front_weakly_dominates_policy_front_within_intervals": bool(policy and fixed and weakly_dominates_within(fixed_within, policy_within)),
    }


def _apart(a: list[float] | None, b: list[float] | None) -> bool:
    """Two 95% intervals that do not overlap (a conservative reading of a difference)."""
    return bool(a and b and (a[1] < b[0] or b[1] < a[0]))


def pick_best_fixed(records: list[dict], policy: dict, tolerance: float) -> tuple[dict, str]:
    """The grid point a policy is compared with, picked as the benchmark's ``best-fixed`` row is
    (``pick_best_fixed``): the lowest leak among the points whose identification is at least the
    policy's minus ``tolerance``, else the most accurate point; and the rule that picked it."""
    grid = [r for r in records if r["kind"] == FIXED]
    best, matched = best_at_utility(grid, lambda r: r["utility"], raw_leak, target=policy["utility"], tolerance=tolerance)
    rule = f"lowest leak within {100 * tolerance:g} points of the policy's identification" if matched else "no grid point that accurate: the most accurate one"
    return best, rule


def compare(policy: dict, best: dict, rule: str) -> dict:
    """A policy's figures against a grid point's (each leak: its worst message), read through
    their 95% intervals."""
    p_message, p_leak, p_ci = worst_message(policy)
    f_message, f_leak, f_ci = worst_message(best)
    leak_apart = _apart(p_ci, f_ci)
    if leak_apart:
        verdict = "the policy leaks less" if p_leak < f_leak else "the grid point leaks less"
    else:
        verdict = "no difference the intervals show"
    return {
        "policy": policy["key"],
        "best_fixed": best["key"],
        "rule": rule,
        "policy_leak": p_leak,
        "policy_leak_ci": p_ci,
        "policy_leak_message": p_message,
        "fixed_leak": f_leak,
        "fixed_leak_ci": f_ci,
        "fixed_leak_message": f_message,
        "policy_utility": policy["utility"],
        "policy_utility_ci": policy.get("utility_ci"),
        "fixed_utility": best["utility"],
        "fixed_utility_ci": best.get("utility_ci"),
        "leak_intervals_apart": leak_apart,
        "utility_intervals_apart": _apart(policy.get("utility_ci"), best.get("utility_ci")),
        "verdict": verdict,
    }


def best_fixed_comparison(records: list[dict], tolerance: float) -> list[dict]:
    """Each policy trial against the best fixed point of the grid drawn (``pick_best_fixed``).
    The pick reads the same measurements it is compared on, which favours the grid (the
    confirmation, ``confirmed``, compares on a fresh measurement)."""
    if not any(r["kind"] == FIXED for r in records):
        return []
    return [compare(policy, *pick_best_fixed(records, policy, tolerance)) for policy in records if policy["kind"] == POLICY]


def _axes(records: list[dict]) -> list[str]:
    """The leak axes (``AXES``) the records allow: raw, and above the do-nothing reference where
    every record holds it."""
    return ["raw", "above_reference"] if records and all(r.get("leak_reference") is not None for r in records) else ["raw"]


def to_confirm(records: list[dict], tolerance: float) -> list[str]:
    """The trials whose figures were picked (each side's front on every leak axis, and the
    grid point each front policy is compared with), in the records' order: what the
    confirmation measures again."""
    picked: set[str] = set()
    for axis in _axes(records):
        for names in fronts(records, axis)["front"].values():
            picked.update(names)
    if any(r["kind"] == FIXED for r in records):
        for policy in records:
            if policy["kind"] == POLICY and policy["key"] in picked:
                picked.add(pick_best_fixed(records, policy, tolerance)[0]["key"])
    return [r["key"] for r in records if r["key"] in picked]


def moved(records: list[dict], confirmations: list[dict]) -> dict:
    """How far each side's picks moved from the first measurement to the fresh one, in points:
    the mean change (> 0 for the leak: the picks had been lucky) and its root mean square, beside
    the mean half-width of the first measurements' 95% intervals. A move well past the
    half-width says the one-seed intervals leave out the spread between measurements (FR
    network, attackers, judge)."""
    first = {r["key"]: r for r in records}
    out = {}
    for kind in SIDES:
        pairs = [(first[c["confirms"]], c) for c in confirmations if c["kind"] == kind]
        if not pairs:
            continue
        side = {"trials": len(pairs)}
        for figure, value_ci in (("leak", lambda r: worst_message(r)[1:]), ("utility", lambda r: (r["utility"], r.get("utility_ci")))):
            deltas = [100 * (value_ci(c)[0] - value_ci(f)[0]) for f, c in pairs]
            halves = [50 * (ci[1] - ci[0]) for ci in (value_ci(f)[1] for f, _ in pairs) if ci]
            side[figure] = {
                "mean_change_points": sum(deltas) / len(deltas),
                "rms_change_points": math.sqrt(sum(d * d for d in deltas) / len(deltas)),
                "mean_ci_half_width_points": sum(halves) / len(halves) if halves else None,
            }
        out[kind] = side
    return out


def confirmed(records: list[dict], confirmations: list[dict], tolerance: float) -> dict:
    """The picks measured again: on every leak axis, each side's front (picked on the first
    measurement) read on the fresh one (hypervolume, dominance); each front policy against the
    grid point picked for it on the first measurement, compared on the fresh one."""
    again = {c["confirms"]: c for c in confirmations}
    out = {"axes": {}, "policy_vs_best_fixed": [], "moved": moved(records, confirmations)}
    for axis in _axes(records):
        first = fronts(records, axis)["front"]
        held = [again[k] for kind in SIDES for k in first[kind] if k in again]
        summary = fronts(held, axis)
        summary["picked_on_first_measurement"] = first
        summary["missing"] = [k for kind in SIDES for k in first[kind] if k not in again]
        out["axes"][axis] = summary
    if any(r["kind"] == FIXED for r in records):
        for policy in records:
            if policy["kind"] != POLICY or policy["key"] not in again:
                continue
            best, rule = pick_best_fixed(records, policy, tolerance)
            if best["key"] in again:
                row = compare(again[policy["key"]], again[best["key"]], rule + " (picked on the first measurement)")
                row["policy"], row["best_fixed"] = policy["key"], best["key"]
                out["policy_vs_best_fixed"].append(row)
    return out


def summarize(records: list[dict], tolerance: float = 0.02, confirmations: list[dict] | None = None) -> dict:
    """Per side: trials, front, hypervolume, FR steps and summed trial wall time; across sides
    which front points dominate which, and whether one front weakly dominates the other; each
    policy against the best fixed point of the grid (``best_fixed_comparison``); and, given the
    confirmation trials' records, the picks read on their fresh measurement (``confirmed``)."""
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
            "confirmation_fr_steps": sum(r["fr_steps"] for r in confirmations or [] if r["kind"] == kind),
            "repeat_fr_steps": sum(r.get("fr_steps_repeats", 0) for r in rows),
        }
    return {
        "sides": sides,
        **{k: v for k, v in raw.items() if k not in ("front", "hypervolume")},
        # the same on the leak above the do-nothing reference (None: records without it)
        "above_reference": fronts(records, "above_reference") if "above_reference" in _axes(records) else None,
        "fr_steps_ratio_policy_to_fixed": (sides[POLICY]["fr_steps"] / sides[FIXED]["fr_steps"]) if sides[FIXED]["fr_steps"] else None,
        "hypervolume_reference": {"leak": REFERENCE[0], "utility": REFERENCE[1]},
        "best_fixed_tolerance": tolerance,
        "policy_vs_best_fixed": best_fixed_comparison(records, tolerance),
        "confirmed": None if confirmations is None else confirmed(records, confirmations, tolerance),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _with_ci(value: float, ci: list[float] | None) -> str:
    return _pct(value) + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def _yes(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")


def _weak_dominance_lines(fronts_: dict) -> list[str]:
    """Whether one front weakly dominates the other, by the means and within the intervals
    (sweeps summarised before the interval reading was kept show n/a there)."""
    return [
        f"- The policy front weakly dominates the grid front: by the means **{_yes(fronts_['policy_front_weakly_dominates_fixed_front'])}**, "
        f"within the 95% intervals **{_yes(fronts_.get('policy_front_weakly_dominates_fixed_front_within_intervals'))}**.",
        f"- The grid front weakly dominates the policy front: by the means **{_yes(fronts_['fixed_front_weakly_dominates_policy_front'])}**, "
        f"within the 95% intervals **{_yes(fronts_.get('fixed_front_weakly_dominates_policy_front_within_intervals'))}**.",
    ]


def _dominance_lines(fronts_: dict, prefix: str = "") -> list[str]:
    """One line per front point that dominates points of the other side."""
    return [
        f"- {prefix}{label} front point `{name}` dominates {', '.join(f'`{b}`' for b in beaten)}."
        for label, mapping in (("policy", fronts_["policy_dominates"]), ("grid", fronts_["fixed_dominates"]))
        for name, beaten in mapping.items()
        if beaten
    ]


def _above(record: dict) -> str:
    """The training batches' leak minus the do-nothing reference on the same rows, in points, and
    the largest over the messages where that is another one (records from before the reference
    was kept show n/a)."""
    ref = record.get("leak_reference")
    if ref is None:
        return "n/a"
    text = f"{100 * (record['leak'] - ref):+.1f} (reference {100 * ref:.1f}%)"
    worst = worst_above_reference(record)[0]
    return text if worst == record["leak"] - ref else text + f"; probe door {100 * worst:+.1f}"


def _worst(record: dict) -> str:
    name, leak, ci = worst_message(record)
    return f"{_with_ci(leak, ci)} ({name})"


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
        "trains the FR network under one fixed setting of the knobs. Leak = the worst judged identity leak (acc@1) over every message an attacker holds: "
        "the training batches' worst attack (any of the k mixed identities) and the probe door (`whitebox-eval`: the k = 1 inference probes of held-out "
        "faces, flipped as the setting's evaluation messages are), whichever is larger, as in the benchmark's worst case; both are in the table of every trial. "
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
    ]
    repeats = {kind: sides[kind].get("repeat_fr_steps", 0) for kind in SIDES}
    if any(repeats.values()):
        with_repeats = (sides[POLICY]["fr_steps"] + repeats[POLICY]) / (sides[FIXED]["fr_steps"] + repeats[FIXED]) if sides[FIXED]["fr_steps"] else None
        lines.append(
            f"Measurements beyond the first (repeats of one trial's measurement, averaged into its figures) took {repeats[POLICY]} FR steps on the policy side and "
            f"{repeats[FIXED]} on the grid's, not counted above; counted, the policy side spent {'n/a' if with_repeats is None else f'{with_repeats:.2f}x'} the grid's."
        )
    if s.get("confirmed"):
        lines.append(
            f"The confirmation (below) measured the picks again for {sides[POLICY]['confirmation_fr_steps']} FR steps on the policy side and "
            f"{sides[FIXED]['confirmation_fr_steps']} on the grid's, not counted above."
        )
    lines += ["", *_weak_dominance_lines(s)]
    lines += _dominance_lines(s)
    above = s.get("above_reference")
    if above:
        hv = above["hypervolume"]
        lines += [
            "",
            f"**On the leak above the do-nothing reference** (per message, the leak minus the do-nothing attacker's on the same rows; a trial's largest, 0 at or below it; "
            f"the raw any-of-k leak's chance floor grows with k, so raw leaks of different k do not compare): hypervolume policy {hv[POLICY]:.4f}, grid {hv[FIXED]:.4f}; "
            f"the policy front weakly dominates the grid front: **{_yes(above['policy_front_weakly_dominates_fixed_front'])}**; "
            f"the grid front the policy front: **{_yes(above['fixed_front_weakly_dominates_policy_front'])}**; "
            f"within the intervals: policy over grid **{_yes(above.get('policy_front_weakly_dominates_fixed_front_within_intervals'))}**, "
            f"grid over policy **{_yes(above.get('fixed_front_weakly_dominates_policy_front_within_intervals'))}**.",
        ]
        lines += _dominance_lines(above, "(above the reference) ")
    lines += [
        "",
        "Dominance by the means compares the means alone; with intervals as wide as below, a single-seed difference is not evidence. Within the "
        "intervals, a front weakly dominates another when each of the other's front points is matched by one of its own that the other point "
        "beats on neither axis with the 95% intervals apart; where both directions hold, the two fronts cannot be told apart on this measurement.",
    ]
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
        ]
        lines += _comparison_table(comparison)
    if s.get("confirmed"):
        lines += _confirmed_lines(s["confirmed"], results.get("confirmations", []))
    lines += ["", "## Every trial", ""]
    lines += [
        "| trial | on its side's front | identification acc@1 | front's leak (worst message) | training-batch leak (worst attack) | leak above the do-nothing reference | probe door | FR steps (training + measured) | wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        on_front = "yes" if r["key"] in sides[r["kind"]]["front"] else ""
        judge = "" if r["judge_competent"] else " (judge below floor: UNRELIABLE)"
        lines.append(
            f"| `{r['key']}` | {on_front} | {_with_ci(r['utility'], r['utility_ci'])} | {_worst(r)} | {_with_ci(r['leak'], r['leak_ci'])} ({r['worst_attack']}){judge} "
            f"| {_above(r)} | {'not run' if r['door_leak'] is None else _with_ci(r['door_leak'], r['door_leak_ci'])} "
            f"| {r['fr_steps']} ({r['fr_steps_training']} + {r['fr_steps_measured']}) | {r['wall_seconds'] / 60:.1f} min |"
        )
    lines += ["", "Plot: `front.png` (every trial with its 95% intervals, each side's front joined; the picks measured again as hollow markers, a dotted line from their first measurement)."]
    return "\n".join(lines) + "\n"


def _comparison_table(comparison: list[dict]) -> list[str]:
    lines = [
        "| policy | best fixed point of the grid | leak: policy | leak: grid point | identification: policy | identification: grid point | reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparison:
        lines.append(
            f"| `{c['policy']}` | `{c['best_fixed']}` | {_with_ci(c['policy_leak'], c['policy_leak_ci'])} | {_with_ci(c['fixed_leak'], c['fixed_leak_ci'])} "
            f"| {_with_ci(c['policy_utility'], c['policy_utility_ci'])} | {_with_ci(c['fixed_utility'], c['fixed_utility_ci'])} | {c['verdict']} |"
        )
    return lines


AXIS_TITLES = {"raw": "raw leak", "above_reference": "leak above the do-nothing reference"}


def _confirmed_lines(conf: dict, confirmations: list[dict]) -> list[str]:
    """The section on the picks measured again with a fresh measurement seed."""
    lines = [
        "",
        "## The picks measured again (fresh measurement seed)",
        "",
        "Picking the best of many noisy measurements and reporting that same measurement flatters whichever side has more points (24 grid points "
        "against a few policies): the lowest of many leaks is low partly by chance. So every point picked above (each side's front on each leak "
        "axis, and the grid point each front policy is compared with) was measured again: a fresh FR network, fresh draws of what crosses, fresh "
        "attackers and judge (the benchmark's seeds after the first measurement's); a policy's trained policy deployed again, not retrained. Each side's front below is the "
        "points picked on the first measurement, read on the second.",
        "",
        "| leak axis | side | points picked | hypervolume on the fresh measurement | its front weakly dominates the other's: by the means | within the intervals |",
        "|---|---|---|---|---|---|",
    ]
    for axis, summary in conf["axes"].items():
        for kind, title in SIDES.items():
            other = "policy_front_weakly_dominates_fixed_front" if kind == POLICY else "fixed_front_weakly_dominates_policy_front"
            picked = summary["picked_on_first_measurement"][kind]
            lines.append(
                f"| {AXIS_TITLES[axis]} | {title} | {len(picked)} | {summary['hypervolume'][kind]:.4f} | {_yes(summary[other])} "
                f"| {_yes(summary.get(other + '_within_intervals'))} |"
            )
        if summary["missing"]:
            lines.append(f"| {AXIS_TITLES[axis]} | not measured again | {', '.join(f'`{k}`' for k in summary['missing'])} | | | |")
    if conf.get("moved"):
        lines += [
            "",
            "How far the picks moved from the first measurement to the fresh one (points; a mean leak change above 0: the picks had been lucky; "
            "a root mean square change well past the intervals' half-width: the one-seed intervals leave out the spread between measurements):",
            "",
            "| side | picks | leak: mean change | leak: rms change | leak: mean 95% half-width | identification: mean change | identification: rms change | identification: mean 95% half-width |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for kind, m in conf["moved"].items():
            cells = [
                f"{m[f]['mean_change_points']:+.1f} | {m[f]['rms_change_points']:.1f} | " + ("n/a" if m[f]["mean_ci_half_width_points"] is None else f"{m[f]['mean_ci_half_width_points']:.1f}")
                for f in ("leak", "utility")
            ]
            lines.append(f"| {SIDES[kind]} | {m['trials']} | {cells[0]} | {cells[1]} |")
    if conf["policy_vs_best_fixed"]:
        lines += ["", "Each front policy against the grid point picked for it on the first measurement, both read on the fresh one:", ""]
        lines += _comparison_table(conf["policy_vs_best_fixed"])
    if confirmations:
        lines += [
            "",
            "| trial measured again | identification acc@1 | front's leak (worst message) | training-batch leak (worst attack) | leak above the do-nothing reference | probe door |",
            "|---|---|---|---|---|---|",
        ]
        for r in confirmations:
            lines.append(
                f"| `{r['confirms']}` | {_with_ci(r['utility'], r['utility_ci'])} | {_worst(r)} | {_with_ci(r['leak'], r['leak_ci'])} ({r['worst_attack']}) | {_above(r)} "
                f"| {'not run' if r['door_leak'] is None else _with_ci(r['door_leak'], r['door_leak_ci'])} |"
            )
    return lines


def _err(value: float, ci: list[float] | None) -> list[list[float]]:
    return [[value - ci[0]], [ci[1] - value]] if ci else [[0.0], [0.0]]


def _panel(ax, records: list[dict], front_of: dict, hv: dict, point, title: str, xlabel: str, again: list[dict] = ()) -> None:
    """One leak axis: every trial at ``point(r)`` (its leak on that axis and interval), each
    side's front joined; a pick measured again (``again``) as a hollow marker, a dotted line
    from its first measurement."""
    first = {r["key"]: r for r in records}
    for r in again:
        color = "tab:red" if r["kind"] == POLICY else "tab:blue"
        (x, ci), f = point(r), first[r["confirms"]]
        ax.plot([point(f)[0], x], [f["utility"], r["utility"]], ls=":", lw=1, color=color, zorder=1)
        ax.errorbar(x, r["utility"], xerr=_err(x, ci), yerr=_err(r["utility"], r["utility_ci"]), fmt="o" if r["kind"] == POLICY else "s", ms=7, mfc="white", capsize=2, color=color, zorder=3)
    for kind, color, marker in ((FIXED, "tab:blue", "s"), (POLICY, "tab:red", "o")):
        rows = [r for r in records if r["kind"] == kind]
        front = set(front_of[kind])
        for i, r in enumerate(rows):
            x, ci = point(r)
            ax.errorbar(
                x,
                r["utility"],
                xerr=_err(x, ci),
                yerr=_err(r["utility"], r["utility_ci"]),
                fmt=marker,
                ms=6,
                capsize=2,
                color=color,
                alpha=1.0 if r["key"] in front else 0.35,
                label=SIDES[kind] if i == 0 else None,
                zorder=3,
            )
            if kind == POLICY:
                ax.annotate(f"λ={r['leak_lambda']:g}", (x, r["utility"]), textcoords="offset points", xytext=(5, 4), fontsize=8, color=color)
        fp = sorted((point(r)[0], r["utility"]) for r in rows if r["key"] in front)
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
    do-nothing reference (right; the front's hypervolume there counts a leak below it as 0);
    the picks measured again as hollow markers."""
    records, summary = results["trials"], results["summary"]
    again = results.get("confirmations") or []
    above = summary.get("above_reference")
    fig, axes = plt.subplots(1, 2 if above else 1, figsize=(13.0 if above else 7.0, 5.2), squeeze=False)
    raw_ax = axes[0][0]
    _panel(
        raw_ax,
        records,
        {k: summary["sides"][k]["front"] for k in SIDES},
        {k: summary["sides"][k]["hypervolume"] for k in SIDES},
        lambda r: worst_message(r)[1:],
        f"rl-mask sweep ({results['mode']}), raw leak",
        "identity leak, worst message (training batches or probe door): judged acc@1  [lower is more private]",
        again,
    )
    raw_ax.set_xlim(-0.02, 1.02)
    chance = records[0]["chance_acc1"] if records else None
    if chance:
        raw_ax.axvline(chance, color="grey", ls="--", lw=1)
        raw_ax.text(chance, 0.02, " chance", color="grey", fontsize=8)
    if above:
        ax = axes[0][1]
        _panel(
            ax,
            records,
            above["front"],
            above["hypervolume"],
            worst_above_reference,
            "above the do-nothing reference",
            "largest leak over the messages minus the do-nothing attacker's on them  [0: no more than guessing]",
            again,
        )
        ax.axvline(0.0, color="grey", ls="--", lw=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_sweep_report(results: dict, out: Path) -> None:
    """``results.json``, ``results.md``, ``front.png`` into the sweep folder."""
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "results.md", markdown(results))
    plot_fronts(results, out / "front.png")

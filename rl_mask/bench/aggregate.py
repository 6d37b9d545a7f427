"""Per-seed benchmark figures -> one table: means with 95% intervals for every numeric figure,
leaks relative to the judge's clean accuracy, the judge's competence verdict, and which
differences between defences are significant (rules in ``rl_mask.bench.stats``)."""

from __future__ import annotations

from rl_mask.bench.stats import accuracy_trials, aggregate, differ, relative_leaks, scale_interval

#: Rows every defence is compared with (when benchmarked), beside its neighbour in the table.
REFERENCE_DEFENCES = ("none", "mask", "random-k")
UTILITY_KEY = "identification_acc"


def leak_keys(cell: dict) -> list[str]:
    """The top-1 identity leaks of a cell (``acc1`` and variants such as ``acc1_any``)."""
    return [k for k in cell if k.startswith("acc1") and not k.endswith("_rel")]


def _judged_cell(per_seed_cells: list[dict], judges: list[dict]) -> dict:
    """One attack on one defence over seeds, with relative leaks (leak / judge accuracy)."""
    cells = [{**c, **relative_leaks(c, j["test_acc"], j["test_top5"])} for c, j in zip(per_seed_cells, judges)]
    out = aggregate(cells, accuracy_trials(cells[0]))
    if len(cells) == 1:  # the Wilson interval of the leak, over the judge's (fixed) accuracy
        for key in list(out["ci"]):
            if key.endswith("_rel") and out["ci"][key] is None:
                base = key[: -len("_rel")]
                judge_acc = judges[0]["test_top5"] if base.startswith("acc5") else judges[0]["test_acc"]
                out["ci"][key] = scale_interval(out["ci"].get(base), judge_acc)
    return out


def judge_verdict(judges: list[dict], n_test: int, min_acc: float) -> dict:
    """The judge's clean held-out accuracy over seeds and whether every seed's judge clears the floor."""
    out = aggregate(judges, {"test_acc": n_test, "test_top5": n_test, "train_acc": 0})
    worst = min(j["test_acc"] for j in judges)
    out.update(min_acc=min_acc, worst_seed_test_acc=worst, competent=bool(worst >= min_acc))
    return out


def comparisons(defences: list[dict]) -> list[dict]:
    """Each defence vs ``none``/``mask``/``random-k`` and vs the row above it: per attack on
    every top-1 leak, and on utility."""
    by_name = {d["name"]: d for d in defences}
    pairs: list[tuple[str, str, str]] = []
    for i, d in enumerate(defences):
        for ref in REFERENCE_DEFENCES:
            if ref not in by_name or ref == d["name"]:
                continue
            if d["name"] in REFERENCE_DEFENCES and REFERENCE_DEFENCES.index(d["name"]) < REFERENCE_DEFENCES.index(ref):
                continue  # each pair of references once: mask vs none, not also none vs mask
            pairs.append((d["name"], ref, f"vs {ref}"))
        if i > 0 and defences[i - 1]["name"] not in REFERENCE_DEFENCES:
            pairs.append((d["name"], defences[i - 1]["name"], "adjacent"))
    out = []
    for a, b, why in pairs:
        da, db = by_name[a], by_name[b]
        out.append({"defence": a, "versus": b, "why": why, "attack": None, "key": UTILITY_KEY, "mean": da["utility"][UTILITY_KEY], "versus_mean": db["utility"][UTILITY_KEY], **differ(da["utility"], db["utility"], UTILITY_KEY)})
        for attack, cell in da["attacks"].items():
            other = db["attacks"].get(attack)
            if other is None:
                continue
            for key in leak_keys(cell):
                if key in other.get("seeds", {}):
                    out.append({"defence": a, "versus": b, "why": why, "attack": attack, "key": key, "mean": cell[key], "versus_mean": other[key], **differ(cell, other, key)})
    return out


def aggregate_seeds(per_seed: list[dict], n_test: int, judge_min_acc: float) -> dict:
    """Aggregate ``run_seed`` figures (same defences and attacks in every seed)."""
    judges = [s["evaluation_model"] for s in per_seed]
    defences = []
    for rows in zip(*(s["defences"] for s in per_seed)):
        first = rows[0]
        row = {k: v for k, v in first.items() if k not in ("utility", "dp", "attacks", "linkage", "key_recovery", "run_dir")}
        row["run_dirs"] = [r["run_dir"] for r in rows]
        row["utility"] = aggregate([r["utility"] for r in rows], {UTILITY_KEY: n_test, "identification_top5": n_test})
        row["dp"] = aggregate([r["dp"] for r in rows]) if first.get("dp") else None
        row["attacks"] = {a: _judged_cell([r["attacks"][a] for r in rows], judges) for a in first["attacks"]}
        if "linkage" in first:  # identification rates over the gallery: n = private labels
            row["linkage"] = {a: aggregate([r["linkage"][a] for r in rows], {"identification": first["linkage"][a]["n"]}) for a in first["linkage"]}
        if "key_recovery" in first:  # owner-scored: how much of a scramble or dense key the attacker recovered
            row["key_recovery"] = aggregate([r["key_recovery"] for r in rows])
        defences.append(row)
    baselines = [s["baseline_mean_public_face"] for s in per_seed if s.get("baseline_mean_public_face")]
    return {
        "evaluation_model": judge_verdict(judges, n_test, judge_min_acc),
        "baseline_mean_public_face": _judged_cell(baselines, judges[: len(baselines)]) if baselines else None,
        "defences": defences,
        "significance": comparisons(defences),
    }

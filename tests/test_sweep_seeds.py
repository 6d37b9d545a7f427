"""Sweeps read as seeds (``rl_mask.bench.sweep_seeds``), on the recorded sweeps' results."""

import json
import math
import shutil
from pathlib import Path

import pytest
from scipy import stats

from rl_mask.bench.sweep_report import raw_leak, summarize, worst_message
from rl_mask.bench.sweep_seeds import across_seeds, markdown

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
ATT = [RESULTS / "sweep-att-quick-s1-ab16", RESULTS / "sweep-att-quick-s2"]


def test_each_sweep_is_one_seed_of_the_policy_and_its_best_grid_point():
    summary = across_seeds(ATT)
    recorded = [json.loads((f / "results.json").read_text()) for f in ATT]
    for lam in ("1.0", "10.0"):
        trials = [{t["key"]: t for t in r["trials"]} for r in recorded]
        best = [next(c["best_fixed"] for c in s["policy_vs_best_fixed"] if c["policy"] == f"policy-leak_lambda={lam}") for s in summary["per_sweep"]]
        policy_leaks = [raw_leak(t[f"policy-leak_lambda={lam}"]) for t in trials]  # the worst message, the probe door included
        row = summary["per_leak_lambda"][lam]
        assert row["leak"]["per_seed"] == policy_leaks
        diff = [p - raw_leak(t[b]) for p, t, b in zip(policy_leaks, trials, best)]
        assert row["leak_minus_best_fixed"]["per_seed"] == diff
        lo, hi = stats.t.interval(0.95, df=1, loc=sum(diff) / 2, scale=stats.sem(diff))
        assert row["leak_minus_best_fixed"]["ci"] == pytest.approx([lo, hi])
        expected = "the policy leaks less" if hi < 0 else "the best grid point leaks less" if lo > 0 else "no difference the interval shows"
        assert row["leak_minus_best_fixed"]["verdict"] == expected
    hv = summary["hypervolume"]["raw"]
    assert hv["policy"]["per_seed"] == [summarize(r["trials"])["sides"]["policy"]["hypervolume"] for r in recorded]
    assert "| 10.0 |" in markdown(summary)
    # the policy's leak spread split into each seed's own measurement noise (its 95% interval) and the rest
    trials = [{t["key"]: t for t in r["trials"]} for r in recorded]
    errors = [(ci[1] - ci[0]) / (2 * 1.959964) for ci in (worst_message(t["policy-leak_lambda=10.0"])[2] for t in trials)]
    noise = summary["per_leak_lambda"]["10.0"]["leak_noise"]
    assert noise["rms_standard_error"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 2))
    assert noise["width"] == pytest.approx(summary["per_leak_lambda"]["10.0"]["leak"]["width"])
    assert "measurement noise alone gives a width of" in markdown(summary)
    within = [summarize(r["trials"])["fixed_front_weakly_dominates_policy_front_within_intervals"] for r in recorded]
    means = [s["fixed_front_weakly_dominates_policy_front"]["raw"] for s in summary["per_sweep"]]
    assert f"- grid over policies: raw {sum(means)} / {sum(within)} of 2" in markdown(summary)


def test_the_training_batches_alone_read_as_the_sweeps_reported_them():
    """The recorded sweeps put the training batches on the front (the rule before every message
    counted): leaving the door out reproduces their own comparisons."""
    summary = across_seeds(ATT, training_batches_only=True)
    recorded = [json.loads((f / "results.json").read_text()) for f in ATT]
    for lam in ("1.0", "3.0", "10.0", "30.0"):
        comparisons = [next(c for c in r["summary"]["policy_vs_best_fixed"] if c["policy"] == f"policy-leak_lambda={lam}") for r in recorded]
        row = summary["per_leak_lambda"][lam]
        assert row["leak"]["per_seed"] == [c["policy_leak"] for c in comparisons]
        assert row["leak_minus_best_fixed"]["per_seed"] == [c["policy_leak"] - c["fixed_leak"] for c in comparisons]
    assert summary["hypervolume"]["raw"]["fixed"]["per_seed"] == [r["summary"]["sides"]["fixed"]["hypervolume"] for r in recorded]
    assert summary["leak"].startswith("the training batches")


def test_sweeps_of_different_face_sets_or_too_few_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        across_seeds(ATT[:1])
    with pytest.raises(ValueError, match="different face sets"):
        across_seeds([ATT[0], RESULTS / "sweep-yale-quick-s1"])
    empty = tmp_path / "not-a-sweep"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="not-a-sweep"):
        across_seeds([ATT[0], empty])
    broken = tmp_path / "broken"
    shutil.copytree(ATT[1], broken)
    results = json.loads((broken / "results.json").read_text())
    del results["summary"]
    (broken / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="'summary'"):
        across_seeds([ATT[0], broken])


def test_sweeps_with_grids_of_different_sizes_are_read_for_the_policy_alone():
    """A sweep run for one more policy seed (``sweep.grid_sample=1``) adds to the policy's
    spread, not to any comparison with the grid: the summary says the grids differ."""
    same = across_seeds(ATT)
    assert same["grid_points"] == [24, 24] and not same["grids_differ"]
    assert "grids differ" not in markdown(same)
    mixed = across_seeds([RESULTS / "sweep-att-quick-s5", RESULTS / "sweep-att-quick-s8-policy"])
    assert mixed["grid_points"] == [24, 1] and mixed["grids_differ"]
    assert "grids differ in size (24, 1 points)" in markdown(mixed)


def test_a_policy_measured_ten_times_per_seed_reads_as_the_mean_of_its_measurements():
    """Three sweeps for the policy alone (``sweep.grid_sample=1``), each policy measured over
    ten benchmark seeds (``sweep.policy_seeds=10``): each seed's figure is that mean, its
    standard error the t-interval's over the ten, and the summary says so and says that a grid
    of one point is no grid."""
    folders = [RESULTS / f"sweep-att-quick-s{n}-policy10" for n in (13, 14, 15)]
    summary = across_seeds(folders)
    row = summary["per_leak_lambda"]["10.0"]
    assert row["measurements_per_seed"] == [10, 10, 10] and summary["grid_points"] == [1, 1, 1]
    policies = [next(t for t in json.loads((f / "results.json").read_text())["trials"] if t["kind"] == "policy") for f in folders]
    assert [p["seeds"] for p in policies] == [10, 10, 10] and all(p["fr_steps_repeats"] == 9 * p["fr_steps_measured"] for p in policies)
    assert row["leak"]["per_seed"] == [raw_leak(p) for p in policies]
    errors = [(worst_message(p)[2][1] - worst_message(p)[2][0]) / (2 * stats.t.ppf(0.975, 9)) for p in policies]
    assert row["leak_noise"]["rms_standard_error"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 3))
    md = markdown(summary)
    assert "10 measurements averaged per seed" in md and "ran for the policy alone (grids of 1 point)" in md


def test_two_sweeps_of_the_same_seeds_are_not_read_as_two_seeds(tmp_path):
    """Sweep 5 run again with the door fixed measured seed 5 a second time: read with sweep 5
    it would narrow the interval by a repeat, not a new draw. Older results are matched by their grid draw,
    newer ones by the seeds they record."""
    with pytest.raises(ValueError, match=r"sweep-att-quick-s5 and .*sweep-att-quick-s5-door ran with the same grid draw"):
        across_seeds([RESULTS / "sweep-att-quick-s5", RESULTS / "sweep-att-quick-s5-door", RESULTS / "sweep-att-quick-s6"])
    seeded = []
    for name, rl_seed in (("a", 4), ("b", 4), ("c", 5)):
        folder = tmp_path / name
        shutil.copytree(RESULTS / ("sweep-att-quick-s5" if name != "c" else "sweep-att-quick-s6"), folder)
        results = json.loads((folder / "results.json").read_text())
        results["run_seeds"] = {"rl": rl_seed, "fr": 1000 * (rl_seed + 1), "benchmark": 1000 * (rl_seed + 1), "grid": rl_seed}
        (folder / "results.json").write_text(json.dumps(results))
        seeded.append(folder)
    with pytest.raises(ValueError, match="ran with the same seeds .*'rl': 4"):
        across_seeds(seeded)
    assert across_seeds([seeded[0], seeded[2]])["grid_points"] == [24, 24]

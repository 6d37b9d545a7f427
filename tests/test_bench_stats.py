"""The benchmark's interval and significance rules, against textbook formulas."""

import math

import numpy as np
import pytest
from scipy import stats

from rl_mask.bench.aggregate import comparisons, judge_verdict
from rl_mask.bench.runtime import estimate_seconds
from rl_mask.bench.stats import aggregate, differ, spread_beyond_measurement, t_interval, wilson_interval

Z = 1.959963984540054


def test_wilson_matches_the_closed_form():
    for k, n in [(0, 20), (7, 20), (64, 64), (13, 40)]:
        p = k / n
        centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
        half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
        assert wilson_interval(p, n) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_t_interval_matches_the_closed_form():
    lo, hi = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, df=2) = 4.302653
    assert (lo, hi) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), abs=1e-5)
    assert t_interval([0.5, 0.5]) == (0.5, 0.5)


def test_the_spread_over_seeds_splits_into_measurement_noise_and_the_rest():
    """Simulated seeds: a thing that moves by sd 0.02 between seeds, each measured with noise of
    standard error 0.05. Over many draws of 3 seeds the mean estimated variance beyond the noise
    is the thing's own (method of moments is unbiased), and the width from noise alone is the
    closed form 2 t(0.975, 2) se / sqrt(3)."""
    rng = np.random.default_rng(0)
    own, se = 0.02, 0.05
    extra_var = []
    for _ in range(4000):
        values = 0.3 + rng.normal(0, own, 3) + rng.normal(0, se, 3)
        r = spread_beyond_measurement(list(values), [se] * 3)
        extra_var.append(r["sd_between_seeds"] ** 2 - r["rms_standard_error"] ** 2)  # unclipped: unbiased
    assert np.mean(extra_var) == pytest.approx(own**2, abs=0.0002)
    assert r["width_from_measurement_alone"] == pytest.approx(2 * stats.t.ppf(0.975, 2) * se / math.sqrt(3))
    # the measurements per seed that bring the width to a target: m = se^2 / ((W / factor)^2 - own^2)
    r = spread_beyond_measurement([0.30, 0.34, 0.32], [0.05] * 3, target_width=0.10)
    factor = 2 * stats.t.ppf(0.975, 2) / math.sqrt(3)
    beyond = math.sqrt(max(0.0, 0.02**2 - 0.05**2))
    assert r["sd_beyond_measurement"] == beyond == 0.0  # the noise explains all of this spread
    assert r["measurements_per_seed_for_target"] == math.ceil(0.05**2 / ((0.10 / factor) ** 2))
    assert spread_beyond_measurement([0.1, 0.5, 0.9], [0.01] * 3, target_width=0.10)["measurements_per_seed_for_target"] is None
    with pytest.raises(ValueError, match="one standard error each"):
        spread_beyond_measurement([0.1, 0.2], [0.01])


def test_aggregate_means_numbers_keeps_the_rest_and_clips_proportions():
    seeds = [{"acc1": 0.0, "acc1_any": 0.1, "ssim": 0.2, "n": 64, "attack": {"name": "x"}, "flag": True}, {"acc1": 0.1, "acc1_any": 0.3, "ssim": 0.4, "n": 64, "attack": {"name": "x"}, "flag": False}]
    out = aggregate(seeds, {"acc1": 64, "acc1_any": 64})
    assert out["acc1"] == pytest.approx(0.05) and out["acc1_any"] == pytest.approx(0.2) and out["ssim"] == pytest.approx(0.3)
    assert out["attack"] == {"name": "x"} and out["flag"] is True and "flag" not in out["ci"]
    assert out["ci"]["acc1"][0] == 0.0  # the t-interval of a proportion is clipped at 0
    assert out["ci"]["ssim"][0] < 0.3 < out["ci"]["ssim"][1]
    one = aggregate(seeds[:1], {"acc1_any": 64})
    assert one["ci"]["acc1_any"] == pytest.approx(list(wilson_interval(0.1, 64))) and one["ci"]["ssim"] is None


def test_significance_rules():
    far = aggregate([{"acc1": v} for v in (0.80, 0.82, 0.81)])
    near = aggregate([{"acc1": v} for v in (0.79, 0.83, 0.80)])
    low = aggregate([{"acc1": v} for v in (0.10, 0.12, 0.11)])
    assert differ(far, low, "acc1")["significant"] and differ(far, low, "acc1")["p"] < 0.05
    assert not differ(far, near, "acc1")["significant"]
    # one seed: non-overlap of Wilson intervals over n samples
    a, b = aggregate([{"acc1": 0.9}], {"acc1": 64}), aggregate([{"acc1": 0.1}], {"acc1": 64})
    c = aggregate([{"acc1": 0.85}], {"acc1": 64})
    assert differ(a, b, "acc1") == {"significant": True, "p": None, "rule": "non-overlap"}
    assert not differ(a, c, "acc1")["significant"]


def test_comparisons_cover_references_and_neighbours():
    def row(name, leak):
        cell = aggregate([{"acc1": leak, "acc1_any": leak, "n": 64}], {"acc1": 64, "acc1_any": 64})
        return {"name": name, "utility": aggregate([{"identification_acc": 0.9}], {"identification_acc": 60}), "attacks": {"whitebox": cell}}

    rows = [row("none", 0.9), row("mask", 0.5), row("mixup", 0.45), row("instahide", 0.05)]
    comps = comparisons(rows)
    pairs = {(c["defence"], c["versus"], c["why"]) for c in comps}
    assert ("mask", "none", "vs none") in pairs and ("instahide", "mask", "vs mask") in pairs
    assert ("none", "mask", "vs mask") not in pairs  # each pair of references once
    assert ("instahide", "mixup", "adjacent") in pairs and ("mixup", "mask", "adjacent") not in pairs  # mask is already a reference
    leak = {(c["defence"], c["versus"], c["key"]): c["significant"] for c in comps if c["attack"]}
    assert leak[("mask", "none", "acc1")] and leak[("mask", "none", "acc1_any")]
    assert not leak[("mixup", "mask", "acc1")] and leak[("instahide", "mask", "acc1")]


def test_judge_verdict_uses_the_worst_seed():
    judges = [{"test_acc": 0.95, "test_top5": 1.0, "train_acc": 1.0}, {"test_acc": 0.7, "test_top5": 0.9, "train_acc": 1.0}]
    v = judge_verdict(judges, 60, 0.8)
    assert v["competent"] is False and v["worst_seed_test_acc"] == 0.7 and v["test_acc"] == pytest.approx(0.825)
    assert judge_verdict(judges[:1], 60, 0.8)["competent"] is True


def test_runtime_estimate_scales_each_piece_by_its_budget():
    timings = {"evaluation_model": 10.0, "train/mask": 30.0, "fit/gmi/mask": 20.0, "attack/mi-face/mask": 5.0, "attack/whitebox/mask": 2.0}
    quick = {"eval_model_steps": 100, "fr_steps": 300, "gan_steps": 800, "mi_steps": 200, "mi_restarts": 2, "attack_batches": 2}
    full = {"eval_model_steps": 400, "fr_steps": 600, "gan_steps": 1600, "mi_steps": 300, "mi_restarts": 4, "attack_batches": 3}
    assert estimate_seconds(timings, quick, quick) == pytest.approx(67.0)
    assert estimate_seconds(timings, quick, full) == pytest.approx(40 + 60 + 40 + 15 + 3)

"""A multi-seed benchmark read on a subset of its seeds (``rl_mask.bench.repeats``), on
recorded AT&T benchmarks of three seeds each."""

import json
from pathlib import Path

import numpy as np
import pytest

from rl_mask.bench.repeats import markdown, measured_on, width_by_measurements
from rl_mask.bench.stats import t_interval, wilson_interval
from rl_mask.bench.sweep_plan import POLICY
from rl_mask.bench.sweep_report import raw_leak

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
KEY = RESULTS / "issue18-dense-att-full-seeds3" / "results.json"
FULL = RESULTS / "issue18-scramble-att-full-seeds3" / "results.json"


def test_read_on_all_its_seeds_a_benchmark_is_itself_and_on_one_seed_that_seeds_figures():
    results = json.loads(KEY.read_text())
    row = results["defences"][0]
    whole = measured_on(results, [0, 1, 2])
    for attack, cell in row["attacks"].items():
        assert whole["defences"][0]["attacks"][attack]["acc1"] == pytest.approx(cell["acc1"])
        assert whole["defences"][0]["attacks"][attack]["ci"]["acc1"] == pytest.approx(cell["ci"]["acc1"])
    assert whole["defences"][0]["utility"]["identification_acc"] == pytest.approx(row["utility"]["identification_acc"])
    second = measured_on(results, [1])
    attack = next(iter(row["attacks"]))
    assert second["seeds"] == 1 and second["defences"][0]["attacks"][attack]["acc1"] == row["attacks"][attack]["seeds"]["acc1"][1]
    n = int(row["attacks"][attack]["n"])  # one seed: its Wilson interval over the judged samples, as a one-seed benchmark has
    assert second["defences"][0]["attacks"][attack]["ci"]["acc1"] == pytest.approx(list(wilson_interval(row["attacks"][attack]["seeds"]["acc1"][1], n)))
    first_two = measured_on(results, [0, 1])["defences"][0]["attacks"][attack]
    assert first_two["ci"]["acc1"] == pytest.approx(list(t_interval(row["attacks"][attack]["seeds"]["acc1"][:2])))
    assert results["defences"][0]["attacks"][attack]["seeds"]["acc1"] == row["attacks"][attack]["seeds"]["acc1"]  # the input is untouched
    for bad in ([], [3], [0, 0], [-1]):
        with pytest.raises(ValueError, match=r"each must be one of the 3 measured \(0\.\.2\)"):
            measured_on(results, bad)


def test_the_width_over_seeds_is_read_for_each_number_of_measurements_per_seed():
    """Two benchmarks of three seeds stand in for two sweeps' policy trials measured three
    times: for m = 1..3 the width is the t-interval's over the two seeds' first-m figures."""
    measures = [json.loads(p.read_text()) for p in (KEY, FULL)]
    key = "policy-leak_lambda=10.0"
    sweeps = [({"trials": [{"key": key, "kind": POLICY, "leak_lambda": 10.0}]}, {key: m}) for m in measures]
    summary = width_by_measurements(sweeps, 0.10)["10.0"]
    assert summary["measurements"] == [3, 3] and [r["measurements"] for r in summary["by_measurements_per_seed"]] == [1, 2, 3]
    from rl_mask.bench.repeats import _policy_record

    for r in summary["by_measurements_per_seed"]:
        leaks = [raw_leak(_policy_record(key, 10.0, m, list(range(r["measurements"])))) for m in measures]
        lo, hi = t_interval(leaks)
        assert r["leak"]["per_seed"] == leaks and r["leak"]["width"] == pytest.approx(hi - lo) and r["within_target"] == (hi - lo <= 0.10)
    for seed, m in zip(summary["per_seed"], measures):
        alone = [raw_leak(_policy_record(key, 10.0, m, [i])) for i in range(3)]
        assert seed["worst_message"] == alone and seed["sd_between_measurements"] == pytest.approx(np.std(alone, ddof=1))
    assert "| 3 |" in markdown({"10.0": summary}) and "One measurement's own sd" in markdown({"10.0": summary})
    with pytest.raises(ValueError, match="at least 2 sweeps"):
        width_by_measurements(sweeps[:1], 0.10)

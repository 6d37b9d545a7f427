"""The sweep's arithmetic and plan, without Ray: fronts, hypervolume, dominance, the knob grid
and its seeded sample, the plan file a resume reads, the confirmation of the picks, and the
sweep config's errors."""

import json
import random

import pytest

from rl_mask.bench.front import covers_within, dominance, hypervolume, pareto_front, weakly_dominates, weakly_dominates_within
from rl_mask.bench.sweep_plan import FIXED, POLICY, Trial, confirmation_of, grid_settings, knob_grid, make_plan, read_confirmations, read_plan, write_confirmations, write_plan
from rl_mask.bench.sweep_report import leak_above_reference, markdown, raw_leak, summarize, to_confirm, trial_record
from rl_mask.config import Config, ConfigError, knob_grid_size, load_config, parse_settings


def test_hypervolume_of_one_point_is_its_rectangle_to_the_worst_corner():
    assert hypervolume([("a", 0.25, 0.8)]) == pytest.approx(0.75 * 0.8)
    assert hypervolume([("perfect", 0.0, 1.0)]) == pytest.approx(1.0)
    assert hypervolume([("useless", 1.0, 0.9)]) == 0.0  # on the reference's leak: nothing dominated
    assert hypervolume([]) == 0.0


def test_hypervolume_of_a_staircase_is_the_union_of_rectangles():
    pts = [("a", 0.1, 0.5), ("b", 0.4, 0.9), ("c", 0.6, 0.7)]  # c is dominated by b
    # union: [0.1, 0.4) x 0.5 plus [0.4, 1.0) x 0.9
    expected = 0.3 * 0.5 + 0.6 * 0.9
    assert hypervolume(pts) == pytest.approx(expected)
    assert hypervolume(pts[:2]) == pytest.approx(expected)  # a dominated point adds nothing
    assert hypervolume(list(reversed(pts))) == pytest.approx(expected)  # order does not matter
    # a better point never lowers it
    assert hypervolume(pts + [("d", 0.05, 0.6)]) > hypervolume(pts)
    # a Monte Carlo estimate of the same area agrees
    rng = random.Random(0)
    n, hits = 40_000, 0
    for _ in range(n):
        leak, util = rng.random(), rng.random()
        hits += any(p_leak <= leak and p_util >= util for _, p_leak, p_util in pts)
    assert hits / n == pytest.approx(expected, abs=0.01)


def test_hypervolume_refuses_missing_figures():
    with pytest.raises(ValueError, match="'x'"):
        hypervolume([("x", float("nan"), 0.5)])


def test_front_and_dominance():
    pts = [("a", 0.1, 0.9), ("b", 0.5, 0.95), ("c", 0.5, 0.8), ("d", 0.05, 0.3)]
    assert pareto_front(pts) == ["a", "b", "d"]
    other = [("x", 0.2, 0.85), ("y", 0.01, 0.99)]
    assert dominance(pts, other) == {"a": ["x"], "b": [], "c": [], "d": []}
    assert dominance(other, pts) == {"x": ["c"], "y": ["a", "b", "c", "d"]}
    assert weakly_dominates(other[1:], pts) and not weakly_dominates(pts, other)
    assert weakly_dominates([("same", 0.1, 0.9)], [("copy", 0.1, 0.9)])  # equal points cover each other


def test_within_the_intervals_only_a_difference_with_intervals_apart_counts():
    policy = ("p", (0.15, 0.25), (0.80, 0.95))
    assert covers_within(policy, ("level", (0.20, 0.30), (0.85, 0.99)))  # overlaps on both axes
    assert not covers_within(policy, ("less leak", (0.05, 0.14), (0.80, 0.95)))  # leak interval wholly below
    assert not covers_within(policy, ("more utility", (0.20, 0.30), (0.96, 0.99)))  # utility interval wholly above
    assert covers_within(policy, ("worse", (0.5, 0.6), (0.1, 0.2)))
    # both directions can hold: two fronts the intervals cannot tell apart
    grid = [("g1", (0.12, 0.22), (0.85, 0.97)), ("g2", (0.4, 0.5), (0.9, 0.99))]
    assert weakly_dominates_within([policy], grid) and weakly_dominates_within(grid, [policy])
    assert not weakly_dominates_within([policy], grid + [("g3", (0.01, 0.10), (0.7, 0.9))])


def test_the_summary_reads_dominance_within_the_intervals_on_both_axes():
    """By the means the grid's point has more utility, so neither front weakly dominates; within
    the intervals the policy's front covers the grid's, and the grid's is only held back on the
    leak above the reference, where its interval is wholly above the policy's."""
    records = [
        {**_record("fixed-a", FIXED, 0.22, 0.90, 300), "leak_ci": [0.20, 0.25], "utility_ci": [0.80, 0.95], "leak_reference": 0.05},
        {**_record("policy-1", POLICY, 0.20, 0.88, 300), "leak_ci": [0.17, 0.23], "utility_ci": [0.78, 0.94], "leak_reference": 0.15},
    ]
    s = summarize(records)
    assert not s["policy_front_weakly_dominates_fixed_front"] and not s["fixed_front_weakly_dominates_policy_front"]
    assert s["policy_front_weakly_dominates_fixed_front_within_intervals"] and s["fixed_front_weakly_dominates_policy_front_within_intervals"]
    above = s["above_reference"]  # excess: grid 0.17 [0.15, 0.20], policy 0.05 [0.02, 0.08]
    assert above["policy_front_weakly_dominates_fixed_front_within_intervals"]
    assert not above["fixed_front_weakly_dominates_policy_front_within_intervals"]
    text = markdown({"mode": "quick", "seeds": 1, "attacks": ["whitebox"], "data_root": "faces", "grid": "1 setting", "trials": _report_rows(records), "confirmations": None, "summary": s, "wall_seconds": 60.0})
    assert "by the means **no**, within the 95% intervals **yes**" in text
    assert "within the intervals: policy over grid **yes**, grid over policy **no**" in text


def test_the_whole_knob_grid_and_a_seeded_sample_of_it():
    cfg = Config()
    grid = knob_grid(cfg.rl)
    assert len(grid) == 5 * 2 * 3 * 2 * 2 == len(set(grid))
    for text in grid:  # every setting is one the benchmark's fixed rows parse
        assert parse_settings(text)["k"] in cfg.rl.k_choices
    assert grid_settings(cfg.rl, 0, 0) == grid == grid_settings(cfg.rl, 500, 0)  # a sample as large as the grid is the grid
    assert knob_grid_size(cfg.rl) == 120
    sample = grid_settings(cfg.rl, 24, 0)
    assert len(sample) == 24 == len(set(sample)) and set(sample) <= set(grid)
    assert sample == grid_settings(cfg.rl, 24, 0)  # seeded
    assert sample != grid_settings(cfg.rl, 24, 1)
    assert sample == [s for s in grid if s in sample]  # kept in grid order


def test_the_plan_round_trips_and_a_damaged_plan_is_refused(tmp_path):
    cfg = load_config(None, ["sweep.grid_sample=3", "sweep.leak_lambdas=[1, 10]"])
    plan = make_plan(cfg)
    assert [t.kind for t in plan] == [FIXED] * 3 + [POLICY] * 2
    assert [t.leak_lambda for t in plan if t.kind == POLICY] == [1.0, 10.0]
    write_plan(plan, True, tmp_path)
    assert read_plan(tmp_path) == (plan, True)
    data = json.loads((tmp_path / "plan.json").read_text())
    data["trials"][0]["key"] = "../escape"
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"plan\.json: trials\[0\] is not a valid trial"):
        read_plan(tmp_path)
    (tmp_path / "plan.json").write_text("{")
    with pytest.raises(ConfigError, match=r"plan\.json: not a sweep plan"):
        read_plan(tmp_path)


@pytest.mark.parametrize(
    "override, match",
    [
        ("sweep.grid_sample=-1", r"sweep\.grid_sample=-1 is out of range: >= 0"),
        ("sweep.leak_lambdas=[]", r"sweep\.leak_lambdas"),
        ("sweep.leak_lambdas=[1, 1]", r"sweep\.leak_lambdas=\[1\.0, 1\.0\] .*no repeats"),
        ("sweep.attacks=[link-abs]", r"sweep\.attacks=.*judged reconstruction attack"),
        ("sweep.attacks=[whitebox-eval]", r"sweep\.attacks=.*attack on the training batches"),
        ("sweep.attacks=[nope]", r"sweep\.attacks=.*nope is not"),
        ("sweep.trial_cpus=-1", r"sweep\.trial_cpus"),
        ("sweep.policy_seeds=-1", r"sweep\.policy_seeds=-1 is out of range: >= 0"),
    ],
)
def test_bad_sweep_values_name_the_field(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def _record(key, kind, leak, util, fr_steps):
    return {"key": key, "kind": kind, "leak": leak, "utility": util, "fr_steps": fr_steps, "wall_seconds": 60.0}


def test_summary_counts_each_side_and_says_who_dominates():
    records = [
        _record("fixed-a", FIXED, 0.3, 0.8, 300),
        _record("fixed-b", FIXED, 0.6, 0.9, 300),
        _record("fixed-c", FIXED, 0.7, 0.7, 300),
        _record("policy-1", POLICY, 0.2, 0.85, 200),
    ]
    s = summarize(records)
    assert s["sides"][FIXED]["front"] == ["fixed-a", "fixed-b"] and s["sides"][POLICY]["front"] == ["policy-1"]
    assert s["sides"][FIXED]["fr_steps"] == 900 and s["sides"][POLICY]["fr_steps"] == 200
    assert s["fr_steps_ratio_policy_to_fixed"] == pytest.approx(200 / 900)
    assert s["policy_dominates"] == {"policy-1": ["fixed-a"]}
    assert not s["policy_front_weakly_dominates_fixed_front"]  # fixed-b has more utility
    assert s["sides"][POLICY]["hypervolume"] == pytest.approx(0.8 * 0.85)
    assert s["sides"][FIXED]["hypervolume"] == pytest.approx(0.3 * 0.8 + 0.4 * 0.9)


def test_the_front_above_the_reference_reads_past_the_any_of_k_floor():
    """Raw any-of-k leaks favour small k (their chance floor is lower); above the do-nothing
    reference, a high-k point at its floor is the more private one."""
    records = [
        {**_record("fixed-k2", FIXED, 0.20, 0.90, 300), "leak_reference": 0.10},  # 10 points above its floor
        {**_record("policy-k6", POLICY, 0.30, 0.90, 300), "leak_reference": 0.31},  # at its floor
    ]
    s = summarize(records)
    assert s["fixed_front_weakly_dominates_policy_front"] and not s["policy_front_weakly_dominates_fixed_front"]
    above = s["above_reference"]
    assert above["policy_front_weakly_dominates_fixed_front"] and above["policy_dominates"] == {"policy-k6": ["fixed-k2"]}
    assert above["hypervolume"][POLICY] == pytest.approx(0.90) and above["hypervolume"][FIXED] == pytest.approx(0.9 * 0.9)
    assert summarize([_record("fixed-a", FIXED, 0.2, 0.9, 300)])["above_reference"] is None  # records without the reference


def test_each_policy_meets_the_best_grid_point_at_its_utility_and_only_apart_intervals_count():
    def rec(key, kind, leak, util, half=0.05):
        return {**_record(key, kind, leak, util, 300), "leak_ci": [leak - half, leak + half], "utility_ci": [util - 0.05, util + 0.05]}

    records = [
        rec("fixed-low-util", FIXED, 0.05, 0.50),  # leaks least but far less accurate: not eligible
        rec("fixed-a", FIXED, 0.30, 0.86),
        rec("fixed-b", FIXED, 0.25, 0.84),  # within 2 points of 0.85: eligible, lowest leak
        rec("policy-1", POLICY, 0.10, 0.85),
        rec("policy-2", POLICY, 0.24, 0.99),  # no grid point this accurate: the most accurate one
    ]
    (one, two) = summarize(records, tolerance=0.02)["policy_vs_best_fixed"]
    assert one["best_fixed"] == "fixed-b" and one["leak_intervals_apart"] and one["verdict"] == "the policy leaks less"
    assert two["best_fixed"] == "fixed-a" and two["rule"].startswith("no grid point") and not two["leak_intervals_apart"]
    assert two["verdict"] == "no difference the intervals show"
    assert "| `policy-1` | `fixed-b` |" in markdown({"summary": summarize(records), "trials": [{**r, "key": r["key"], "kind": r["kind"], "worst_attack": "whitebox", "judge_competent": True, "door_leak": None, "door_leak_ci": None, "fr_steps_training": 0, "fr_steps_measured": 300} for r in records], "mode": "quick", "seeds": 1, "data_root": "x", "attacks": ["whitebox"], "grid": "3 settings", "wall_seconds": 60.0})


def _report_rows(records):
    return [{**r, "worst_attack": "whitebox", "judge_competent": True, "door_leak": None, "door_leak_ci": None, "fr_steps_training": 0, "fr_steps_measured": 300} for r in records]


def test_the_picks_are_measured_again_and_read_on_the_fresh_measurement_only():
    """The grid's best of many noisy points is picked on one measurement and reported on
    another: its fresh figures, not the lucky ones, meet the policy's."""
    def rec(key, kind, leak, util, ref=0.2):
        return {**_record(key, kind, leak, util, 300), "leak_reference": ref, "leak_ci": [leak - 0.05, leak + 0.05], "utility_ci": [util - 0.05, util + 0.05]}

    records = [
        rec("fixed-lucky", FIXED, 0.10, 0.95, ref=0.05),  # low by chance: dominates the whole grid on the first measurement
        rec("fixed-b", FIXED, 0.25, 0.90, ref=0.15),
        rec("fixed-c", FIXED, 0.40, 0.60, ref=0.45),  # at its floor: on the front above the reference only
        rec("policy-1", POLICY, 0.22, 0.93),
        rec("policy-2", POLICY, 0.50, 0.50),  # on no front
    ]
    picked = to_confirm(records, tolerance=0.02)
    assert picked == ["fixed-lucky", "fixed-c", "policy-1"]  # fronts on both axes; fixed-lucky is also policy-1's best-fixed pick
    again = [{**r, "key": f"confirm-{r['key']}", "confirms": r["key"]} for r in records if r["key"] in picked]
    again[0].update(leak=0.35, leak_ci=[0.30, 0.40], utility=0.90, utility_ci=[0.85, 0.95])  # the lucky point regresses
    s = summarize(records, 0.02, again)
    assert s["fixed_front_weakly_dominates_policy_front"]  # on the first measurement the grid wins
    raw = s["confirmed"]["axes"]["raw"]
    assert raw["picked_on_first_measurement"] == {POLICY: ["policy-1"], FIXED: ["fixed-lucky"]} and raw["missing"] == []
    assert raw["policy_front_weakly_dominates_fixed_front"] and not raw["fixed_front_weakly_dominates_policy_front"]
    assert raw["hypervolume"][FIXED] == pytest.approx(0.65 * 0.90) and raw["hypervolume"][POLICY] == pytest.approx(0.78 * 0.93)
    (c,) = s["confirmed"]["policy_vs_best_fixed"]
    assert (c["policy"], c["best_fixed"], c["fixed_leak"], c["verdict"]) == ("policy-1", "fixed-lucky", 0.35, "the policy leaks less")
    assert s["sides"][FIXED]["confirmation_fr_steps"] == 600 and s["sides"][POLICY]["confirmation_fr_steps"] == 300
    grid_moved = s["confirmed"]["moved"][FIXED]
    assert grid_moved["leak"]["mean_change_points"] == pytest.approx(12.5) and grid_moved["leak"]["rms_change_points"] == pytest.approx(25 / 2**0.5)
    assert grid_moved["leak"]["mean_ci_half_width_points"] == pytest.approx(5.0) and s["confirmed"]["moved"][POLICY]["utility"]["rms_change_points"] == 0
    md = markdown({"summary": s, "trials": _report_rows(records), "confirmations": _report_rows(again), "mode": "quick", "seeds": 1, "data_root": "x", "attacks": ["whitebox"], "grid": "3 settings", "wall_seconds": 60.0})
    assert "## The picks measured again" in md and "| `fixed-lucky` | 90.0% [85.0, 95.0] | 35.0% [30.0, 40.0] (training batches) | 35.0% [30.0, 40.0] (whitebox) |" in md
    assert summarize(records)["confirmed"] is None  # no confirmation: nothing read


def test_the_confirmation_file_round_trips_and_names_only_trials_of_the_plan(tmp_path):
    plan = [Trial("fixed-a", FIXED, setting="k=2,flip=0.5,extra_removed=0,alpha=1.0,labels=hard"), Trial("policy-x", POLICY, leak_lambda=3.0)]
    write_plan(plan, True, tmp_path)
    assert read_confirmations(tmp_path, plan) is None  # not written yet
    chosen = [confirmation_of(t) for t in plan]
    write_confirmations(chosen, tmp_path)
    assert read_confirmations(tmp_path, plan) == chosen and chosen[1].leak_lambda == 3.0 and chosen[1].confirms == "policy-x"
    stray = json.loads((tmp_path / "confirm.json").read_text())
    stray["trials"][0]["setting"] = "k=6,flip=0.5,extra_removed=0,alpha=1.0,labels=hard"  # not what fixed-a measured
    (tmp_path / "confirm.json").write_text(json.dumps(stray))
    with pytest.raises(ConfigError, match=r"confirm.json: trials\[0\] is not the confirmation"):
        read_confirmations(tmp_path, plan)
    plan_json = json.loads((tmp_path / "plan.json").read_text())
    plan_json["trials"][0]["confirms"] = "policy-x"  # the plan's own trials confirm nothing
    (tmp_path / "plan.json").write_text(json.dumps(plan_json))
    with pytest.raises(ConfigError, match=r"plan.json: trials\[0\] is not a valid trial"):
        read_plan(tmp_path)


def test_a_trial_record_keeps_the_training_batches_and_the_door_apart_and_the_front_reads_the_worse():
    def cell(acc1, what_if=False):
        return {"acc1": acc1, "score": 0.5, "ci": {"acc1": [acc1 - 0.1, acc1 + 0.1]}, "what_if": what_if}

    row = {
        "utility": {"identification_acc": 0.9, "ci": {"identification_acc": [0.8, 0.95]}},
        "attacks": {"whitebox": cell(0.3), "label-aware": cell(0.4), "provenance": cell(0.9, what_if=True), "whitebox-eval": cell(0.6)},
        "fr_steps": 300,
    }
    row["attacks"]["label-aware"]["reference_acc1"] = 0.15
    results = {"defences": [row], "evaluation_model": {"test_acc": 1.0, "competent": True}, "data": {"chance_acc1": 0.05}, "seeds": 1, "mode": "quick"}
    record = trial_record(Trial("policy-x", POLICY, leak_lambda=3.0), results, fr_steps_training=576, wall_seconds=12.5)
    assert record["leak"] == 0.4 and record["worst_attack"] == "label-aware" and record["leak_ci"] == [0.30000000000000004, 0.5]
    assert record["door_leak"] == 0.6 and "provenance" not in record["leak_by_attack"]  # what-if never counts
    assert record["fr_steps"] == 876 and record["fr_steps_measured"] == 300 and record["utility"] == 0.9
    assert record["leak_reference"] == 0.15  # the do-nothing attacker on the worst cell's rows
    assert record["door_leak_reference"] is None  # not in this door cell: chance stands in for it
    assert raw_leak(record) == 0.6 and leak_above_reference(record) == pytest.approx(0.55)  # the door: 0.6 - chance 0.05


def test_every_message_counts_on_the_front_the_door_included():
    """A setting whose training batches leak little but whose probes leak much is no front point
    over one that leaks moderately on both: the front, the comparison and the above-reference
    axis read each trial's worst message, as the benchmark's worst case does."""

    def rec(key, kind, leak, util, door, door_ref=0.05):
        r = {**_record(key, kind, leak, util, 300), "leak_ci": [leak - 0.02, leak + 0.02], "utility_ci": [util - 0.05, util + 0.05], "leak_reference": 0.1}
        return {**r, "door_leak": door, "door_leak_ci": [door - 0.05, door + 0.05], "door_leak_reference": door_ref}

    records = [
        rec("fixed-flipped", FIXED, 0.12, 0.90, door=0.35),  # quiet batches, loud probes
        rec("fixed-plain", FIXED, 0.16, 0.90, door=0.18),
        rec("policy-1", POLICY, 0.14, 0.90, door=0.35),
    ]
    s = summarize(records)
    assert s["sides"][FIXED]["front"] == ["fixed-plain"]  # on the batches alone, fixed-flipped would be
    assert s["fixed_dominates"] == {"fixed-plain": ["policy-1"]}
    (c,) = s["policy_vs_best_fixed"]
    assert (c["best_fixed"], c["policy_leak"], c["policy_leak_message"], c["fixed_leak"], c["fixed_leak_message"]) == ("fixed-plain", 0.35, "probe door", 0.18, "probe door")
    assert c["policy_leak_ci"] == pytest.approx([0.30, 0.40]) and c["verdict"] == "the grid point leaks less"
    assert leak_above_reference(records[0]) == pytest.approx(0.30) and leak_above_reference(records[1]) == pytest.approx(0.13)
    assert s["above_reference"]["front"][FIXED] == ["fixed-plain"]
    md = markdown({"summary": s, "trials": [{**r, "worst_attack": "whitebox", "judge_competent": True, "fr_steps_training": 0, "fr_steps_measured": 300} for r in records], "mode": "quick", "seeds": 1, "data_root": "x", "attacks": ["whitebox", "whitebox-eval"], "grid": "2 settings", "wall_seconds": 60.0})
    assert "| `fixed-flipped` |  | 90.0% [85.0, 95.0] | 35.0% [30.0, 40.0] (probe door) | 12.0% [10.0, 14.0] (whitebox) | +2.0 (reference 10.0%); probe door +30.0 |" in md


def test_fixed_trials_get_the_owner_options_a_policy_run_deploys():
    """A fixed setting is measured with the key and the flipped k = 1 messages that a policy run
    of the same config sends (defaults: channel key; flips as the training rows)."""
    from rl_mask.bench.benchmark import deployed_owner_suffixes
    from rl_mask.config import Config, split_defence_name

    cfg = Config()
    assert deployed_owner_suffixes(cfg, 0.5) == "+key+evalflip" and deployed_owner_suffixes(cfg, 0.0) == "+key"
    assert split_defence_name("fixed[k=2,flip=0.5,extra_removed=0,alpha=1.0,labels=soft]+key+evalflip")[1] == ["+key", "+evalflip"]
    cfg.mask.key, cfg.mask.eval_flip = "none", 0.0
    assert deployed_owner_suffixes(cfg, 0.5) == ""
    cfg.mask.key = "positions"
    assert deployed_owner_suffixes(cfg, 0.0) == "+poskey"


def test_a_row_measures_the_evaluation_flip_a_run_deploys_not_always_one_half():
    """A setting trained with flip 0.25 (or a config with mask.eval_flip=0.3) sends its k = 1
    messages flipped with that probability: its row names it and is built with it."""
    from rl_mask.bench.benchmark import deployed_owner_suffixes, grid_defence, with_owner_options
    from rl_mask.config import Config, ConfigError, split_defence_name

    cfg = Config()
    assert deployed_owner_suffixes(cfg, 0.25) == "+key+evalflip=0.25"
    name = "fixed[k=2,flip=0.25,extra_removed=0,alpha=1.0,labels=soft]+key+evalflip=0.25"
    base, suffixes = split_defence_name(name)
    assert suffixes == ["+key", "+evalflip=0.25"]
    assert with_owner_options(grid_defence(cfg, base[len("fixed["):-1]), suffixes, cfg).eval_flip == 0.25
    assert with_owner_options(grid_defence(cfg, base[len("fixed["):-1]), ["+evalflip"], cfg).eval_flip == 0.5
    cfg.mask.eval_flip = 0.3
    assert deployed_owner_suffixes(cfg, 0.0) == "+key+evalflip=0.3"
    cfg.benchmark.defences = [name]
    cfg.validate()
    for bad in ("mask+evalflip=0.7", "mask+evalflip=0", "mask+evalflip=x", "mask+evalflip+evalflip=0.2"):
        cfg.benchmark.defences = [bad]
        with pytest.raises(ConfigError, match="benchmark.defences"):
            cfg.validate()


def test_the_sweep_runs_the_key_recovery_variant_of_each_of_its_attacks():
    """The default deployment carries the owner's key, and a decoder that does not undo it is
    weak on settings without flips: every default attack with a ``+recover`` variant runs it too."""
    from rl_mask.config import BENCHMARK_ATTACKS, RECOVER_SUFFIX, Config

    cfg = Config()
    assert cfg.mask.key != "none"
    variants = [a + RECOVER_SUFFIX for a in cfg.sweep.attacks if a + RECOVER_SUFFIX in BENCHMARK_ATTACKS]
    assert len(variants) == 3 and set(variants) <= set(cfg.sweep.attacks)
    cfg.validate()

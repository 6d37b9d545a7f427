"""Knob values pooled over sweeps (``rl_mask.bench.knob_effects``), on recorded sweeps' results."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rl_mask.bench.knob_effects import knob_effects, markdown
from rl_mask.bench.sweep_report import raw_leak

ROOT = Path(__file__).resolve().parents[1]
YALE = [ROOT / "benchmarks" / "results" / f"sweep-yale-quick-s{i}" for i in (3, 4)]


def test_every_grid_point_counts_once_under_each_of_its_knob_values_and_every_policy_share_is_read():
    sweeps = [json.loads((f / "results.json").read_text()) for f in YALE]
    effects = knob_effects(sweeps)
    grid = [t for r in sweeps for t in r["trials"] if t["kind"] == "fixed"]
    policies = [t for r in sweeps for t in r["trials"] if t["kind"] == "policy"]
    assert effects["grid_trials"] == len(grid) == 48 and effects["policies"] == len(policies) == 2
    rows = {(r["knob"], r["value"]): r for r in effects["rows"]}
    for knob in ("k", "flip", "extra_removed", "alpha", "labels"):
        assert sum(r["grid_points"] for (name, _), r in rows.items() if name == knob) == len(grid)
        assert sum(r["policy_share"] for (name, _), r in rows.items() if name == knob) == pytest.approx(1.0, abs=1e-3)
    removed = [t for t in grid if "extra_removed=0," in t["setting"]]
    row = rows[("extra_removed", "0")]
    assert row["grid_points"] == len(removed)
    assert row["utility"] == pytest.approx(sum(t["utility"] for t in removed) / len(removed))
    assert row["leak"] == pytest.approx(sum(raw_leak(t) for t in removed) / len(removed))  # the worst message
    assert row["utility_ci"][0] < row["utility"] < row["utility_ci"][1]
    shares = [p["action_distribution"]["extra_removed"]["0"] for p in policies]
    assert row["policy_share"] == pytest.approx(sum(shares) / 2) and row["policy_share_range"] == [min(shares), max(shares)]
    assert "| extra_removed | 0 |" in markdown(effects)


def test_the_command_refuses_sweeps_of_different_face_sets(tmp_path):
    att = ROOT / "benchmarks" / "results" / "sweep-att-quick-s7"
    out = subprocess.run([sys.executable, "benchmarks/knob_effects.py", str(YALE[0]), str(att)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "different face sets" in out.stderr
    out = subprocess.run([sys.executable, "benchmarks/knob_effects.py", *map(str, YALE), "--out", str(tmp_path / "k.json")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "k.json").read_text())["grid_trials"] == 48

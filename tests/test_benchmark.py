"""``rl-mask benchmark`` and ``rl-mask export-masked`` end to end on a tiny budget (real faces,
real training, every component; the budgets are far too small for meaningful figures)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import privacy_helpers as H
from rl_mask.bench.benchmark import run_benchmark
from rl_mask.bench.report import pareto_front
from rl_mask.config import BENCHMARK_ATTACKS, LINKAGE_ATTACKS, ConfigError, load_config

JUDGED_ATTACKS = [a for a in BENCHMARK_ATTACKS if a not in LINKAGE_ATTACKS]

TINY = {
    "fr_steps": 4,
    "eval_model_steps": 4,
    "attack_batches": 1,
    "context_batches": 2,
    "grid_points": 2,
    "decoder_steps": 3,
    "decoder_batch_size": 8,
    "mi_steps": 3,
    "mi_restarts": 1,
    "gan_steps": 3,
    "gmi_steps": 3,
    "gmi_restarts": 1,
}


def tiny_benchmark_config(defences):
    overrides = [f"benchmark.quick.{k}={v}" for k, v in TINY.items()]
    overrides += [f"benchmark.defences={json.dumps(defences)}", "fr.eval_every=2"]
    return load_config(None, overrides)


def _table(results):
    return [(d["name"], a, round(c["acc1"], 6), round(c["ssim"], 6), round(c["psnr"], 4), round(c["score"], 6)) for d in results["defences"] for a, c in d["attacks"].items()]


def test_benchmark_fills_every_cell_writes_the_report_and_reproduces(tmp_path):
    cfg = tiny_benchmark_config(["none", "mask", "dpsgd"])
    first = run_benchmark(cfg, tmp_path / "a", quick=True, progress=False)
    again = run_benchmark(cfg, tmp_path / "b", quick=True, progress=False)
    assert _table(first) == _table(again)
    assert [d["name"] for d in first["defences"]] == ["none", "mask", "dpsgd"]
    for d in first["defences"]:
        assert list(d["attacks"]) == JUDGED_ATTACKS
        assert list(d["linkage"]) == list(LINKAGE_ATTACKS)
        for cell in d["linkage"].values():
            assert 0 <= cell["identification"] <= 1 and cell["chance"] == 1 / 40 and cell["n"] == 20
        for cell in d["attacks"].values():
            for key in ("acc1", "acc5", "ssim", "psnr", "knn", "knn_ratio", "score"):
                assert np.isfinite(cell[key])
            assert 0 <= cell["acc1"] <= cell["acc5"] <= 1 and 0 <= cell["score"] <= 1
        assert 0 <= d["utility"]["identification_acc"] <= 1
    assert first["defences"][2]["dp"]["epsilon"] > 0
    out = tmp_path / "a"
    md = (out / "results.md").read_text()
    for d in ("none", "mask", "dpsgd"):
        for a in JUDGED_ATTACKS:
            assert f"| {d} | {a} |" in md or (a == "provenance" and f"| {d} | {a} (what-if) |" in md)
    assert "Identity linkage" in md and "leak above reference" in md
    assert "mean public face" in md and "0.4 * (visual + psnr_term + feature)/3 + 0.6 * attack" in md
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "examples.png").is_file()
    assert json.loads((out / "results.json").read_text())["mode"] == "quick"
    assert (out / "runs" / "mask" / "fr.pt").is_file()


def test_adaptive_without_a_run_says_so():
    from rl_mask.bench.benchmark import train_defence

    cfg = tiny_benchmark_config(["adaptive"])
    cfg.fr.steps = 2
    cfg.benchmark.adaptive_k_probs = [0.0, 0.0, 0.2, 0.3, 0.5]
    import tempfile
    from pathlib import Path

    run = train_defence("adaptive", cfg, H.data(), Path(tempfile.mkdtemp()), None, progress=False)
    assert "no learned policy" in run.note and run.defence.probs == pytest.approx([0, 0, 0.2, 0.3, 0.5])


@pytest.mark.parametrize(
    "override, message",
    [
        ("benchmark.defences=[none, laplace]", "benchmark.defences="),
        ("benchmark.attacks=[]", "benchmark.attacks=[] is out of range"),
        ("benchmark.quick.decoder_steps=0", "benchmark.quick.decoder_steps=0 is out of range"),
        ("benchmark.adaptive_k_probs=[0.5, 0.5]", "benchmark.adaptive_k_probs"),
        ("dp.target_epsilon=0", "dp.target_epsilon=0.0 is out of range"),
    ],
)
def test_bad_benchmark_config_names_the_field(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, [override])


def test_cli_rejects_a_folder_that_is_not_a_run(tmp_path, cli_env):
    (tmp_path / "x").mkdir()
    proc = subprocess.run([sys.executable, "-m", "trainers.cli", "export-masked", "--run", str(tmp_path / "x"), "--out", str(tmp_path / "m.npz")], env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "has no config.yaml" in proc.stderr


def test_pareto_front():
    pts = [("a", 0.1, 0.9), ("b", 0.5, 0.95), ("c", 0.5, 0.8), ("d", 0.05, 0.3)]
    assert pareto_front(pts) == ["a", "b", "d"]


def test_seeds_give_an_interval_for_every_figure_and_an_untrained_judge_is_flagged(tmp_path):
    # Two seeds, a judge trained for 1 step: every cell gets a t-interval over the seeds, and
    # the report says loudly that the judge cannot judge.
    cfg = tiny_benchmark_config(["none", "mask"])
    cfg.benchmark.attacks = ["whitebox"]
    cfg.benchmark.quick.eval_model_steps = 1
    cfg.benchmark.seeds = 2
    results = run_benchmark(cfg, tmp_path, quick=True, progress=False)
    assert len(results["per_seed"]) == 2
    assert results["per_seed"][0]["seed"] != results["per_seed"][1]["seed"]
    for d in results["defences"]:
        assert len(d["run_dirs"]) == 2 and len(set(d["run_dirs"])) == 2
        for fig in [d["utility"], *d["attacks"].values()]:
            for key, values in fig["seeds"].items():
                lo, hi = fig["ci"][key]
                assert len(values) == 2, key
                if not key.endswith("_rel"):  # relative leaks are NaN if a 1-step judge got no test face right
                    assert lo <= fig[key] + 1e-9 and fig[key] <= hi + 1e-9, key
            assert fig["ci_method"] == "t over seeds"
        cell = d["attacks"]["whitebox"]
        assert "acc1_rel" in cell and cell["ci"]["acc1_rel"] is not None
    sig = results["significance"]
    assert {(c["defence"], c["versus"], c["attack"]) for c in sig} == {("mask", "none", None), ("mask", "none", "whitebox")}
    assert all(c["rule"].startswith("welch") for c in sig)
    judge = results["evaluation_model"]
    assert judge["competent"] is False and judge["worst_seed_test_acc"] < 0.8
    md = (tmp_path / "results.md").read_text()
    head = md.split("## Utility")[0]
    assert "WARNING: THE JUDGE IS NOT COMPETENT" in head
    assert "| mask | whitebox | 64 | UNRELIABLE(" in md
    assert "Student-t" in md and "## Threat model" in md and "## Honest reading" in md
    assert (tmp_path / "seed1" / "runs" / "mask" / "fr.pt").is_file() and (tmp_path / "pareto.png").is_file()


def test_cli_one_seed_with_a_trained_judge_reports_wilson_intervals_and_no_warning(tmp_path, cli_env):
    # One seed, a judge trained long enough to recognise held-out AT&T faces: no warning,
    # Wilson intervals over the n reconstructions, leaks relative to the judge.
    sets = [f"benchmark.quick.{k}={v}" for k, v in TINY.items() if k != "eval_model_steps"] + ["benchmark.quick.eval_model_steps=150", "fr.eval_every=2"]
    cmd = [sys.executable, "-m", "trainers.cli", "benchmark", "--quick", "--quiet", "--seeds", "1", "--defences", "none,mask", "--attacks", "mi-face", "--out", str(tmp_path)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    judge = results["evaluation_model"]
    assert judge["competent"] is True and judge["test_acc"] >= 0.8
    assert "NOT COMPETENT" not in proc.stdout + proc.stderr and "UNRELIABLE" not in proc.stdout
    assert [d["name"] for d in results["defences"]] == ["none", "mask"] and list(results["defences"][0]["attacks"]) == ["mi-face"]
    cell = results["defences"][1]["attacks"]["mi-face"]
    lo, hi = cell["ci"]["acc1"]
    assert 0 <= lo <= cell["acc1"] <= hi <= 1 and hi > lo
    assert cell["ci"]["ssim"] is None  # one seed: no interval for figures that are not proportions
    assert cell["acc1_rel"] == pytest.approx(cell["acc1"] / judge["test_acc"])
    assert "Wilson" in proc.stdout and results["runtime_estimate"]["full"] > results["runtime_estimate"]["quick"] > 0


def test_yale_config_splits_15_identities(tmp_path):
    from rl_mask.bench.benchmark import check_identity_disjoint
    from rl_mask.owner.stream import prepare_data

    repo = Path(__file__).resolve().parent.parent
    cfg = load_config(repo / "configs" / "yale.yaml", [f"data.root={json.dumps(str(repo.parent / 'shared' / 'data' / 'yale_faces'))}"])
    data = prepare_data(cfg)
    split = data.split
    check_identity_disjoint(split)
    assert len(set(split.private_train.identities) | set(split.public.identities)) == 15
    assert data.num_classes == 10 and split.public.num_classes == 5 and len(split.public) == 55
    assert tuple(data.train_images.shape) == (60, 1, 64, 64)
    assert np.bincount(data.test_labels.numpy()).tolist() == [4] * 10  # >= 2 held-out faces per identity
    assert np.bincount(data.val_labels.numpy()).tolist() == [1] * 10


def _row(name, acc, leaks):
    attacks = {a: {"acc1": v, "score": 1 - v} for a, v in leaks.items()}
    return {"name": name, "utility": {"identification_acc": acc}, "attacks": attacks}


def test_best_fixed_is_the_least_leaky_grid_point_at_the_adaptive_rows_utility():
    from rl_mask.bench.benchmark import pick_best_fixed

    adaptive = _row("adaptive", 0.90, {"whitebox": 0.30})
    grid = [
        _row("fixed[a]", 0.95, {"whitebox": 0.20, "label-aware": 0.50}),  # worst attack 50%
        _row("fixed[b]", 0.89, {"whitebox": 0.35, "label-aware": 0.10}),  # worst 35%, within 2 points
        _row("fixed[c]", 0.70, {"whitebox": 0.05, "label-aware": 0.05}),  # least leaky, far less accurate
    ]
    best = pick_best_fixed([adaptive, *grid], adaptive, 0.02)
    assert best["name"] == "best-fixed" and best["best_fixed_of"] == "fixed[b]" and best["attacks"] == grid[1]["attacks"]
    # what-if attacks never count for a worst case
    grid[1]["attacks"]["provenance"] = {"acc1": 0.99, "score": 0.0, "what_if": True}
    assert pick_best_fixed([adaptive, *grid], adaptive, 0.02)["best_fixed_of"] == "fixed[b]"
    # nothing accurate enough: the most accurate grid point, and the note says so
    fallback = pick_best_fixed(grid, _row("adaptive", 0.99, {"whitebox": 0.3}), 0.02)
    assert fallback["best_fixed_of"] == "fixed[a]" and "no grid point came within" in fallback["note"]


def test_the_probe_door_attacks_every_probe_that_crossed():
    """Every held-out face the owner embeds through the server crosses as a probe, the
    validation faces' as well as the test faces' (``ProbeMessages``), so the door's attacker
    holds all of them: the door target is exactly those messages, in sending order, each
    scored against its own face and identity."""
    from types import SimpleNamespace

    import torch

    from rl_mask.bench.benchmark import ProbeMessages, eval_door_target
    from rl_mask.owner.defences import build_defence
    from rl_mask.owner.stream import prepare_data

    cfg = load_config(None, ["mask.sign_flip=true"])
    data = prepare_data(cfg)
    run = SimpleNamespace(defence=build_defence(cfg, "mask"), model=None)
    messages = ProbeMessages.of(run, data)
    target, key = eval_door_target(run, data, messages)
    assert len(data.val_labels) > 0 and len(data.test_labels) > 0
    (crossed,) = target.crossed
    assert torch.equal(crossed.inputs, torch.cat([messages.validation.inputs, messages.test.inputs]))
    assert torch.equal(key.labels[:, 0], torch.cat([data.val_labels, data.test_labels]))
    assert torch.equal(key.dominant_originals(), torch.cat([data.val_images, data.test_images]))
    assert torch.equal(crossed.labels[:, 0], key.labels[:, 0])  # scoring only: the decoder never reads them

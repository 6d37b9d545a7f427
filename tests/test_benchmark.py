"""``rl-mask benchmark`` and ``rl-mask export-masked`` end to end on a tiny budget (real faces,
real training, every component; the budgets are far too small for meaningful figures)."""

import json
import subprocess
import sys

import numpy as np
import pytest

import privacy_helpers as H
from rl_mask.bench.benchmark import run_benchmark
from rl_mask.bench.report import pareto_front
from rl_mask.config import BENCHMARK_ATTACKS, ConfigError, load_config
from rl_mask.owner.defences import build_defence
from rl_mask.train_fr import train_fr

TINY = {
    "fr_steps": 4,
    "eval_model_steps": 4,
    "attack_batches": 1,
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
        assert list(d["attacks"]) == list(BENCHMARK_ATTACKS)
        for cell in d["attacks"].values():
            for key in ("acc1", "acc5", "ssim", "psnr", "knn", "knn_ratio", "score"):
                assert np.isfinite(cell[key])
            assert 0 <= cell["acc1"] <= cell["acc5"] <= 1 and 0 <= cell["score"] <= 1
        assert 0 <= d["utility"]["identification_acc"] <= 1
    assert first["defences"][2]["dp"]["epsilon"] > 0
    out = tmp_path / "a"
    md = (out / "results.md").read_text()
    for d in ("none", "mask", "dpsgd"):
        for a in BENCHMARK_ATTACKS:
            assert f"| {d} | {a} |" in md
    assert "mean public face" in md and "0.4 * (visual + psnr_term + feature)/3 + 0.6 * attack" in md
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "examples.png").is_file()
    assert json.loads((out / "results.json").read_text())["mode"] == "quick"
    assert (out / "runs" / "mask" / "fr.pt").is_file()


def test_adaptive_row_uses_the_learned_k_distribution_of_a_run(tmp_path):
    # An `rl-mask train`-style folder: config.yaml, fr.pt of a frequency model, summary.json
    # with the policy's k distribution.
    run = tmp_path / "adaptive_run"
    cfg = H.tiny_config(steps=2, eval_every=2)
    train_fr(cfg, run, progress=False, data=H.data(), defence=build_defence(cfg, "fixed-k"))
    (run / "summary.json").write_text(json.dumps({"k_distribution": {"2": 0.1, "4": 0.3, "6": 0.6}, "fr_steps": 2}))
    bench = tiny_benchmark_config(["adaptive"])
    bench.benchmark.attacks = ["whitebox", "mi-face"]
    results = run_benchmark(bench, tmp_path / "out", quick=True, adaptive_run=str(run), progress=False)
    row = results["defences"][0]
    assert row["defence"]["ks"] == [2, 4, 6] and row["defence"]["k_probs"] == pytest.approx([0.1, 0.3, 0.6])
    assert "learned policy" in row["note"] and row["replayed_batches"] is False
    assert set(row["attacks"]) == {"whitebox", "mi-face"}


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

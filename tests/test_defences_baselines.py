"""The baseline defences (MixUp, InstaHide, DP-SGD) next to ours, on real faces and real training."""

import json
import subprocess
import sys

import pytest
import torch
from opacus.validators import ModuleValidator

import privacy_helpers as H
from rl_mask.config import STRATEGIES, Config
from rl_mask.mask.masking import mix
from rl_mask.owner.defences import INSTAHIDE_CAP, build_defence
from rl_mask.owner.stream import TrainingStream
from rl_mask.server.service import FRService
from rl_mask.server.trainer import load_fr_model
from rl_mask.train_fr import train_fr


@pytest.mark.parametrize("name", list(STRATEGIES) + ["adaptive"])
def test_every_defence_encodes_a_well_formed_batch(att_float, att_faces, name):
    cfg = H.bare_config()
    defence = build_defence(cfg, name, [0.1, 0.1, 0.2, 0.3, 0.3] if name == "adaptive" else None)
    images, labels = att_float[:16], att_faces.labels[:16]
    batch = defence.encode_train(images, labels, torch.Generator().manual_seed(0))
    c, h, w = defence.input_shape(1, 112, 96)
    if defence.input_kind == "pixel":
        assert batch.inputs.shape == (16, 1, 112, 96) and c == 64 and (h, w) == (14, 12)
    else:
        assert batch.inputs.shape == (16, c, h, w) == (16, 58, 14, 12)
    assert torch.isfinite(batch.inputs).all()
    assert torch.allclose(batch.weights.sum(1), torch.ones(16))
    assert (batch.labels == labels[batch.sources]).all()
    assert defence.to_pixels(batch.inputs).shape == (16, 1, 112, 96)
    assert defence.private_training == (name == "dpsgd")
    expected_k = {"mixup": 2, "instahide": 4, "fixed-k": cfg.strategy.k}.get(name)
    if expected_k:
        assert batch.k == expected_k


def test_instahide_caps_weights_and_flips_signs(att_float, att_faces):
    images, labels = att_float[:32], att_faces.labels[:32]
    batch = build_defence(Config(), "instahide").encode_train(images, labels, torch.Generator().manual_seed(3))
    assert batch.weights.max() <= INSTAHIDE_CAP + 1e-6
    unflipped = mix(images, labels, 4, weights="instahide", cap=INSTAHIDE_CAP, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(batch.inputs.abs(), unflipped.inputs.abs())  # same mixture, only signs differ
    flipped = (batch.inputs != unflipped.inputs).float().mean()
    assert 0.4 < flipped < 0.6


def test_mixup_is_two_face_pixel_mixup(att_float, att_faces):
    images, labels = att_float[:8], att_faces.labels[:8]
    batch = build_defence(Config(), "mixup").encode_train(images, labels, torch.Generator().manual_seed(0))
    expected = (batch.weights[:, :1, None, None] * images[batch.sources[:, 0]] + batch.weights[:, 1:, None, None] * images[batch.sources[:, 1]])
    assert torch.allclose(batch.inputs, expected, atol=1e-6)


def test_dpsgd_trains_through_opacus_and_spends_the_target_epsilon(tmp_path):
    cfg = H.tiny_config(steps=6, eval_every=3)
    summary = train_fr(cfg, tmp_path, progress=False, data=H.data(), defence=build_defence(cfg, "dpsgd"))
    dp = summary["dp"]
    assert dp["epsilon"] == pytest.approx(cfg.dp.target_epsilon, rel=0.02) and dp["delta"] == 1e-5
    assert dp["noise_multiplier"] > 0 and dp["steps"] == 6 and dp["sample_rate"] == pytest.approx(64 / 120, rel=1e-4)  # 120 private training faces
    model, meta = load_fr_model(tmp_path / "fr.pt")
    assert meta["norm"] == "group"
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert ModuleValidator.validate(model.train(), strict=False) == []
    assert 0.0 <= summary["identification_acc"] <= 1.0


def test_dpsgd_uses_poisson_batches():
    cfg = H.tiny_config()
    stream = TrainingStream(cfg, build_defence(cfg, "dpsgd"), H.data())
    sizes = [stream.next().masked.inputs.shape[0] for _ in range(20)]
    assert len(set(sizes)) > 1 and 40 < sum(sizes) / len(sizes) < 90  # ~ Binomial(120, 64/120)


@pytest.mark.parametrize("rows_per_step, per_step", [(0, 1), (128, 2)])
def test_train_fr_replays_the_training_stream_exactly(tmp_path, monkeypatch, rows_per_step, per_step):
    """What train-fr trains on is exactly what TrainingStream (export, attacks) replays, sent
    through the FR service the pipeline uses: with ``fr.rows_per_step``, in aggregated steps."""
    seen, steps = [], []
    original = FRService.train_messages

    def capture(self, batches):
        seen.extend(b.inputs.clone() for b in batches)
        steps.append(len(batches))
        return original(self, batches)

    monkeypatch.setattr(FRService, "train_messages", capture)
    cfg = H.tiny_config(steps=3, eval_every=3, rows_per_step=rows_per_step)
    defence = build_defence(cfg, "instahide")
    summary = train_fr(cfg, tmp_path, progress=False, data=H.data(), defence=defence)
    assert steps == [per_step] * 3 and summary["fr_steps"] == 3
    stream = TrainingStream(cfg, build_defence(cfg, "instahide"), H.data())
    for inputs in seen:
        assert torch.equal(inputs, stream.next().masked.inputs)


def test_train_fr_cli_runs_a_baseline_strategy(tmp_path, cli_env):
    out = tmp_path / "mixup"
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.cli", "train-fr", "--strategy", "mixup", "--steps", "4", "--set", "fr.eval_every=2", "--out", str(out), "--quiet"],
        env=cli_env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["defence"] == {"name": "mixup", "k": 2, "weights": "dirichlet", "alpha": 1.0, "cap": 1.0, "sign_flip": False}

"""Metrics against known values, and the evaluation model on real faces."""

import math

import numpy as np
import pytest
import torch

import privacy_helpers as H
from rl_mask.owner.judge import ScoringKey, best_match, privacy_score, psnr, ssim
from rl_mask.owner.judge.image import PSNR_CAP_DB
from rl_mask.reconstruction import Reconstruction


def _checkerboard(shape):
    h, w = shape[-2:]
    return ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 * 2 - 1).float().expand(shape)


def test_ssim_of_a_face_with_itself_is_one(att_float):
    x = att_float[:5]
    assert np.allclose(ssim(x, x), 1.0)


def test_psnr_of_known_noise_is_20_db():
    # Mid grey (0.5 on [0, 1]) +- 0.1: MSE = 0.01 exactly, PSNR = 10 log10(1 / 0.01) = 20 dB.
    ref = torch.zeros(3, 1, 112, 96)
    noisy = ref + 0.2 * _checkerboard(ref.shape)  # 0.2 on [-1, 1] is 0.1 on [0, 1]
    assert psnr(noisy, ref) == pytest.approx([20.0] * 3, abs=1e-6)


def test_psnr_of_gaussian_noise_on_a_face(att_float):
    face = att_float[:1] * 0.8  # away from the clipping range
    sigma = 0.02  # on [0, 1]
    noisy = face + 2 * sigma * torch.randn(face.shape, generator=torch.Generator().manual_seed(0))
    mse = (((noisy.clamp(-1, 1) - face) / 2) ** 2).mean().item()
    assert psnr(noisy, face)[0] == pytest.approx(10 * math.log10(1 / mse), abs=1e-6)
    assert psnr(noisy, face)[0] == pytest.approx(-20 * math.log10(sigma), abs=0.3)


def test_identical_images_cap_psnr_and_another_person_scores_lower(att_faces, att_float):
    a = att_float[:1]
    other = att_float[att_faces.labels == 1][:1]
    noisy = a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    assert psnr(a, a)[0] == PSNR_CAP_DB
    assert 1.0 > ssim(noisy, a)[0] > ssim(other, a)[0]
    assert psnr(noisy, a)[0] > psnr(other, a)[0]


def test_shape_mismatch_is_an_error(att_float):
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(att_float[:2], att_float[:3])


def test_best_match_finds_the_identitys_own_face(att_faces, att_float):
    labels = att_faces.labels
    recon = att_float[labels == 3][4:5]
    p, s = best_match(recon, torch.tensor([3]), att_float, labels)
    assert s[0] == pytest.approx(1.0) and p[0] == PSNR_CAP_DB


def test_privacy_score_known_values():
    leak_all = privacy_score(ssim_mean=1.0, psnr_mean=40.0, knn_ratio=0.0, acc1=1.0, chance=0.05)
    assert leak_all["score"] == pytest.approx(0.0)
    leak_none = privacy_score(ssim_mean=-0.2, psnr_mean=5.0, knn_ratio=1.7, acc1=0.05, chance=0.05)
    assert leak_none["score"] == pytest.approx(1.0)
    mid = privacy_score(ssim_mean=0.5, psnr_mean=20.0, knn_ratio=0.25, acc1=0.525, chance=0.05)
    # visual 0.5, psnr_term 0.5, feature 0.25, attack 0.5 -> 0.4 * 1.25 / 3 + 0.6 * 0.5
    assert mid["score"] == pytest.approx(0.4 * 1.25 / 3 + 0.3)


def test_judge_recognises_held_out_faces_and_knn_is_zero_on_the_gallery():
    judge, d = H.judge(), H.data()
    leak = judge.identity_leak(d.test_images, d.test_labels)
    assert leak["acc1"] >= 0.8 and leak["acc5"] >= leak["acc1"]
    _, feats = judge.model.predict(d.train_images[:5])
    assert torch.allclose(judge.knn_distance(feats, d.train_labels[:5]), torch.zeros(5), atol=1e-4)
    assert judge.knn_reference > 0


def test_score_of_the_originals_is_a_full_leak():
    judge, d = H.judge(), H.data()
    rec = Reconstruction(d.train_images[:20], d.train_labels[:20], "reconstruction")
    cell = judge.score(rec, ScoringKey.single(d.train_labels[:20], d.train_images[:20]))
    assert cell["ssim"] == pytest.approx(1.0) and cell["psnr"] == PSNR_CAP_DB and cell["acc1"] >= 0.9
    assert cell["acc1"] == cell["acc1_any"] == cell["acc1_dominant"]
    assert cell["score"] < 0.1
    with pytest.raises(ValueError, match="NaN"):
        judge.score(Reconstruction(torch.full((2, 1, 112, 96), float("nan")), d.train_labels[:2], "reconstruction"), ScoringKey.single(d.train_labels[:2], d.train_images[:2]))
    with pytest.raises(ValueError, match="ScoringKey"):
        judge.score(rec)


def test_any_of_k_counts_a_partner_face_as_a_leak():
    """A row mixing faces A (dominant) and B: reconstructing B exactly is a full leak of B,
    counted by acc1_any (the headline) but not by acc1_dominant; PSNR/SSIM take the best match."""
    judge, d = H.judge(), H.data()
    a, b = torch.arange(0, 20), torch.arange(20, 40)
    assert (d.train_labels[a] != d.train_labels[b]).any()
    originals = torch.cat([d.train_images[a], d.train_images[b]])
    key = ScoringKey(
        labels=torch.stack([d.train_labels[a], d.train_labels[b]], 1),
        sources=torch.stack([a, b], 1),
        originals=originals,
        dominant=torch.zeros(20, dtype=torch.long),
    )
    rec = Reconstruction(d.train_images[b], d.train_labels[b], "reconstruction", rows=torch.arange(20))
    cell = judge.score(rec, key)
    differ = (d.train_labels[a] != d.train_labels[b]).float().mean().item()
    assert cell["acc1_any"] >= 0.9 and cell["acc1_dominant"] <= 1 - differ + 0.1
    assert cell["ssim"] == pytest.approx(1.0) and cell["psnr"] == PSNR_CAP_DB
    assert cell["ssim_dominant"] < 0.9
    # the score follows the any-of-k leak: a full leak
    assert cell["score"] < 0.1


def test_judge_recognises_held_out_yale_faces_despite_the_lighting():
    # Yale: 10 private people, 6 training faces each, 4 held-out ones under other lighting
    # and expressions. The quick budget's judge must clear the benchmark's competence floor.
    import json
    from pathlib import Path

    from rl_mask.config import load_config
    from rl_mask.owner.judge import judge_report, train_evaluation_model
    from rl_mask.owner.stream import prepare_data

    repo = Path(__file__).resolve().parent.parent
    cfg = load_config(repo / "configs" / "yale.yaml", [f"data.root={json.dumps(str(repo.parent / 'shared' / 'data' / 'yale_faces'))}"])
    d = prepare_data(cfg)
    model = train_evaluation_model(d.train_images, d.train_labels, d.num_classes, cfg.benchmark.quick.eval_model_steps, seed=cfg.benchmark.seed + 1234)
    report = judge_report(model, d.train_images, d.train_labels, d.test_images, d.test_labels)
    assert report.test_acc >= cfg.benchmark.judge_min_acc, report

"""Every attack on a tiny budget, on the real faces: well-formed output, and better than the
do-nothing attacker (the mean public face) where nothing protects the faces."""

import pytest
import torch

import privacy_helpers as H
from rl_mask.attacks import AttackTarget, BlackBoxReconstruction, GANPriorInversion, LabelAwareUnmixing, MIFace, ProvenanceAttack, WhiteBoxReconstruction
from rl_mask.attacks.reconstruction import guess_defence, row_major_guess, simulation_key
from rl_mask.bench.benchmark import IdentityLeakError, check_identity_disjoint
from rl_mask.config import Config
from rl_mask.owner.data import FaceSplit
from rl_mask.owner.defences import build_defence
from rl_mask.owner.judge import psnr, scoring_key
from rl_mask.owner.stream import TrainingStream
from rl_mask.server.trainer import build_model


def _target(name: str, model=None, batches: int = 1):
    """What crosses for ``batches`` training batches, and the dominant originals (owner side)."""
    cfg = H.tiny_config()
    defence = build_defence(cfg, name)
    stream = TrainingStream(cfg, defence, H.data())
    drawn = [stream.next() for _ in range(batches)]
    target = AttackTarget(defence, [b.masked.protected() for b in drawn], model, H.data().num_classes)
    return target, scoring_key(drawn).dominant_originals()


def _mean_face(n: int) -> torch.Tensor:
    return H.public().mean(0, keepdim=True).expand(n, -1, -1, -1)


def _judged_acc1(images, labels) -> float:
    return H.judge().identity_leak(images, labels)["acc1"]


def test_public_faces_never_show_a_private_person():
    split = H.data().split
    check_identity_disjoint(split)
    leaky = FaceSplit(split.private_train, split.private_val, split.private_test, split.private_train)
    with pytest.raises(IdentityLeakError, match="also in the public set"):
        check_identity_disjoint(leaky)


def test_whitebox_reconstruction_beats_the_mean_face_on_unprotected_data():
    target, originals = _target("none")
    rec = WhiteBoxReconstruction(steps=60, batch_size=16).fit(H.public(), target.defence).attack(target)
    n = target.num_rows
    assert rec.kind == "reconstruction" and rec.images.shape == (n, 1, 112, 96) and torch.equal(rec.rows, torch.arange(n))
    assert rec.images.abs().max() <= 1.0 and torch.equal(rec.labels, target.joined().dominant_label)
    assert psnr(rec.images, originals).mean() > psnr(_mean_face(n), originals).mean() + 5.0
    assert _judged_acc1(rec.images, rec.labels) > max(0.5, _judged_acc1(_mean_face(n), rec.labels))


def test_reconstruction_attacks_work_on_frequency_masks():
    target, originals = _target("fixed-k")
    for attack in (WhiteBoxReconstruction(steps=20, batch_size=8), BlackBoxReconstruction(steps=20, batch_size=8)):
        rec = attack.fit(H.public(), target.defence).attack(target)
        assert rec.images.shape == originals.shape and torch.isfinite(rec.images).all()
    # The black-box attacker trained on its own estimate of the kept channels (from the
    # crossed tensors), which here is the deployed set.
    assert attack.simulated.describe()["removed_channels"] == target.defence.describe()["removed_channels"]
    assert attack.describe()["estimated_removed_channels"] == target.defence.describe()["removed_channels"]


def test_decoder_with_the_pix2pix_loss_option():
    target, originals = _target("mask")
    attack = WhiteBoxReconstruction(steps=4, batch_size=8, gan_weight=0.01).fit(H.public(), target.defence)
    rec = attack.attack(target)
    assert rec.images.shape == originals.shape and torch.isfinite(rec.images).all()
    assert attack.describe()["gan_weight"] == 0.01


def test_blackbox_pixel_guess_is_documented():
    cfg = H.bare_config()
    assert row_major_guess(6) == [0, 1, 5, 6, 14, 15]
    mask_guess = guess_defence(build_defence(cfg, "mask"), 1, 112, 96, guess_k=3)
    assert mask_guess.input_shape(1, 112, 96) == (58, 14, 12) and mask_guess.ks == [3]
    pixel_guess = guess_defence(build_defence(cfg, "instahide"), 1, 112, 96, guess_k=3)
    assert pixel_guess.describe()["k"] == 3 and pixel_guess.describe()["sign_flip"] is False
    # One black-box attacker serves every frequency defence that looks alike (its decoders are
    # per channel estimate); white-box ones are per simulation.
    bb = BlackBoxReconstruction()
    assert bb.fit_key(build_defence(cfg, "mask"), (1, 112, 96)) == bb.fit_key(build_defence(cfg, "random-k"), (1, 112, 96))
    assert simulation_key(build_defence(cfg, "none")) == simulation_key(build_defence(cfg, "dpsgd"))
    assert simulation_key(build_defence(cfg, "mask")) != simulation_key(build_defence(cfg, "fixed-k"))


def test_mi_face_beats_the_mean_face_on_the_unprotected_model():
    model, _ = H.unprotected_model()
    target = AttackTarget(build_defence(Config(), "none"), [], model, H.data().num_classes)
    rec = MIFace(steps=80, restarts=1).fit(H.public(), target.defence).attack(target)
    assert rec.kind == "inversion" and rec.images.shape == (20, 1, 112, 96) and torch.equal(rec.labels, torch.arange(20)) and rec.rows is None
    assert rec.images.abs().max() <= 1.0
    assert _judged_acc1(rec.images, rec.labels) > _judged_acc1(_mean_face(20), rec.labels) + 0.1


def test_mi_face_inverts_through_the_block_dct():
    """For frequency-input models the pixels are optimised through the DCT and channel removal."""
    cfg = H.bare_config()
    defence = build_defence(cfg, "mask")
    meta = {"input_shape": list(defence.input_shape(1, 112, 96)), "input_kind": "freq", "num_classes": 20, "model": {**vars(cfg.model), "input_map": "identity"}}
    torch.manual_seed(0)
    model = build_model(meta).eval()
    rec = MIFace(steps=3, restarts=2).fit(H.public(), defence).attack(AttackTarget(defence, [], model, 20))
    assert rec.images.shape == (20, 1, 112, 96) and not torch.allclose(rec.images[0], rec.images[1])


def test_gan_prior_inversion_is_well_formed_and_beats_the_mean_face():
    model, _ = H.unprotected_model()
    target = AttackTarget(build_defence(Config(), "none"), [], model, H.data().num_classes)
    attack = GANPriorInversion(gan_steps=150, steps=60, restarts=2).fit(H.public(), target.defence)
    assert attack.gan.generator.generate(torch.randn(2, 64)).shape == (2, 1, 112, 96)
    rec = attack.attack(target)
    assert rec.images.shape == (20, 1, 112, 96) and torch.isfinite(rec.images).all()
    assert _judged_acc1(rec.images, rec.labels) > _judged_acc1(_mean_face(20), rec.labels)


def test_attacks_refuse_to_run_unfitted():
    target, _ = _target("none")
    for attack in (WhiteBoxReconstruction(), BlackBoxReconstruction(), MIFace(), GANPriorInversion(), LabelAwareUnmixing(), ProvenanceAttack()):
        with pytest.raises(RuntimeError, match="fit"):
            attack.attack(target)

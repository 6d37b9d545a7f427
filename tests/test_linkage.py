"""Identity linkage on the real AT&T faces: the statistics route names the private people from
crossed rows far above chance without a key, the key's public invariant (block energy) carries
through the key, and key recovery from second moments finds the key when unflipped data cross."""

import pytest
import torch

import privacy_helpers as H
from rl_mask.attacks.key_recovery import RotationEstimate, recover_rotation
from rl_mask.attacks.linkage import LinkageTarget, build_linkage, identification, statistic
from rl_mask.bench.benchmark import grid_defence, linkage_gallery, with_owner_options
from rl_mask.owner.defences import build_defence
from rl_mask.owner.key import OwnerKey
from rl_mask.owner.messages import probe_set
from rl_mask.owner.stream import TrainingStream, prepare_data

FLIPS = "k=4,flip=0.5,extra_removed=0,alpha=1.0,labels=soft"


@pytest.fixture(scope="module")
def setting(att_root):
    cfg = H.bare_config().validate()
    data = prepare_data(cfg)
    gallery, truth = linkage_gallery(data, seed=0)
    return cfg, data, gallery, truth, data.split.public.float_images()


def _link(setting, defence, attack, batches=16):
    cfg, data, gallery, truth, public = setting
    stream = TrainingStream(cfg, defence, data)
    rows = [stream.next().masked.protected() for _ in range(batches)]
    key = getattr(defence.mask, "key", None)
    target = LinkageTarget(defence.public(), rows, [probe_set(defence, data.val_images).inputs], None, data.num_classes, None if key is None else key.kind)
    return identification(build_linkage(attack).link(target, gallery, public), truth)


def test_gallery_holds_every_private_person_once_among_distractors(setting):
    _, data, gallery, truth, _ = setting
    assert len(gallery) == 40 and len(set(truth.tolist())) == data.num_classes
    for label, c in enumerate(truth.tolist()):  # the truth points at that person's held-out faces
        assert torch.equal(gallery.photos[c], data.test_images[data.test_labels == label])


def test_statistics_link_mask_and_flipped_rows_far_above_chance(setting):
    cfg = setting[0]
    for defence in (build_defence(cfg, "mask"), grid_defence(cfg, FLIPS)):
        out = _link(setting, defence, "link-abs")
        assert out["chance"] == 1 / 40
        assert out["identification"] >= 0.6, (defence.name, out)  # measured 90-100% (chance 2.5%)


def test_block_energy_is_key_invariant_so_it_links_through_the_key(setting):
    cfg, data, *_ = setting
    plain = grid_defence(cfg, FLIPS)
    keyed = with_owner_options(plain, ["+poskey"], cfg)
    faces = data.test_images
    assert torch.allclose(statistic(keyed.encode_eval(faces), "energy"), statistic(plain.encode_eval(faces), "energy"), rtol=1e-4, atol=1e-5)
    out = _link(setting, keyed, "link-energy")
    assert out["identification"] >= 0.6, out  # the key does not stop this route (README)


def test_key_recovery_from_unflipped_second_moments(setting):
    cfg, _, _, _, public = setting
    encoded = build_defence(cfg, "mask").encode_eval(public)
    key = OwnerKey(11, "channels")
    estimate = recover_rotation(key.apply(encoded), encoded, per_position=False)
    truth = key.matrices(encoded.shape[1], 0, 0)
    assert torch.allclose(estimate, truth, atol=1e-6)  # same distribution: exact, signs included
    assert torch.allclose(RotationEstimate(estimate).undo(key.apply(encoded)), encoded, atol=1e-4)
    # sign flips (p 0.5) remove the off-diagonal second moments: nothing to recover from
    signs = torch.randint(0, 2, encoded.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    flipped = recover_rotation(key.apply(encoded) * signs, encoded, per_position=False)
    assert (flipped[0] - truth[0]).abs().max() > 0.5

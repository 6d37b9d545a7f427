import shutil

import pytest
import torch
from PIL import Image

from rl_mask.mask.augment import affine_grid, augment
from rl_mask.owner.data import FaceDataError, load_faces, split_faces, verification_pairs


def test_att_faces_load(att_faces):
    assert att_faces.images.shape == (400, 1, 112, 96)
    assert att_faces.images.dtype == torch.uint8
    assert att_faces.num_classes == 40
    assert torch.equal(torch.bincount(att_faces.labels), torch.full((40,), 10))
    assert att_faces.identities[0] == "s01" and att_faces.paths[0].endswith("s01/1.pgm")
    assert att_faces.images.float().std() > 20  # real pictures, not blanks


def test_split_is_identity_disjoint_and_seeded(att_faces):
    s = split_faces(att_faces, num_private=20, train_per_identity=6, seed=0, val_per_identity=1)
    assert len(s.private_train) == 120 and len(s.private_val) == 20 and len(s.private_test) == 60 and len(s.public) == 200
    assert set(s.private_train.identities).isdisjoint(s.public.identities)
    assert s.private_train.identities == s.private_test.identities == s.private_val.identities
    # validation (the policy's utility signal) and test (the reported accuracy) never overlap
    paths = [set(x.paths) for x in (s.private_train, s.private_val, s.private_test)]
    assert paths[0].isdisjoint(paths[1]) and paths[0].isdisjoint(paths[2]) and paths[1].isdisjoint(paths[2])
    assert torch.equal(torch.bincount(s.private_test.labels), torch.full((20,), 3))
    assert torch.equal(torch.bincount(s.private_val.labels), torch.full((20,), 1))
    again = split_faces(att_faces, 20, 6, seed=0, val_per_identity=1)
    other = split_faces(att_faces, 20, 6, seed=1, val_per_identity=1)
    assert again.private_train.paths == s.private_train.paths
    assert other.private_train.identities != s.private_train.identities


def test_verification_pairs_balanced(att_faces):
    s = split_faces(att_faces, 20, 7, seed=0)
    pairs, same = verification_pairs(s.private_test.labels, seed=0)
    lab = s.private_test.labels
    assert same.sum() * 2 == len(same) == 120
    assert torch.equal(lab[pairs[:, 0]] == lab[pairs[:, 1]], same)
    assert (pairs[:, 0] != pairs[:, 1]).all()


def _copy_people(att_root, dst, people=("s01", "s02", "s03")):
    for p in people:
        shutil.copytree(att_root / p, dst / p)
    return dst


def test_rgb_png_and_jpeg_folders(att_root, tmp_path):
    for person in ("a", "b"):
        (tmp_path / person).mkdir()
        for i in range(3):
            grey = Image.open(att_root / f"s0{1 if person == 'a' else 2}" / f"{i + 1}.pgm")
            rgb = Image.merge("RGB", [grey, grey.point(lambda v: v // 2), grey])
            rgb.save(tmp_path / person / f"{i}.{'png' if i % 2 else 'jpg'}")
    faces = load_faces(tmp_path, 64, 48, "RGB")
    assert faces.images.shape == (6, 3, 64, 48)
    assert (faces.images[:, 1].float().mean() < faces.images[:, 0].float().mean())
    grey = load_faces(tmp_path, 64, 48, "L")
    assert grey.images.shape == (6, 1, 64, 48)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FaceDataError, match=str(tmp_path / "nope")):
        load_faces(tmp_path / "nope")
    with pytest.raises(FaceDataError, match="no identity sub-folders"):
        load_faces(tmp_path)
    (tmp_path / "person").mkdir()
    (tmp_path / "person" / "notes.txt").write_text("x")
    with pytest.raises(FaceDataError, match=r"person has 0 image"):
        load_faces(tmp_path)


def test_truncated_and_unreadable_images_name_the_file(att_root, tmp_path):
    root = _copy_people(att_root, tmp_path / "faces")
    bad = root / "s02" / "4.pgm"
    bad.write_bytes(bad.read_bytes()[:3000])  # header intact, pixels cut off
    with pytest.raises(FaceDataError, match=r"s02/4\.pgm"):
        load_faces(root)
    bad.write_bytes(b"this is not an image")
    with pytest.raises(FaceDataError, match=r"cannot read face image .*s02/4\.pgm"):
        load_faces(root)


def test_identity_with_too_few_images(att_root, tmp_path):
    root = _copy_people(att_root, tmp_path / "faces", ("s01", "s02", "s03", "s04"))
    for f in list((root / "s03").iterdir())[2:]:
        f.unlink()
    faces = load_faces(root)
    with pytest.raises(FaceDataError, match=r"s03 has 2 image\(s\); train_per_identity=7 \+ val_per_identity=0"):
        split_faces(faces, num_private=3, train_per_identity=7, seed=0)
    with pytest.raises(FaceDataError, match="at least 5 needed"):
        load_faces(root, min_images=5)
    with pytest.raises(FaceDataError, match="num_private=4"):
        split_faces(faces, num_private=4, train_per_identity=1)


def test_augment_keeps_faces_recognisably_close(att_float):
    x = att_float[:16]
    g = torch.Generator().manual_seed(0)
    y = augment(x, g)
    assert y.shape == x.shape
    assert not torch.equal(x, y)
    # a small geometric jitter: much closer to its own face than to another person's
    own = (y - x).pow(2).mean(dim=(1, 2, 3))
    other = (y - x.roll(1, 0)).pow(2).mean(dim=(1, 2, 3))
    assert (own < other).float().mean() >= 0.75


def test_affine_grid_matches_torch():
    g = torch.Generator().manual_seed(1)
    for h, w in [(112, 96), (64, 64), (17, 9)]:
        theta = torch.randn(5, 2, 3, generator=g)
        ref = torch.nn.functional.affine_grid(theta, [5, 1, h, w], align_corners=False)
        torch.testing.assert_close(affine_grid(theta, h, w), ref, rtol=0, atol=1e-5)


def test_a_one_identity_set_says_how_many_are_needed(att_root, tmp_path):
    root = _copy_people(att_root, tmp_path / "faces", ("s01",))
    faces = load_faces(root)
    with pytest.raises(FaceDataError, match=rf"face set in {tmp_path / 'faces'} has 1 identity folder\(s\); at least 3 are needed") as info:
        split_faces(faces, num_private=2, train_per_identity=1)
    assert "2..0" not in str(info.value)

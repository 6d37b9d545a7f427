"""The face cache (decode once, read on demand after) and env-runner shards, on real faces."""

import os
import shutil

import numpy as np
import pytest
import torch

import rl_mask.owner.data as data_module
from rl_mask.config import Config
from rl_mask.owner.data import load_faces
from rl_mask.owner.face_cache import PackedFaces
from rl_mask.owner.stream import prepare_data, prepare_shard


def test_second_load_reads_the_cache_and_a_changed_image_invalidates_it(att_root, tmp_path, monkeypatch):
    root = tmp_path / "faces"
    for person in ("s01", "s02", "s03"):
        shutil.copytree(att_root / person, root / person)
    cache = tmp_path / "cache"
    first = load_faces(root, cache_dir=cache)
    plain = load_faces(root)
    assert torch.equal(first.images, plain.images) and len(list(cache.glob("faces-*.npy"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(data_module, "load_image", no_decoding)
    again = load_faces(root, cache_dir=cache)
    assert torch.equal(again.images, plain.images) and again.paths == plain.paths
    # a replaced image (new size and time) is a new listing: decoded afresh, not served stale
    target = root / "s02" / "3.pgm"
    shutil.copy(root / "s03" / "1.pgm", target)
    os.utime(target, ns=(1, 1))
    with pytest.raises(AssertionError, match="the cache was not used"):
        load_faces(root, cache_dir=cache)
    monkeypatch.undo()
    changed = load_faces(root, cache_dir=cache)
    assert torch.equal(changed.images[12], plain.images[20]) and len(list(cache.glob("faces-*.npy"))) == 2


def test_env_runner_shards_split_the_training_faces(tmp_path):
    cfg = Config()
    cfg.data.cache_dir = str(tmp_path / "cache")
    cfg.validate()
    full = prepare_data(cfg)
    shards = [prepare_shard(cfg, r, 3) for r in range(3)]
    ids = torch.cat([s.train_ids for s in shards])
    assert sorted(ids.tolist()) == list(range(len(full.train_labels)))  # disjoint, and together all
    for s in shards:
        assert abs(len(s.train_labels) - len(full.train_labels) / 3) <= 1
        assert s.train_images.dtype == torch.uint8  # kept as bytes until a batch is drawn
        assert torch.equal(s.train_labels, full.train_labels[s.train_ids])
        assert torch.equal(data_module.to_float(s.train_images), full.train_images[s.train_ids])
        assert torch.equal(s.val_images, full.val_images) and len(s.test_labels) == 0  # every env scores validation itself; test only the driver


def test_packed_faces_read_exactly_the_rows_asked_for_and_a_cut_short_cache_is_rebuilt(att_root, tmp_path):
    cache = tmp_path / "cache"
    faces = load_faces(att_root, cache_dir=cache)
    assert isinstance(faces.store, PackedFaces)  # read on demand, never mapped whole
    (file,) = cache.glob("faces-*.npy")
    whole = torch.from_numpy(np.load(file))
    rows = torch.tensor([7, 3, 4, 5, 399, 3, 0, 200, 201])  # unsorted, repeated, runs
    assert torch.equal(faces.store[rows], whole[rows])
    assert torch.equal(faces.shard(1, 4).images, whole[torch.arange(1, 400, 4)])
    with pytest.raises(IndexError, match=f"face cache {file}: rows must be in 0..399"):
        faces.store[torch.tensor([400])]
    # a cache file cut short (a full disk, a killed copy) is decoded afresh, not served
    with open(file, "r+b") as f:
        f.truncate(file.stat().st_size - 1000)
    again = load_faces(att_root, cache_dir=cache)
    assert torch.equal(again.images, whole)

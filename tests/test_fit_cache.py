"""The fit cache (``rl_mask.fit_cache``): a hit is the fit, a changed input is a miss, and a
cache file is untrusted input."""

from __future__ import annotations

import pytest
import torch

from rl_mask import fit_cache
from rl_mask.attacks.eval_door import EvalMessageView
from rl_mask.attacks.reconstruction import train_decoder
from rl_mask.bench.benchmark import grid_defence
from rl_mask.checkpoint import CheckpointError, save_checkpoint
from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.judge import train_evaluation_model


@pytest.fixture()
def cache(tmp_path):
    fit_cache.use_cache_dir(tmp_path / "fits")
    yield tmp_path / "fits"
    fit_cache.use_cache_dir(None)


@pytest.fixture(scope="module")
def public(att_float):
    return att_float[:40, :, ::2, ::2].contiguous()  # 40 AT&T faces at half size: fits in seconds


def fit_decoder(defence, public):
    weights = train_decoder(defence, public, steps=3, batch_size=8, seed=5).state_dict()
    return weights, torch.get_rng_state()


def door_view(setting: str, eval_flip: float):
    """The probe door's view of a grid row (``+evalflip``: a generator of held-out flips the
    defence holds), as the benchmark builds it."""
    row = grid_defence(Config(), setting).with_owner_options(None, eval_flip=eval_flip, eval_seed=11)
    return EvalMessageView(row.public())


@pytest.mark.parametrize("view", ["mask", "door"])
def test_a_hit_gives_the_fitted_decoder_and_the_same_rng_state(cache, public, view):
    """Bit for bit what the fit without a cache gives, global RNG included; for the door's view
    too, whose encoding draws from a generator of its own (the key's sample must not move it)."""
    cfg = Config()  # one owner key for every build (each Config draws its own)
    make = (lambda: build_defence(cfg, "mask")) if view == "mask" else (lambda: door_view("k=3,flip=0.5,extra_removed=0,alpha=0.5,labels=soft", 0.5))
    fit_cache.use_cache_dir(None)
    fresh, rng_fresh = fit_decoder(make(), public)
    fit_cache.use_cache_dir(cache)
    stored, rng_stored = fit_decoder(make(), public)
    assert len(list(cache.glob("decoder-*.pt"))) == 1
    loaded, rng_loaded = fit_decoder(make(), public)
    for name, tensor in fresh.items():
        assert torch.equal(tensor, stored[name]) and torch.equal(tensor, loaded[name]), name
    assert torch.equal(rng_fresh, rng_stored) and torch.equal(rng_fresh, rng_loaded)


def test_door_views_share_a_decoder_across_mixing_settings_not_across_flips_or_removals(cache, public):
    """The held-out encoding reads the mask, key, eval flips and the extra channels the
    setting removes (the door removes them as its training rows do), not k, alpha or labels."""
    fit_decoder(door_view("k=2,flip=0.5,extra_removed=4,alpha=0.5,labels=soft", 0.5), public)
    fit_decoder(door_view("k=6,flip=0.5,extra_removed=4,alpha=4.0,labels=hard", 0.5), public)
    assert len(list(cache.glob("decoder-*.pt"))) == 1
    fit_decoder(door_view("k=6,flip=0.0,extra_removed=4,alpha=4.0,labels=hard", 0.0), public)
    assert len(list(cache.glob("decoder-*.pt"))) == 2
    fit_decoder(door_view("k=6,flip=0.0,extra_removed=0,alpha=4.0,labels=hard", 0.0), public)
    assert len(list(cache.glob("decoder-*.pt"))) == 3


def test_a_changed_encoding_or_input_misses(cache, public):
    cfg = Config()
    fit_decoder(build_defence(cfg, "mask"), public)
    fit_decoder(build_defence(cfg, "mask"), public.flip(-1))  # other public faces
    other_key = Config()  # another owner key: same description, other encoding
    fit_decoder(build_defence(other_key, "mask"), public)
    cfg.mask.sign_flip = True  # same channels and key, flipped signs
    fit_decoder(build_defence(cfg, "mask"), public)
    assert len(list(cache.glob("decoder-*.pt"))) == 4
    fit_decoder(build_defence(other_key, "mask"), public)
    assert len(list(cache.glob("decoder-*.pt"))) == 4


def test_the_judge_is_kept_too(cache, att_float):
    labels = torch.arange(20).repeat_interleave(2)
    images = att_float[:40, :, ::2, ::2].contiguous()
    first = train_evaluation_model(images, labels, 20, steps=2, seed=3).state_dict()
    again = train_evaluation_model(images, labels, 20, steps=2, seed=3).state_dict()
    assert len(list(cache.glob("judge-*.pt"))) == 1
    assert all(torch.equal(first[n], again[n]) for n in first)
    train_evaluation_model(images, labels, 20, steps=2, seed=4)
    assert len(list(cache.glob("judge-*.pt"))) == 2


def test_a_tampered_cache_file_is_refused_by_name(cache, public):
    mask = build_defence(Config(), "mask")
    fit_decoder(mask, public)
    (path,) = cache.glob("decoder-*.pt")
    save_checkpoint({"weights": {"inp.weight": torch.zeros(1)}, "rng_after": torch.get_rng_state()}, path)
    with pytest.raises(CheckpointError, match=path.name):
        fit_decoder(mask, public)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=path.name):
        fit_decoder(mask, public)

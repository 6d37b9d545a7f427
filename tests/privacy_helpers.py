"""Shared, cached pieces for the privacy tests (real AT&T faces, real training, tiny budgets).

Cached per test session so that test_attacks, test_metrics and test_benchmark train the
evaluation model and the unprotected FR model once.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.judge import PrivacyJudge, train_evaluation_model
from rl_mask.owner.stream import prepare_data
from rl_mask.server.trainer import load_fr_model
from rl_mask.train_fr import train_fr

JUDGE_STEPS = 120
FR_STEPS = 150


def bare_config() -> Config:
    """The public algorithm without the owner's options (no key, no flips on the k = 1
    messages): the mechanics of masking and of the attacks are tested on it; the key and
    the k = 1 messages' flips have tests of their own (test_owner_key, test_run_safety)."""
    cfg = Config()
    cfg.mask.key, cfg.mask.eval_flip = "none", 0.0
    cfg.mask.key_seed = 0  # a fixed secret: the same batches on every run (the stream of seed s is then s * 1_000_003)
    return cfg


def tiny_config(**fr) -> Config:
    cfg = bare_config()
    cfg.fr.eval_every = 50
    for k, v in fr.items():
        setattr(cfg.fr, k, v)
    return cfg.validate()


@functools.lru_cache(maxsize=None)
def data():
    return prepare_data(Config())


@functools.lru_cache(maxsize=None)
def public() -> torch.Tensor:
    return data().split.public.float_images()


@functools.lru_cache(maxsize=None)
def judge() -> PrivacyJudge:
    d = data()
    model = train_evaluation_model(d.train_images, d.train_labels, d.num_classes, JUDGE_STEPS, seed=1234)
    return PrivacyJudge.for_private_data(model, d)


@functools.lru_cache(maxsize=None)
def unprotected_model():
    """The FR network trained on clean pixels (``none``), short budget."""
    out = Path(tempfile.mkdtemp(prefix="rl-mask-test-none-"))
    cfg = tiny_config(steps=FR_STEPS)
    summary = train_fr(cfg, out, progress=False, data=data(), defence=build_defence(cfg, "none"))
    model, _ = load_fr_model(out / "fr.pt")
    return model, summary

"""Shared fixtures: the real AT&T faces from ../shared (never copied into the repo)."""

from __future__ import annotations

import itertools
import os
import zlib
from pathlib import Path

import pytest

import rl_mask.config
from rl_mask.config import default_data_root

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def att_root() -> Path:
    root = Path(default_data_root())
    if not (root / "s01" / "1.pgm").is_file():
        raise RuntimeError(f"the AT&T faces are expected at {root} (../shared/data/att_faces or $RL_MASK_DATA)")
    return root


@pytest.fixture(scope="session")
def att_faces(att_root):
    from rl_mask.owner.data import load_faces

    return load_faces(att_root)


@pytest.fixture(scope="session")
def att_float(att_faces):
    return att_faces.float_images()


@pytest.fixture()
def cli_env() -> dict:
    env = dict(os.environ)
    env.setdefault("RL_MASK_DATA", default_data_root())
    return env


def _fixed_secrets(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    counter = itertools.count(zlib.crc32(name.encode()))
    monkeypatch.setattr(rl_mask.config.secrets, "randbelow", lambda n: next(counter) * 2_654_435_761 % n)


@pytest.fixture(scope="module", autouse=True)
def reproducible_module_secrets(request):
    """The same for the configs a module-scoped fixture makes: those are made before any test's
    own fixture applies (a sequence fixed by the module's name)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fixed_secrets(monkeypatch, request.node.nodeid)
        yield


@pytest.fixture(autouse=True)
def reproducible_owner_secrets(monkeypatch, request):
    """A config a test makes draws its owner secret (``mask.key_seed``) from a sequence fixed by
    the test's name instead of the OS, so that its batches, flips and keys are the same on every
    run (configs still differ from one another; a run's CLI process draws from the OS)."""
    _fixed_secrets(monkeypatch, request.node.nodeid)

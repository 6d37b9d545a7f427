"""The FR service (what the Ray actor hosts): state round trip and crash recovery."""

import pytest
import torch

from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.stream import prepare_data
from rl_mask.server.service import FRService


@pytest.fixture(scope="module")
def setup():
    cfg = Config()
    cfg.fr.batch_size = 16
    cfg.rl.eval_every = 2
    cfg.validate()
    data = prepare_data(cfg)
    defence = build_defence(cfg, "fixed-k")
    g = torch.Generator().manual_seed(0)
    batches = [defence.encode_train(data.train_images[i * 16 : i * 16 + 16], data.train_labels[i * 16 : i * 16 + 16], g) for i in range(4)]
    return cfg, data, batches


def test_state_round_trip_gives_identical_training(setup, tmp_path):
    cfg, data, batches = setup
    a = FRService(cfg, 50, "cpu", data=data)
    for b in batches[:2]:
        a.train_step(b)
    a.save(tmp_path / "fr.pt")
    b_ = FRService(cfg, 50, "cpu", data=data)
    b_.load(tmp_path / "fr.pt")
    for (na, ta), (nb, tb) in zip(a.trainer.model.state_dict().items(), b_.trainer.model.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)
    assert b_.fr_step == 2 and b_.clean_acc == a.clean_acc
    torch.manual_seed(0)
    ra = a.train_step(batches[2])
    torch.manual_seed(0)
    rb = b_.train_step(batches[2])
    assert ra == rb  # same weights, optimizer moments and step: the same next update


def test_autosave_is_reloaded_after_a_crash(setup, tmp_path):
    cfg, data, batches = setup
    path = tmp_path / "autosave.pt"
    a = FRService(cfg, 50, "cpu", data=data, autosave_path=path, autosave_every=2)
    for b in batches[:3]:
        a.train_step(b)
    assert path.is_file()
    saved = torch.load(path, weights_only=True)["trainer"]["model"]
    restarted = FRService(cfg, 50, "cpu", data=data, autosave_path=path, autosave_every=2)
    assert restarted.restored_from == str(path) and restarted.fr_step == 2
    for name, tensor in restarted.trainer.model.state_dict().items():
        assert torch.equal(tensor, saved[name])
    log = a.drain_log()
    assert [r["fr_step"] for r in log] == [1, 2, 3] and all(r["k"] == 4 for r in log)
    assert a.drain_log() == []


def test_first_batches_are_recorded_exactly_as_received(setup, tmp_path):
    cfg, data, batches = setup
    path = tmp_path / "masked_batches.pt"
    a = FRService(cfg, 50, "cpu", data=data, record_path=path, record_batches=2)
    for b in batches[:3]:
        a.train_step(b)
    saved = torch.load(path, weights_only=True)["batches"]
    assert [s["fr_step"] for s in saved] == [1, 2]
    for s, b in zip(saved, batches[:2]):
        for field in ("inputs", "labels", "weights", "sources"):
            assert torch.equal(s[field], getattr(b, field))
    # A restarted (or resumed) service keeps the first process's record.
    restarted = FRService(cfg, 50, "cpu", data=data, record_path=path, record_batches=2)
    restarted.train_step(batches[3])
    assert [s["fr_step"] for s in torch.load(path, weights_only=True)["batches"]] == [1, 2]

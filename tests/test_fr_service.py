"""The FR server (what the Ray actor hosts): the door, state round trip, crash recovery, and
training in a process that cannot read the faces."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from face_guard import FACE_GUARD
from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import final_test_set, training_setup, validation_set
from rl_mask.owner.stream import TrainingStream, prepare_data
from rl_mask.protocol import MESSAGE_FIELDS
from rl_mask.server.service import FRService


@pytest.fixture(scope="module")
def setup():
    cfg = Config()
    cfg.fr.batch_size = 16
    cfg.rl.eval_every = 2
    cfg.validate()
    data = prepare_data(cfg)
    defence = build_defence(cfg, "fixed-k")
    stream = TrainingStream(cfg, defence, data)
    batches = [stream.next() for _ in range(4)]
    return cfg, data, defence, [b.masked.protected() for b in batches], batches


def test_the_server_takes_only_door_messages(setup):
    cfg, data, defence, sent, owner_records = setup
    server = FRService(training_setup(cfg, defence, data, 50), "cpu")
    with pytest.raises(TypeError, match="ProtectedBatch"):
        server.train_step(owner_records[0].masked)  # the owner's record carries provenance: refused
    server.set_validation(validation_set(defence, data))
    out = server.train_step(sent[0])
    assert out["fr_step"] == 1 and set(out) == {"loss", "val_acc", "fr_step", "loss_ema"}
    # Nothing in what crosses names a face, its path or where it sits in the data set.
    crossed = {f for fields in MESSAGE_FIELDS.values() for f in fields}
    assert not {f for f in crossed if any(w in f for w in ("source", "index", "indices", "path", "original", "root"))}
    assert set(MESSAGE_FIELDS["ProtectedBatch"]) == {"inputs", "labels", "weights"}
    assert "data" not in training_setup(cfg, defence, data).to_dict()


def test_state_round_trip_gives_identical_training(setup, tmp_path):
    cfg, data, defence, batches, _ = setup
    msg = training_setup(cfg, defence, data, 50)
    a = FRService(msg, "cpu")
    a.set_validation(validation_set(defence, data))
    for b in batches[:2]:
        a.train_step(b)
    a.save(tmp_path / "fr.pt")
    b_ = FRService(msg, "cpu")
    b_.load(tmp_path / "fr.pt")
    for (na, ta), (nb, tb) in zip(a.trainer.model.state_dict().items(), b_.trainer.model.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)
    assert b_.fr_step == 2 and b_.val_acc == a.val_acc and torch.equal(b_.validation.inputs, a.validation.inputs)
    torch.manual_seed(0)
    ra = a.train_step(batches[2])
    torch.manual_seed(0)
    rb = b_.train_step(batches[2])
    assert ra == rb  # same weights, optimizer moments and step: the same next update


def test_autosave_is_reloaded_after_a_crash(setup, tmp_path):
    cfg, data, defence, batches, _ = setup
    path = tmp_path / "autosave.pt"
    msg = training_setup(cfg, defence, data, 50)
    a = FRService(msg, "cpu", autosave_path=path, autosave_every=2)
    for b in batches[:3]:
        a.train_step(b)
    assert path.is_file()
    saved = torch.load(path, weights_only=True)["trainer"]["model"]
    restarted = FRService(msg, "cpu", autosave_path=path, autosave_every=2)
    assert restarted.restored_from == str(path) and restarted.fr_step == 2
    for name, tensor in restarted.trainer.model.state_dict().items():
        assert torch.equal(tensor, saved[name])
    log = a.drain_log()
    assert [r["fr_step"] for r in log] == [1, 2, 3] and all(r["k"] == 4 for r in log)
    assert a.drain_log() == []


SERVER_PROCESS = FACE_GUARD + textwrap.dedent(
    """
    # The FR server in a process where the face folder cannot be read (FACE_GUARD).
    import json
    import torch
    from rl_mask.protocol import ProtectedBatch, ProtectedEvalSet, TrainingSetup
    from rl_mask.server.service import FRService
    inbox = torch.load(sys.argv[2], weights_only=True)
    server = FRService(TrainingSetup.from_dict(inbox["setup"]), "cpu")
    before = server.set_validation(ProtectedEvalSet("validation", **inbox["validation"]))["val_acc"]
    losses = [server.train_step(ProtectedBatch(**b))["loss"] for b in inbox["batches"]]
    after = server.evaluate(ProtectedEvalSet("test", **inbox["test"]))
    print(json.dumps({"before": before, "val_acc": server.val_acc, "losses": losses, "test_acc": after["identification_acc"]}))
    """
)


def test_server_trains_where_the_faces_cannot_be_read(setup, att_root, tmp_path):
    """Only owner messages reach the server process (as files here; over Ray in a run)."""
    cfg, data, _, _, _ = setup
    defence = build_defence(cfg, "mask")
    stream = TrainingStream(cfg, defence, data)
    batches = [{k: v for k, v in stream.next().masked.protected().as_arrays().items()} for _ in range(60)]
    val, test = validation_set(defence, data), final_test_set(defence, data)
    inbox = {
        "setup": training_setup(cfg, defence, data, 60, eval_every=20).to_dict(),
        "validation": {"inputs": val.inputs, "labels": val.labels},
        "test": {"inputs": test.inputs, "labels": test.labels},
        "batches": batches,
    }
    torch.save(inbox, tmp_path / "inbox.pt")
    script = tmp_path / "server.py"
    script.write_text(SERVER_PROCESS)
    proc = subprocess.run([sys.executable, str(script), str(att_root), str(tmp_path / "inbox.pt")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    chance = 1 / data.num_classes
    assert sum(out["losses"][-10:]) < sum(out["losses"][:10])
    assert out["val_acc"] > 3 * chance and out["test_acc"] > 3 * chance, out

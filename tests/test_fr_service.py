"""The FR server (what the Ray actor hosts): the door, state round trip, crash recovery, and
training in a process that cannot read the faces."""

import copy
import json
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from face_guard import FACE_GUARD
from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import TrainingStream, prepare_data
from rl_mask.protocol import MESSAGE_FIELDS, ProtectedBatch, concat_protected
from rl_mask.server.service import FRService
from rl_mask.server.trainer import load_fr_model
from rl_mask.use.held_out import final_test_set, score_model, validation_set


@pytest.fixture(scope="module")
def setup():
    cfg = Config()
    cfg.fr.batch_size = 16
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
    out = server.train_step(sent[0])
    assert out["fr_step"] == 1 and set(out) == set(MESSAGE_FIELDS["StepReport"])
    # Private labels cross only with training rows: held-out faces cross only as probes, which carry none.
    assert [name for name, fields in MESSAGE_FIELDS.items() if "labels" in fields] == ["ProtectedBatch"]
    # Nothing in what crosses names a face, its path or where it sits in the data set.
    crossed = {f for fields in MESSAGE_FIELDS.values() for f in fields}
    assert not {f for f in crossed if any(w in f for w in ("source", "index", "indices", "path", "original", "root"))}
    assert set(MESSAGE_FIELDS["ProtectedBatch"]) == {"inputs", "labels", "weights"}
    assert "data" not in training_setup(cfg, defence, data).to_dict()


def test_a_batch_travels_as_its_three_arrays_and_arrives_whole_and_writable(setup):
    """Ray pickles what crosses; a ``ProtectedBatch`` pickles as its three numpy arrays
    (out-of-band buffers: no pickling of the inputs themselves), nothing else, and arrives
    equal, writable (a zero-copy read from Ray's object store is read-only) and trainable."""
    import pickle

    import numpy as np

    cfg, data, defence, sent, _ = setup
    batch = sent[0]
    buffers = []
    payload = pickle.dumps(batch, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 3 and sum(b.raw().nbytes for b in buffers) == sum(t.numel() * t.element_size() for t in batch.as_arrays().values())
    assert len(payload) < 1000  # the inputs travel as buffers, not inside the pickle
    readonly = [np.frombuffer(b.raw(), dtype=np.uint8) for b in buffers]
    for r in readonly:
        r.flags.writeable = False
    back = pickle.loads(payload, buffers=[r.data for r in readonly])
    assert isinstance(back, ProtectedBatch)
    for name, t in batch.as_arrays().items():
        got = getattr(back, name)
        assert torch.equal(got, t) and got.dtype == t.dtype
        got.add_(0)  # writable
    server = FRService(training_setup(cfg, defence, data, 50), "cpu")
    assert server.train_step(back)["fr_step"] == 1
    grad = ProtectedBatch(batch.inputs.clone().requires_grad_(), batch.labels, batch.weights)
    assert pickle.loads(pickle.dumps(grad)).inputs.requires_grad  # autograd tensors keep torch's own pickling


def test_state_round_trip_gives_identical_training(setup, tmp_path):
    cfg, data, defence, batches, _ = setup
    msg = training_setup(cfg, defence, data, 50)
    a = FRService(msg, "cpu")
    for b in batches[:2]:
        a.train_step(b)
    a.save(tmp_path / "fr.pt")
    b_ = FRService(msg, "cpu")
    b_.load(tmp_path / "fr.pt")
    for (na, ta), (nb, tb) in zip(a.trainer.model.state_dict().items(), b_.trainer.model.state_dict().items()):
        assert na == nb and torch.equal(ta, tb)
    assert b_.fr_step == 2 and b_.trained_model().fr_step == 2 and b_.loss_ema == a.loss_ema
    torch.manual_seed(0)
    ra = a.train_step(batches[2])
    torch.manual_seed(0)
    rb = b_.train_step(batches[2])
    # same weights, optimizer moments and step: the same next update (to float precision: two
    # models' BLAS calls may round differently with their buffers' memory alignment)
    assert ra == pytest.approx(rb, rel=1e-6, abs=1e-9)


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
    from rl_mask.checkpoint import save_checkpoint
    from rl_mask.protocol import ProtectedBatch, TrainingSetup
    from rl_mask.server.service import FRService
    inbox = torch.load(sys.argv[2], weights_only=True)
    server = FRService(TrainingSetup.from_dict(inbox["setup"]), "cpu")
    losses = [server.train_step(ProtectedBatch(**b))["loss"] for b in inbox["batches"]]
    save_checkpoint(server.trained_model().file_content(), sys.argv[3])  # handed back to the owner
    print(json.dumps({"losses": losses}))
    """
)


def test_server_trains_where_the_faces_cannot_be_read(setup, att_root, tmp_path):
    """Only owner messages reach the server process (as files here; over Ray in a run); the
    owner scores the network it hands back on held-out faces that never reached it."""
    cfg, data, _, _, _ = setup
    defence = build_defence(cfg, "mask")
    stream = TrainingStream(cfg, defence, data)
    batches = [{k: v for k, v in stream.next().masked.protected().as_arrays().items()} for _ in range(60)]
    inbox = {"setup": training_setup(cfg, defence, data, 60).to_dict(), "batches": batches}
    torch.save(inbox, tmp_path / "inbox.pt")
    script = tmp_path / "server.py"
    script.write_text(SERVER_PROCESS)
    proc = subprocess.run([sys.executable, str(script), str(att_root), str(tmp_path / "inbox.pt"), str(tmp_path / "fr.pt")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    model, _ = load_fr_model(tmp_path / "fr.pt")
    val_acc = score_model(model, validation_set(defence, data))["identification_acc"]
    test_acc = score_model(model, final_test_set(defence, data))["identification_acc"]
    chance = 1 / data.num_classes
    assert sum(out["losses"][-10:]) < sum(out["losses"][:10])
    assert val_acc > 3 * chance and test_acc > 3 * chance, (val_acc, test_acc)


def _other_k_batches(cfg, data, k: int, n: int) -> list:
    """``n`` protected batches mixing ``k`` faces (the fixture's batches mix 4)."""
    other = copy.deepcopy(cfg)
    other.strategy.k = k
    stream = TrainingStream(other, build_defence(other, "fixed-k"), data, seed=1)
    return [stream.next().masked.protected() for _ in range(n)]


def test_an_aggregated_step_over_messages_of_different_k_trains_and_answers_each_from_its_own_rows(setup):
    cfg, data, defence, batches, _ = setup
    msg = training_setup(cfg, defence, data, 50)
    k4, k2 = batches[0], _other_k_batches(cfg, data, 2, 1)[0]
    union = concat_protected([k4, k2])
    assert union.k == 4 and (union.labels[len(k4) :, 2:] == -1).all()

    # The same rows computed separately on the same weights (a twin server, same seed, same
    # input standardisation, the step's normalisation statistics): per row, then per message.
    twin = FRService(msg, "cpu")
    twin.trainer.set_input_stats(union.inputs)
    twin.trainer.model.train()
    with torch.no_grad():
        rows = twin.trainer.row_losses(union, train=True)
    expected = [float(rows[: len(k4)].mean()), float(rows[len(k4) :].mean())]

    server = FRService(msg, "cpu")
    out = server.train_messages([k4, k2])
    assert server.fr_step == 1 and server.images_trained == len(union)  # one step on the union
    assert [o["loss"] for o in out] == pytest.approx(expected, rel=1e-5)
    assert out[0]["loss"] != pytest.approx(out[1]["loss"], rel=1e-3)  # not one shared figure
    # Message 1's labels decide nothing of message 0's answer (they share only the inputs' statistics).
    relabelled = ProtectedBatch(k2.inputs, (k2.labels + 1) % data.num_classes, k2.weights)
    other = FRService(msg, "cpu").train_messages([k4, relabelled])
    assert other[0]["loss"] == out[0]["loss"] and other[1]["loss"] != out[1]["loss"]

    # ... and it trains: the loss of the same two messages falls over aggregated steps.
    losses = [sum(o["loss"] for o in server.train_messages([k4, k2])) for _ in range(6)]
    assert losses[-1] < 0.9 * out[0]["loss"] + 0.9 * out[1]["loss"], losses
    assert [r["step_rows"] for r in server.drain_log()][:2] == [len(union)] * 2


def test_the_step_queue_trains_concurrent_callers_in_one_step_or_after_the_wait(setup):
    cfg, data, defence, batches, _ = setup
    aggregated = copy.deepcopy(cfg)
    aggregated.fr.rows_per_step = 3 * cfg.fr.batch_size
    msg = training_setup(aggregated.validate(), defence, data, 50)
    server = FRService(msg, "cpu", step_wait_s=30.0)  # only a full step starts before 30 s
    messages = batches[:2] + _other_k_batches(cfg, data, 2, 1)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(server.train_step, messages))
    assert server.fr_step == 1 and server.queue.steps == 1 and server.queue.messages == 3
    assert all(a["fr_step"] == 1 for a in answers) and len({a["loss"] for a in answers}) == 3
    # One caller alone: its step starts when its wait is over.
    lonely = FRService(msg, "cpu", step_wait_s=0.05)
    started = time.perf_counter()
    assert lonely.train_step(batches[3])["fr_step"] == 1
    assert 0.05 <= time.perf_counter() - started < 10


def test_every_queued_step_runs_on_the_queues_own_thread_which_ends_when_idle(setup):
    """With callers on many threads (the Ray actor), steps never hop between them (each would
    bring its own OpenMP team): one stepper thread runs them all, and ends once no message has
    come for ``idle_exit_s``."""
    cfg, data, defence, batches, _ = setup
    aggregated = copy.deepcopy(cfg)
    aggregated.fr.rows_per_step = 2 * cfg.fr.batch_size
    server = FRService(training_setup(aggregated.validate(), defence, data, 50), "cpu", step_wait_s=30.0, step_thread=True)
    server.queue.idle_exit_s = 0.3
    stepped_on, train_messages = [], server.queue._train_messages
    server.queue._train_messages = lambda messages: (stepped_on.append(threading.current_thread()), train_messages(messages))[1]

    def call(batch):
        return threading.current_thread(), server.train_step(batch)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(call, batches))
    callers = {thread for thread, _ in answers}
    assert server.queue.steps == 2 and server.fr_step == 2 and sorted(a["fr_step"] for _, a in answers) == [1, 1, 2, 2]
    assert len(set(stepped_on)) == 1 and stepped_on[0].name == "fr-step" and stepped_on[0] not in callers
    deadline = time.monotonic() + 10
    while stepped_on[0].is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stepped_on[0].is_alive()  # idle: ended (the service no longer kept alive by it)
    server.queue.wait_s = 0.0
    assert server.train_step(batches[0])["fr_step"] == 3  # the next message starts a new stepper
    assert stepped_on[-1] is not stepped_on[0] and stepped_on[-1].name == "fr-step"
    # One caller in-process (debug mode, train-fr): its step runs on its own thread.
    alone = FRService(training_setup(aggregated, defence, data, 50), "cpu")
    alone.queue._train_messages = lambda messages: (stepped_on.append(threading.current_thread()), train_messages(messages))[1]
    alone.train_step(batches[1])
    assert stepped_on[-1] is threading.current_thread() and alone.queue._stepper is None


def test_dpsgd_takes_one_poisson_batch_per_step(setup):
    """DP-SGD's accountant counts one Poisson batch per step: the service never aggregates one."""
    cfg, data, _, _, _ = setup
    cfg = copy.deepcopy(cfg)
    cfg.fr.rows_per_step = 4 * cfg.fr.batch_size
    defence = build_defence(cfg, "dpsgd")
    server = FRService(training_setup(cfg, defence, data, 10), "cpu")
    assert server.messages_per_step(cfg.fr.batch_size) == 1
    stream = TrainingStream(cfg, defence, data)
    sent = [stream.next().masked.protected() for _ in range(2)]
    with pytest.raises(ValueError, match="one Poisson batch per step"):
        server.train_messages(sent)
    assert server.fr_step == 0
    server.train_messages(sent[:1])
    assert server.fr_step == 1 and server.privacy()["steps"] == 1


def test_the_readme_lists_every_field_that_crosses():
    """The README's threat-model table names exactly the messages and fields of ``rl_mask.protocol``."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("| message | direction | field | what it is |") :].split("\n\n", 1)[0].splitlines()[2:]
    listed: dict[str, set[str]] = {}
    message = None
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if cells[0]:
            message = cells[0].strip("`")
        listed.setdefault(message, set()).update(f for f in re.findall(r"`([^`]+)`", cells[2]) if re.fullmatch(r"[a-z_]+", f))
    assert listed == {name: set(fields) for name, fields in MESSAGE_FIELDS.items()}

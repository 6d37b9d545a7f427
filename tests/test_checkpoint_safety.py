"""The msgpack scan that stands between a checkpoint and RLlib's pickle-capable reader."""

import os

import msgpack
import msgpack_numpy
import numpy as np
import pytest

from trainers.checkpoint_safety import CorruptCheckpointError, UnsafeCheckpointError, check_algo_checkpoint, scan_msgpack_file
from trainers.resume_point import resume_point


class Payload:
    """Unpickling this runs a shell command: what a tampered checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def state(**extra) -> dict:
    return {"weights": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(0.5)}, "counters": [1, 2, {"c": True}], **extra}


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgpack_numpy.packb(obj))
    return path


def test_plain_numpy_state_passes_and_decodes(tmp_path):
    path = write(tmp_path / "algo" / "algorithm_state.msgpack", state())
    check_algo_checkpoint(tmp_path / "algo")
    back = msgpack_numpy.unpackb(path.read_bytes())
    assert np.array_equal(back["weights"]["w"], np.arange(6).reshape(2, 3))


def test_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "executed"
    evil = state(extra={"deep": [np.array([Payload(marker)], dtype=object)]})
    path = write(tmp_path / "algo" / "learner_group" / "state.msgpack", evil)
    # the payload is real: the reader RLlib uses runs it
    msgpack_numpy.unpackb(path.read_bytes())
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError, match=r"learner_group/state\.msgpack holds .*kind 'O'"):
        check_algo_checkpoint(tmp_path / "algo")
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, match",
    [
        (msgpack.ExtType(5, b"x"), "extension type 5"),
        (np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "kind 'V'"),
        ({b"nd": True, b"type": "|O", b"kind": b"", b"shape": [1], b"data": b"x"}, "dtype '\\|O'"),
        ({b"nd": False, b"type": [["a", "|O"]], b"data": b"x"}, "not a plain numeric dtype"),
        ({"nd": True, "type": "<f4", "kind": "O", "shape": [1], "data": b"x"}, "kind 'O'"),
    ],
)
def test_other_non_plain_encodings_are_refused(tmp_path, obj, match):
    path = tmp_path / "state.msgpack"
    path.write_bytes(msgpack_numpy.packb({"x": [obj]}))
    with pytest.raises(UnsafeCheckpointError, match=match):
        scan_msgpack_file(path)


def test_pickle_state_files_and_truncation(tmp_path):
    algo = tmp_path / "algo"
    good = write(algo / "algorithm_state.msgpack", state())
    (algo / "class_and_ctor_args.pkl").write_bytes(b"\x80\x04N.")  # RLlib's, never read on restore
    check_algo_checkpoint(algo)
    (algo / "env_runner").mkdir()
    (algo / "env_runner" / "state.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(UnsafeCheckpointError, match="holds pickled state"):
        check_algo_checkpoint(algo)
    (algo / "env_runner" / "state.pkl").unlink()
    good.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(CorruptCheckpointError, match="algorithm_state.msgpack is not valid msgpack"):
        check_algo_checkpoint(algo)


@pytest.mark.parametrize("name", ["../../elsewhere", "/tmp/x", "iter_1"])
def test_latest_pointer_outside_the_run_is_refused(tmp_path, name):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text(name)
    with pytest.raises(UnsafeCheckpointError, match="not a checkpoint folder iter_NNNNNN"):
        resume_point(tmp_path)


def test_checkpoint_folder_linked_elsewhere_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "iter_000001").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("iter_000001")
    with pytest.raises(UnsafeCheckpointError, match="outside"):
        resume_point(tmp_path / "run")

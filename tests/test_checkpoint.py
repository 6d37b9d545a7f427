
import pytest
import torch

from rl_mask.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class NotAWeight:
    pass


def test_round_trip_and_atomic(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    state = {"w": torch.arange(5.0), "step": 3, "meta": {"kind": "freq", "shape": [1, 2]}}
    save_checkpoint(state, path)
    save_checkpoint({**state, "step": 4}, path)  # overwrite in place
    loaded = load_checkpoint(path, required=("w", "step"))
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 4
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temp files left behind


def test_bad_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    good = tmp_path / "good.pt"
    save_checkpoint({"w": torch.ones(1000)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cut.pt does not load"):
        load_checkpoint(cut)
    evil = tmp_path / "evil.pt"
    torch.save({"obj": NotAWeight()}, evil)  # arbitrary pickled objects are refused
    with pytest.raises(CheckpointError, match="evil.pt does not load as weights-only"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="good.pt lacks step"):
        load_checkpoint(good, required=("step",))
    raw = tmp_path / "list.pt"
    torch.save([1, 2], raw)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(raw)

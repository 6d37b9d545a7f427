
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


def small_fr_file(path, **meta_changes):
    from rl_mask.server.trainer import build_model

    meta = {"input_shape": [58, 14, 12], "input_kind": "freq", "num_classes": 20, "model": {"widths": [8, 16], "depths": [1, 1], "embedding_dim": 16, "dropout": 0.0, "sample_norm": True, "arc_scale": 16.0, "arc_margin": 0.2}}
    save_checkpoint({"state_dict": build_model(meta).state_dict(), "meta": {**meta, **meta_changes}}, path)
    return path


def test_model_file_sizes_are_checked_before_a_network_is_built(tmp_path):
    """A tampered size in ``fr.pt``'s meta would allocate without bound: out-of-range sizes are
    refused by the config's ranges, in-range ones that the weights do not fill by a meta-device build."""
    from rl_mask.server.trainer import load_fr_model

    model, meta = load_fr_model(small_fr_file(tmp_path / "ok.pt"))
    assert model(torch.zeros(2, 58, 14, 12)).shape == (2, 20)  # class scores
    huge = {"widths": [8, 10**9], "depths": [1, 1], "embedding_dim": 16, "dropout": 0.0, "sample_norm": True, "arc_scale": 16.0, "arc_margin": 0.2}
    with pytest.raises(CheckpointError, match=r"huge.pt: its meta does not describe .*model.widths=\[8, 1000000000\] is out of range"):
        load_fr_model(small_fr_file(tmp_path / "huge.pt", model=huge))
    with pytest.raises(CheckpointError, match=r"wide.pt: the sizes it records describe a network its weights do not fit"):
        load_fr_model(small_fr_file(tmp_path / "wide.pt", num_classes=4000))  # in range, 20 classes of weights
    with pytest.raises(CheckpointError, match=r"deep.pt: its meta does not describe .*model.depths"):
        load_fr_model(small_fr_file(tmp_path / "deep.pt", model={**huge, "widths": [8, 16], "depths": [1, 10**6]}))


def test_judge_file_sizes_are_checked_before_it_is_built(tmp_path):
    from envs.hybrid_masking import load_judge
    from rl_mask.owner.judge.evaluator import EvaluationModel

    good = {"state_dict": EvaluationModel(1, 20, pool=2).state_dict(), "planes": 1, "num_classes": 20, "pool": 2}
    save_checkpoint(good, tmp_path / "judge.pt")
    assert load_judge(str(tmp_path / "judge.pt")).classifier.out_features == 20
    save_checkpoint({**good, "num_classes": 10**9}, tmp_path / "big.pt")
    with pytest.raises(CheckpointError, match="big.pt: the sizes it records describe a network its weights do not fit"):
        load_judge(str(tmp_path / "big.pt"))
    save_checkpoint({**good, "planes": 7}, tmp_path / "planes.pt")
    with pytest.raises(CheckpointError, match=r"planes.pt: planes, num_classes, pool = \(7, 20, 2\) are not the sizes of a judge"):
        load_judge(str(tmp_path / "planes.pt"))


@pytest.mark.parametrize("field, value", [("model.widths", [32, 10**7, 128]), ("rl.hidden", [64, 10**8]), ("rl.hidden", [8] * 100), ("rl.attacker_widths", [32, 64, 10**6])])
def test_config_network_sizes_are_bounded(field, value):
    import json

    from rl_mask.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=rf"{field}=.* is out of range"):
        load_config(None, [f"{field}={json.dumps(value)}"])

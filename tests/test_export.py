"""export-masked: what crossed the door, as it crossed, with owner-only fields prefixed."""

import json
import subprocess
import sys

import numpy as np

import privacy_helpers as H
from rl_mask.owner.defences import build_defence
from rl_mask.owner.stream import TrainingStream, concat_batches
from rl_mask.train_fr import train_fr


def test_export_masked_writes_exactly_what_left_the_data_owner(tmp_path, cli_env):
    run = tmp_path / "run"
    cfg = H.tiny_config(steps=2, eval_every=2)
    cfg.strategy.name = "random-k"
    train_fr(cfg, run, progress=False, data=H.data())
    out = tmp_path / "masked.npz"
    proc = subprocess.run([sys.executable, "-m", "trainers.cli", "export-masked", "--run", str(run), "--out", str(out), "--batches", "3"], env=cli_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    f = np.load(out)
    meta = json.loads(str(f["owner_meta"]))
    assert meta["exact"] is True and meta["defence"]["name"] == "random-k" and meta["samples"] == 3 * 64
    # crossed fields keep their message names; what only the owner knows is prefixed
    assert sorted(f.files) == ["inputs", "labels", "message", "owner_labels", "owner_meta", "owner_settings", "owner_sources", "owner_weights", "weights"]
    stream = TrainingStream(cfg, build_defence(cfg), H.data())
    expected, _ = concat_batches([stream.next() for _ in range(3)])
    assert np.array_equal(f["inputs"], expected.inputs.numpy())
    assert np.array_equal(f["owner_sources"], expected.sources.numpy()) and np.array_equal(f["labels"], expected.labels.numpy())
    real = f["owner_sources"] >= 0
    train_labels = H.data().train_labels.numpy()
    assert (f["labels"][real] == train_labels[f["owner_sources"][real]]).all()
    assert np.allclose(f["weights"].sum(1), 1.0, atol=1e-5) and (f["weights"][~real] == 0).all()
    assert f["message"].tolist() == [0] * 64 + [1] * 64 + [2] * 64

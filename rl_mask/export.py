"""``rl-mask export-masked``: the protected training tensors of a run, as they leave the data
owner, with labels and provenance, for a third party to audit with its own attack.

The file (``numpy.savez_compressed``) holds, for M protected samples mixing up to K faces:

- ``inputs``  float32 ``[M, C, h, w]``: exactly what the FR trainer received;
- ``labels``  int64 ``[M, K]``: identity (private label) of each mixed face;
- ``weights`` float32 ``[M, K]``: mixing weights (rows sum to 1);
- ``sources`` int64 ``[M, K]``: provenance, indices into the run's private training set
  (the split of ``config.yaml``: identities shuffled with ``data.split_seed``);
  columns beyond a batch's own k are padding (weight 0, label and source -1);
- ``batch``   int64 ``[M]``: which of the exported batches each sample belongs to;
- ``meta``    a JSON string: the defence, the run, whether the batches are an exact replay.

The original faces never go into the file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from rl_mask.checkpoint import atomic_write_bytes, load_checkpoint
from rl_mask.config import ConfigError
from rl_mask.fr.run import TrainingStream, concat_masked, prepare_data
from rl_mask.masking import MaskedBatch
from rl_mask.run_folder import read_run, recorded_batches_path


def export_masked(run_dir: str | Path, out_file: str | Path, batches: int | None = None, data_root: str | None = None) -> dict:
    """Write the first ``batches`` protected training batches of ``run_dir`` (default: one
    epoch's worth) to ``out_file``; returns the meta dict.

    A ``train-fr`` run is replayed from its seed; an adaptive run exports the batches its FR
    service recorded as received (``rl.record_masked_batches`` of them); only an adaptive run
    without that record falls back to re-drawing with its k distribution (``exact_replay``
    false in the meta)."""
    run = read_run(run_dir)
    cfg = run.cfg
    if data_root:
        cfg.data.root = str(Path(data_root).resolve())
    data = prepare_data(cfg)
    if batches is None:
        batches = max(1, len(data.train_labels) // cfg.fr.batch_size)
    if batches < 1:
        raise ConfigError(f"--batches {batches} must be >= 1")
    recorded = recorded_batches_path(run.path)
    if not run.replayable and recorded.is_file():
        saved = load_checkpoint(recorded, required=("batches",))["batches"][:batches]
        drawn = [MaskedBatch(b["inputs"], b["labels"], b["weights"], b["sources"]) for b in saved]
        exact, note = True, f"the first {len(drawn)} batches the FR network of this rl-mask train run received from its env runners, as recorded ({recorded.name})"
    else:
        stream = TrainingStream(cfg, run.defence, data)
        drawn = [stream.next().provenance() for _ in range(batches)]
        exact = run.replayable
        note = (
            "the first training batches of this train-fr run, replayed from its seed: identical to what the FR trainer received"
            if exact
            else "an rl-mask train run without recorded batches: re-drawn with the learned k distribution, not the env runners' exact batches"
        )
    masked = concat_masked(drawn)
    step = torch.cat([torch.full((b.inputs.shape[0],), i, dtype=torch.long) for i, b in enumerate(drawn)])
    meta = {
        "run": str(run.path.resolve()),
        "defence": run.defence.describe(),
        "exact_replay": exact,
        "replay_note": note,
        "augmented": bool(cfg.fr.augment),
        "batches": len(drawn),
        "samples": int(masked.inputs.shape[0]),
        "source_index_space": {
            "set": "private_train",
            "data_root": cfg.data.resolved_root(),
            "split_seed": cfg.data.split_seed,
            "num_private": cfg.data.num_private,
            "train_per_identity": cfg.data.train_per_identity,
            "size": int(len(data.train_labels)),
        },
        "input_kind": run.defence.input_kind,
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        inputs=masked.inputs.numpy().astype(np.float32),
        labels=masked.labels.numpy().astype(np.int64),
        weights=masked.weights.numpy().astype(np.float32),
        sources=masked.sources.numpy().astype(np.int64),
        batch=step.numpy(),
        meta=np.array(json.dumps(meta)),
    )
    out_file = Path(out_file)
    atomic_write_bytes(out_file, buffer.getvalue())
    return meta

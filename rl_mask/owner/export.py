"""``rl-mask export-masked``: a run's protected training batches exactly as they crossed to the
FR server, for a third party to audit with its own attack.

The file (``numpy.savez_compressed``) holds, for M protected samples mixing up to K faces,
the fields of ``ProtectedBatch`` under their message names, then what the server did NOT
see, under an ``owner_`` prefix (an auditor needs it to score an attack; an attacker has none
of it):

- ``inputs``  float32 ``[M, C, h, w]``: exactly what the FR server received;
- ``labels``  int64 ``[M, K]``: identity (private label) of each mixed face, as it crossed
  (a batch sent with hard labels carries only its dominant identity, in column 0);
- ``weights`` float32 ``[M, K]``: mixing weights as they crossed (rows sum to 1);
  columns beyond a batch's own k are padding (weight 0, label -1);
- ``message`` int64 ``[M]``: which crossed message (batch) each sample came in;
- ``owner_sources`` int64 ``[M, K2]``: provenance, indices into the run's private training
  set (the split of ``config.yaml``: identities shuffled with ``data.split_seed``), -1 padding;
- ``owner_labels`` / ``owner_weights`` ``[M, K2]``: every mixed face's identity and weight
  (equal to ``labels`` / ``weights`` unless a batch crossed with hard labels);
- ``owner_settings`` a JSON list, per message: the adaptive policy's knobs for it (or null);
- ``owner_meta`` a JSON string: the defence, the run, how the batches were obtained.

The original faces never go into the file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from rl_mask.checkpoint import atomic_write_bytes
from rl_mask.config import ConfigError
from rl_mask.owner.recorder import boundary_dir, read_boundary, recorded_batch
from rl_mask.owner.stream import TrainingStream, concat_masked, prepare_data
from rl_mask.protocol import ProtectedBatch, concat_protected
from rl_mask.run_folder import read_run


def export_masked(run_dir: str | Path, out_file: str | Path, batches: int | None = None, data_root: str | None = None) -> dict:
    """Write the first ``batches`` protected training batches of ``run_dir`` (default: one
    epoch's worth, or every recorded one) to ``out_file``; returns the meta dict.

    A ``train-fr`` run is replayed from its seed through the same ``TrainingStream`` that
    trained it; an adaptive run exports the messages its env runners recorded as they sent
    them (``RUN_DIR/boundary``, ``rl.record_masked_batches`` per env); an adaptive run
    without that record is refused (nothing else would be what crossed)."""
    run = read_run(run_dir)
    cfg = run.cfg
    if data_root:
        cfg.data.root = str(Path(data_root).resolve())
    if batches is not None and batches < 1:
        raise ConfigError(f"--batches {batches} must be >= 1")
    if run.replayable:
        data = prepare_data(cfg)
        batches = batches or max(1, len(data.train_labels) // cfg.fr.batch_size)
        stream = TrainingStream(cfg, run.defence, data)
        drawn = [stream.next().provenance() for _ in range(batches)]
        crossed = [b.protected() for b in drawn]
        how = "the first training batches of this train-fr run, replayed from its seed through the stream that trained it: identical to what the FR trainer received"
        size = int(len(data.train_labels))
    else:
        recorded = read_boundary(run.path)
        if not recorded:
            raise ConfigError(f"{run.path}: an rl-mask train run with no recorded batches under {boundary_dir(run.path)} (rl.record_masked_batches was 0?)")
        recorded = recorded[:batches] if batches else recorded
        crossed = [ProtectedBatch(m["inputs"], m["labels"], m["weights"]) for m in recorded]
        drawn = [recorded_batch(m) for m in recorded]
        senders = sorted({m["owner_sender"] for m in recorded})
        how = f"the batches this rl-mask train run's env runners sent to the FR server, recorded as sent ({len(drawn)} from {', '.join(senders)})"
        size = None
    sent = concat_protected(crossed)
    masked = concat_masked(drawn)
    message = torch.cat([torch.full((b.inputs.shape[0],), i, dtype=torch.long) for i, b in enumerate(drawn)])
    meta = {
        "run": str(run.path.resolve()),
        "defence": run.defence.describe(),
        "exact": True,
        "how": how,
        "augmented": bool(cfg.fr.augment),
        "batches": len(drawn),
        "samples": int(masked.inputs.shape[0]),
        "crossed_fields": ["inputs", "labels", "weights", "message"],
        "source_index_space": {
            "set": "private_train",
            "data_root": cfg.data.resolved_root(),
            "split_seed": cfg.data.split_seed,
            "num_private": cfg.data.num_private,
            "train_per_identity": cfg.data.train_per_identity,
            "val_per_identity": cfg.data.val_per_identity,
            "size": size,
        },
        "input_kind": run.defence.input_kind,
    }
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        inputs=sent.inputs.numpy().astype(np.float32, copy=False),
        labels=sent.labels.numpy().astype(np.int64),
        weights=sent.weights.numpy().astype(np.float32, copy=False),
        message=message.numpy(),
        owner_sources=masked.sources.numpy().astype(np.int64),
        owner_labels=masked.labels.numpy().astype(np.int64),
        owner_weights=masked.weights.numpy().astype(np.float32, copy=False),
        owner_settings=np.array(json.dumps([b.settings.as_dict() if b.settings else None for b in drawn])),
        owner_meta=np.array(json.dumps(meta)),
    )
    out_file = Path(out_file)
    atomic_write_bytes(out_file, buffer.getvalue())
    return meta

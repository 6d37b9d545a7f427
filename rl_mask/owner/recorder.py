"""What crossed the door, recorded on the data owner's side as it was sent.

Each sender (an env instance, named by its worker and vector index) keeps its first
``limit`` ``ProtectedBatch`` messages exactly as sent, with the owner-only provenance beside
them under ``owner_`` keys (provenance, every mixed face's label and weight, the batch's
settings), in ``RUN_DIR/boundary/<sender>.pt`` (rewritten atomically).
``export-masked`` reads these files: an adaptive run is exported from what its FR server
received, not from a re-implementation of the training stream. Nothing else of a run crosses:
the owner scores its validation and test faces itself (``rl_mask.use.held_out``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rl_mask.checkpoint import load_checkpoint, save_checkpoint
from rl_mask.mask.masking import MaskedBatch
from rl_mask.mask.settings import MaskSettings
from rl_mask.protocol import ProtectedBatch

BOUNDARY_DIR = "boundary"


def boundary_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).resolve() / BOUNDARY_DIR


class BoundaryRecorder:
    def __init__(self, run_dir: str | Path, sender: str, limit: int):
        self.path = boundary_dir(run_dir) / f"{sender}.pt"
        self.limit = limit
        # A restarted or resumed sender keeps what its first process recorded.
        self.active = limit > 0 and not self.path.exists()
        self._records: list[dict] = []

    def record(self, sent: ProtectedBatch, owner: MaskedBatch) -> None:
        """Keep ``sent`` (as it crossed) and the owner's record of it: provenance (private-train
        indices ``[B, k]``), every mixed face's label and weight, and the batch's settings."""
        if not self.active or len(self._records) >= self.limit:
            return
        entry = {name: t.detach().cpu().clone() for name, t in sent.as_arrays().items()}
        entry["owner_sources"] = owner.sources.detach().cpu().clone()
        entry["owner_labels"] = owner.labels.detach().cpu().clone()
        entry["owner_weights"] = owner.weights.detach().cpu().clone()
        entry["owner_settings"] = json.dumps(owner.settings.as_dict() if owner.settings else None)
        self._records.append(entry)
        save_checkpoint({"sender": self.path.stem, "messages": self._records}, self.path)


def read_boundary(run_dir: str | Path) -> list[dict]:
    """Every recorded message of a run, sender by sender (sorted by name), in sending order."""
    folder = boundary_dir(run_dir)
    out = []
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        for i, msg in enumerate(load_checkpoint(path, required=("messages",))["messages"]):
            out.append({**msg, "owner_sender": path.stem, "owner_sequence": i})
    return out


def recorded_batch(record: dict) -> MaskedBatch:
    """The owner's record of one message ``read_boundary`` returned (``BoundaryRecorder.record``'s inverse)."""
    sent = ProtectedBatch(record["inputs"], record["labels"], record["weights"])
    raw = json.loads(record.get("owner_settings", "null"))
    labels, weights = record.get("owner_labels", sent.labels), record.get("owner_weights", sent.weights)
    same = labels.shape == sent.labels.shape and torch.equal(labels, sent.labels) and torch.equal(weights, sent.weights)
    owner = (None, None) if same else (labels, weights)
    return MaskedBatch(sent, record["owner_sources"], MaskSettings(**raw) if raw else None, *owner)

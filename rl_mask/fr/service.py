"""The shared FR network as a service: what the Ray FR actor hosts, usable without Ray.

Every env runner sends masked batches here; the service takes one training step per batch,
measures clean (k = 1) identification accuracy on the held-out private faces every
``eval_every`` FR steps, and keeps a log of (k, loss, accuracy) per step for TensorBoard.
It also keeps its first few batches exactly as received (``record_path``): what left the
data owner, for ``rl-mask export-masked`` to hand to an auditor.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from rl_mask.checkpoint import load_checkpoint, save_checkpoint
from rl_mask.config import Config
from rl_mask.defences import build_defence
from rl_mask.fr.run import PrivateData, evaluate, make_trainer, prepare_data
from rl_mask.fr.trainer import resolve_device
from rl_mask.masking import MaskedBatch

LOSS_EMA = 0.95


def to_cpu(obj):
    """Tensors to CPU so a state can be saved or cross to a process without CUDA."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


class FRService:
    def __init__(
        self,
        cfg: Config,
        total_steps: int,
        device: torch.device | str | None = None,
        data: PrivateData | None = None,
        autosave_path: str | Path | None = None,
        autosave_every: int = 0,
        record_path: str | Path | None = None,
        record_batches: int = 0,
    ):
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else resolve_device(cfg.fr.device)
        self.data = data or prepare_data(cfg)
        # The k = 1 encoding of held-out faces is the same for every k: channel removal only.
        self.defence = build_defence(cfg, "mask")
        self.trainer = make_trainer(cfg, self.defence, self.data, self.device, total_steps)
        self.test_inputs = self.defence.encode_eval(self.data.test_images)
        self.eval_every = cfg.rl.eval_every
        self.autosave_path = Path(autosave_path) if autosave_path else None
        self.autosave_every = autosave_every
        self.images_trained = 0
        self.train_seconds = 0.0
        self.loss_ema = 0.0  # recent FR loss over every env runner's batches
        self._log: list[dict] = []
        self.restored_from: str | None = None
        # A resumed or restarted run keeps the batches its first process recorded.
        self.record_path = Path(record_path) if record_path and record_batches and not Path(record_path).exists() else None
        self.record_batches = record_batches
        self._recorded: list[dict] = []
        self.restored_step: int | None = None
        if self.autosave_path and self.autosave_path.is_file():
            # A restart after a crash: carry on from the last autosave, not from scratch.
            self.load_state_dict(load_checkpoint(self.autosave_path, self.device, required=("trainer",)))
            self.restored_from = str(self.autosave_path)
            self.restored_step = self.trainer.step
        else:
            self.clean_acc = self._clean_accuracy()

    def _clean_accuracy(self) -> float:
        return self.trainer.evaluate(self.test_inputs, self.data.test_labels)["identification_acc"]

    @property
    def fr_step(self) -> int:
        return self.trainer.step

    def train_step(self, batch: MaskedBatch) -> dict:
        """One FR step on a masked batch; returns the loss and the latest clean accuracy."""
        started = time.perf_counter()
        loss = self.trainer.train_step(batch)
        if self.trainer.step % self.eval_every == 0:
            self.clean_acc = self._clean_accuracy()
        self.train_seconds += time.perf_counter() - started
        self.images_trained += int(batch.inputs.shape[0])
        self.loss_ema = loss if self.trainer.step == 1 else LOSS_EMA * self.loss_ema + (1 - LOSS_EMA) * loss
        self._log.append({"fr_step": self.trainer.step, "k": batch.k, "loss": loss, "clean_acc": self.clean_acc})
        if self.record_path and len(self._recorded) < self.record_batches:
            self._record(batch)
        if self.autosave_path and self.autosave_every and self.trainer.step % self.autosave_every == 0:
            self.save(self.autosave_path)
        return {"loss": loss, **self.status()}

    def _record(self, batch: MaskedBatch) -> None:
        """Append ``batch`` (as trained on) to the record file, rewritten atomically."""
        fields = ("inputs", "labels", "weights", "sources")
        self._recorded.append({"fr_step": self.trainer.step, **{f: to_cpu(getattr(batch, f)) for f in fields}})
        save_checkpoint({"batches": self._recorded}, self.record_path)

    def status(self) -> dict:
        """What an env observes of the FR network."""
        return {"clean_acc": self.clean_acc, "fr_step": self.trainer.step, "loss_ema": self.loss_ema}

    def eval_loss(self, batch: MaskedBatch) -> float:
        """The loss of a batch on the current FR state, without training on it."""
        return self.trainer.eval_loss(batch)

    def evaluate(self) -> dict:
        """Full held-out evaluation: identification top-1/top-5 and verification."""
        return evaluate(self.trainer, self.defence, self.data)

    def drain_log(self) -> list[dict]:
        """Per-step records since the last call (for TensorBoard)."""
        log, self._log = self._log, []
        return log

    def info(self) -> dict:
        return {
            "device": str(self.device),
            "fr_step": self.trainer.step,
            "images_trained": self.images_trained,
            "train_seconds": self.train_seconds,
            "clean_acc": self.clean_acc,
            "restored_from": self.restored_from,
            "restored_step": self.restored_step,
            "threads": torch.get_num_threads(),
            "pid": os.getpid(),
            "node_id": None,
            "restarted": False,
        }

    def state_dict(self) -> dict:
        return {"trainer": self.trainer.state_dict(), "clean_acc": self.clean_acc, "loss_ema": self.loss_ema, "images_trained": self.images_trained}

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state["trainer"])
        self.clean_acc = float(state["clean_acc"])
        self.loss_ema = float(state.get("loss_ema", 0.0))
        self.images_trained = int(state.get("images_trained", 0))

    def get_state(self) -> dict:
        return to_cpu(self.state_dict())

    def set_state(self, state: dict) -> None:
        """Load a state (resume) and autosave it at once, so a crash right after does not lose it."""
        self.load_state_dict(state)
        if self.autosave_path:
            self.save(self.autosave_path)

    def save(self, path: str | Path) -> None:
        save_checkpoint(self.get_state(), path)

    def load(self, path: str | Path) -> None:
        self.load_state_dict(load_checkpoint(path, self.device, required=("trainer",)))

    def weights(self) -> dict:
        return to_cpu(self.trainer.weights())

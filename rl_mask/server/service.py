"""The shared FR network as a service: what the Ray FR actor hosts, and what ``train-fr`` and
the benchmark's rows train through in-process, so that one code path trains every FR job.

The FR server's side of the door. It is built from a ``TrainingSetup``, trains on
``ProtectedBatch`` messages (and refuses anything else): one step per message, or, with
``fr.rows_per_step``, one step on the union of the messages queued while it was busy
(``rl_mask.server.step_queue``), each message answered with its own rows' loss. It hands its
weights back on request (``TrainedModel``): the owner measures utility on its own side, so no
held-out face reaches the server. It keeps a log of (k, loss) per step for TensorBoard. It
never opens a face file: it holds no path to one and no statistic of one.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import torch

from rl_mask.checkpoint import load_checkpoint, save_checkpoint
from rl_mask.protocol import ProtectedBatch, TrainedModel, TrainingSetup, concat_protected
from rl_mask.server.step_queue import StepQueue
from rl_mask.server.trainer import resolve_device, trainer_for

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


def _require(message, cls: type, method: str) -> None:
    # Exact type: an owner-side record (e.g. a MaskedBatch with provenance) must not pass.
    if type(message) is not cls:
        raise TypeError(f"FRService.{method} takes a {cls.__name__} (rl_mask.protocol), got {type(message).__name__}")


class FRService:
    def __init__(
        self,
        setup: TrainingSetup | dict,
        device: torch.device | str | None = None,
        autosave_path: str | Path | None = None,
        autosave_every: int = 0,
        step_wait_s: float = 0.0,
        step_thread: bool = False,
    ):
        """``step_wait_s``: how long a queued message waits for more rows (``fr.rows_per_step``)
        before its step starts; 0 in one thread, where no other message can arrive meanwhile.
        ``step_thread``: every step on one thread of the step queue's own (callers on many
        threads: the Ray actor), else on the caller's (``rl_mask.server.step_queue``)."""
        self.setup = setup if isinstance(setup, TrainingSetup) else TrainingSetup.from_dict(setup)
        self.device = torch.device(device) if device is not None else resolve_device(self.setup.fr.device)
        self.trainer = trainer_for(self.setup, self.device)
        self.autosave_path = Path(autosave_path) if autosave_path else None
        self.autosave_every = autosave_every
        self.images_trained = 0
        self.train_seconds = 0.0
        self.loss_ema = 0.0  # recent FR loss over every env runner's batches
        self._log: list[dict] = []
        self.restored_from: str | None = None
        self.restored_step: int | None = None
        self.rank = 0
        self.in_group = False  # a data-parallel worker, once join_group has run in this process
        # One lock for everything that touches the network: concurrent callers (a Ray actor with
        # aggregated steps) never see a half-taken step.
        self.lock = threading.RLock()
        self.queue = StepQueue(self.train_messages, self.setup.fr.rows_per_step, step_wait_s, self.lock, own_thread=step_thread)
        if self.autosave_path and self.autosave_path.is_file():
            # A restart after a crash: carry on from the last autosave, not from scratch.
            self.load_state_dict(load_checkpoint(self.autosave_path, self.device, required=("trainer",)))
            self.restored_from = str(self.autosave_path)
            self.restored_step = self.trainer.step

    @property
    def fr_step(self) -> int:
        return self.trainer.step

    def join_group(self, init_method: str, rank: int, world_size: int) -> int:
        """Become worker ``rank`` of a data-parallel FR server (``rl_mask.server.data_parallel``);
        the group's worker 0 broadcasts its weights to everyone as the group forms."""
        from rl_mask.server.data_parallel import join_group

        join_group(init_method, rank, world_size, self.device)
        self.trainer.enable_data_parallel()
        self.rank = rank
        self.in_group = True
        return self.trainer.step

    def train_step(self, batch: ProtectedBatch) -> dict:
        """Train on a protected batch (alone, or in an aggregated step with the messages queued
        beside it); returns its own rows' loss (a ``StepReport``'s fields)."""
        _require(batch, ProtectedBatch, "train_step")
        return self.queue.train(batch)

    def train_messages(self, batches: list[ProtectedBatch]) -> list[dict]:
        """ONE FR step on the union of ``batches`` (padded to the largest k); answer ``i`` holds
        the mean loss of batch ``i``'s own rows in that step (the same forward pass, before the
        update), so each message's reward is its own."""
        for batch in batches:
            _require(batch, ProtectedBatch, "train_messages")
        if self.setup.private_training and len(batches) > 1:
            raise ValueError(f"DP-SGD trains one Poisson batch per step (its accountant counts them so), got {len(batches)} messages for one step")
        with self.lock:
            started = time.perf_counter()
            union = batches[0] if len(batches) == 1 else concat_protected(batches)
            rows = self.trainer.train_rows(union)
            self.train_seconds += time.perf_counter() - started
            self.images_trained += len(union)
            out = []
            for batch, own in zip(batches, torch.split(rows, [len(b) for b in batches]) if len(rows) else [rows] * len(batches)):
                loss = float(own.mean())
                self.loss_ema = loss if self.trainer.step == 1 and not out else LOSS_EMA * self.loss_ema + (1 - LOSS_EMA) * loss
                self._log.append({"fr_step": self.trainer.step, "k": batch.k, "loss": loss, "step_rows": len(union)})
                out.append({"loss": loss, **self.status()})
            if self.autosave_path and self.rank == 0 and self.autosave_every and self.trainer.step % self.autosave_every == 0:
                self.save(self.autosave_path)  # worker 0 saves for the group: all hold the same state
            self.after_step()
            return out

    def messages_per_step(self, rows: int) -> int:
        """How many messages of ``rows`` rows one caller that sends them all itself (``train-fr``)
        hands ``train_messages`` for one step: as many as ``fr.rows_per_step`` holds, the most a
        queued step takes; one without aggregation or under DP-SGD."""
        if self.setup.private_training or not self.setup.fr.rows_per_step:
            return 1
        return max(1, self.setup.fr.rows_per_step // max(1, rows))

    def after_step(self) -> None:
        """Called after every FR step, under the lock (the Ray actor records its progress)."""

    def status(self) -> dict:
        """What an env observes of the FR network."""
        return {"fr_step": self.trainer.step, "loss_ema": self.loss_ema}

    def eval_loss(self, batch: ProtectedBatch) -> float:
        """The loss of a batch on the current FR state, without training on it."""
        _require(batch, ProtectedBatch, "eval_loss")
        with self.lock:
            return self.trainer.eval_loss(batch)

    def privacy(self) -> dict | None:
        """The DP-SGD accounting so far (epsilon spent, noise, ...); None without DP-SGD."""
        with self.lock:
            return self.trainer.privacy() if self.setup.private_training else None

    def drain_log(self) -> list[dict]:
        """Per-step records since the last call (for TensorBoard)."""
        with self.lock:
            log, self._log = self._log, []
        return log

    def info(self) -> dict:
        return {
            "device": str(self.device),
            "fr_step": self.trainer.step,
            "images_trained": self.images_trained,
            "train_seconds": self.train_seconds,
            "restored_from": self.restored_from,
            "restored_step": self.restored_step,
            "threads": torch.get_num_threads(),
            "pid": os.getpid(),
            "node_id": None,
            "restarted": False,
            "rank": self.rank,
            "in_group": self.in_group,
        }

    def state_dict(self) -> dict:
        return {"trainer": self.trainer.state_dict(), "loss_ema": self.loss_ema, "images_trained": self.images_trained}

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state["trainer"])
        self.loss_ema = float(state.get("loss_ema", 0.0))
        self.images_trained = int(state.get("images_trained", 0))

    def get_state(self) -> dict:
        with self.lock:
            return to_cpu(self.state_dict())

    def set_state(self, state: dict) -> None:
        """Load a state (resume) and autosave it at once, so a crash right after does not lose it."""
        with self.lock:
            self.load_state_dict(state)
            if self.autosave_path and self.rank == 0:
                self.save(self.autosave_path)

    def save(self, path: str | Path) -> None:
        save_checkpoint(self.get_state(), path)

    def load(self, path: str | Path) -> None:
        with self.lock:
            self.load_state_dict(load_checkpoint(path, self.device, required=("trainer",)))

    def trained_model(self) -> TrainedModel:
        """The network as it stands (the owner scores its held-out faces with it; ``fr.pt``)."""
        with self.lock:
            weights = to_cpu(self.trainer.weights())
            return TrainedModel(weights["state_dict"], weights["meta"], self.trainer.step)

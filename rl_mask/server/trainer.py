"""One FR network and its optimizer: a training step on a protected batch, evaluation, state.

The FR server's core, in ``rl-mask train-fr`` and in the FR Ray actor alike. It is built from
the owner's ``TrainingSetup`` message and learns only from ``ProtectedBatch`` messages: its
input standardisation is fitted on the first protected batch it receives, never on faces.
It takes a ``torch.device`` and never decides where it runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from rl_mask.checkpoint import CheckpointError, build_checked, load_checkpoint
from rl_mask.config import ConfigError, ModelConfig, validate_model
from rl_mask.protocol import FRHyperparameters, ProtectedBatch, TrainingSetup
from rl_mask.server.models import INPUT_KINDS, ArcFaceHead, FaceRecognizer, IRResNet, MLPNet

#: The largest input side (channels, height or width) a model file may record.
MAX_INPUT_SIDE = 4096


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(meta: dict) -> FaceRecognizer:
    """The FR model described by ``meta`` (as stored in checkpoints)."""
    m = ModelConfig(**meta["model"])
    common = dict(
        embedding_dim=m.embedding_dim,
        dropout=m.dropout,
        input_kind=meta["input_kind"],
        sample_norm=m.sample_norm,
        input_map=meta["model"].get("input_map", "identity"),  # a file from before input maps read values
    )
    shape = tuple(meta["input_shape"])
    if m.arch == "mlp":
        backbone: IRResNet | MLPNet = MLPNet(shape, widths=tuple(m.mlp_widths), **common)
    else:
        backbone = IRResNet(shape, widths=tuple(m.widths), depths=tuple(m.depths), **common)
    head = ArcFaceHead(m.embedding_dim, meta["num_classes"], scale=m.arc_scale, margin=m.arc_margin)
    model = FaceRecognizer(backbone, head)
    if meta.get("norm") == "group":
        # DP-SGD models (rl_mask.server.private): Opacus' BatchNorm -> GroupNorm replacement.
        from opacus.validators import ModuleValidator

        model = ModuleValidator.fix(model)
    return model


class FRTrainer:
    """FR model + AdamW with a cosine learning-rate schedule over ``total_steps``."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        input_kind: str,
        num_classes: int,
        model_cfg: ModelConfig,
        fr_cfg: FRHyperparameters,
        device: torch.device,
        total_steps: int | None = None,
    ):
        self.meta = {
            "input_shape": list(input_shape),
            "input_kind": input_kind,
            "num_classes": int(num_classes),
            "model": asdict(model_cfg),
        }
        self.device = device
        torch.manual_seed(fr_cfg.seed)
        self.model = build_model(self.meta).to(device)
        # fr.precision / fr.channels_last: what makes a large step fast on a GPU (issue 19)
        self.autocast = fr_cfg.precision == "bf16"
        self.channels_last = fr_cfg.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=fr_cfg.lr, weight_decay=fr_cfg.weight_decay)
        self.base_lr = fr_cfg.lr
        self.total_steps = max(1, total_steps or fr_cfg.steps)
        self.step = 0
        self.input_stats_fitted = False
        from rl_mask.server.data_parallel import MixedLoss

        self.loss_module = MixedLoss(self.model)
        self._train_loss = self.loss_module  # the DDP wrapper once data-parallel
        self.data_parallel = False

    def enable_data_parallel(self) -> None:
        """Train as one of the FR workers of the process group this process joined."""
        from rl_mask.server.data_parallel import wrap

        self._train_loss = wrap(self.loss_module, self.device)
        self.data_parallel = True

    def set_input_stats(self, inputs: torch.Tensor) -> None:
        self.model.backbone.set_input_stats(inputs.to(self.device))
        self.input_stats_fitted = True

    def _lr(self) -> float:
        warmup = min(50, self.total_steps // 10)
        if self.step < warmup:
            return self.base_lr * (self.step + 1) / warmup
        t = min(1.0, (self.step - warmup) / max(1, self.total_steps - warmup))
        return self.base_lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    def row_losses(self, batch: ProtectedBatch, train: bool = False) -> torch.Tensor:
        """``[B]``: each row's mixed margin loss (float32) on the current weights; the forward
        under bf16 autocast with ``fr.precision`` bf16 (no loss scaling: bf16 has float32's range)."""
        fn = self._train_loss if train else self.loss_module
        inputs = batch.inputs.to(self.device, non_blocking=True)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return fn(inputs, batch.labels.to(self.device), batch.weights.to(self.device))

    def loss(self, batch: ProtectedBatch, train: bool = False) -> torch.Tensor:
        return self.row_losses(batch, train).mean()

    def train_step(self, batch: ProtectedBatch, shards: int = 1) -> float:
        """One optimizer step on a protected batch; returns the mixed margin loss."""
        return float(self.train_rows(batch, shards).mean())

    def train_rows(self, batch: ProtectedBatch, shards: int = 1) -> torch.Tensor:
        """One optimizer step on a protected batch (the mean of its rows' losses); returns each
        row's loss (CPU, before the step), one host sync per step.

        ``shards`` > 1 computes the batch in that many row shards (gradients accumulated,
        BatchNorm statistics per shard): the step N data-parallel workers take together."""
        if not self.input_stats_fitted and batch.inputs.shape[0] > 1:
            # Standardisation from what crossed (the first protected batch), not from faces;
            # data-parallel workers fit it on every worker's shard, the whole batch.
            from rl_mask.server.data_parallel import gather_rows

            self.set_input_stats(gather_rows(batch.inputs.to(self.device)) if self.data_parallel else batch.inputs)
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        self.optimizer.zero_grad(set_to_none=True)
        parts = [batch]
        if shards > 1 and not self.data_parallel:
            parts = [ProtectedBatch(*p) for p in zip(*(torch.tensor_split(t, shards) for t in (batch.inputs, batch.labels, batch.weights)))]
        rows = []
        for part in parts:
            losses = self.row_losses(part, train=True)
            (losses.mean() / len(parts)).backward()
            rows.append(losses.detach())
        self.optimizer.step()
        self.step += 1
        return torch.cat(rows).float().cpu()

    @torch.no_grad()
    def eval_loss(self, batch: ProtectedBatch) -> float:
        """The loss of a batch without training on it (scores a policy on a fixed FR state)."""
        self.model.eval()
        return float(self.loss(batch))

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "meta": self.meta,
            "input_stats_fitted": self.input_stats_fitted,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("meta") and state["meta"] != self.meta:
            raise ValueError(f"FR state is for another model: {state['meta']} != {self.meta}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.input_stats_fitted = bool(state.get("input_stats_fitted", self.step > 0))

    def weights(self) -> dict:
        """Final weights file content: ``{"state_dict", "meta"}`` (see ``load_fr_model``)."""
        return {"state_dict": self.model.state_dict(), "meta": self.meta}


def trainer_for(setup: TrainingSetup, device: torch.device) -> FRTrainer:
    """The FR trainer a ``TrainingSetup`` asks for (DP-SGD when the defence trains privately)."""
    if setup.private_training:
        from rl_mask.server.private import DPFRTrainer

        return DPFRTrainer(
            setup.input_shape, setup.input_kind, setup.num_classes, setup.model, setup.fr, setup.dp, device, setup.train_size, setup.total_steps
        )
    return FRTrainer(setup.input_shape, setup.input_kind, setup.num_classes, setup.model, setup.fr, device, setup.total_steps)


def load_fr_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[FaceRecognizer, dict]:
    """Load final FR weights (``RUN_DIR/fr.pt``) into a ready model; returns ``(model, meta)``."""
    return model_from_weights(load_checkpoint(path, map_location, required=("state_dict", "meta")), path)


def model_from_weights(content: dict, where: str | Path) -> tuple[FaceRecognizer, dict]:
    """A ready model from ``{"state_dict", "meta"}`` (a weights file's content, or a
    ``TrainedModel``'s); ``where`` names the source in errors."""
    meta = checked_meta(content["meta"], where)
    return build_checked(lambda: build_model(meta), content["state_dict"], where).eval(), meta


def checked_meta(meta: dict, path: str | Path) -> dict:
    """A model file's ``meta`` with the config's ranges enforced before anything is built from it."""
    try:
        validate_model(ModelConfig(**meta["model"]))
        shape = tuple(int(v) for v in meta["input_shape"])
        if meta["model"].get("input_map") == "auto":
            raise ConfigError("model.input_map='auto' is resolved before a network is built; a file never records it")
        if len(shape) != 3 or not all(1 <= v <= MAX_INPUT_SIDE for v in shape) or int(meta["num_classes"]) < 1 or meta["input_kind"] not in INPUT_KINDS:
            raise ConfigError(f"input_shape={meta['input_shape']!r}, num_classes={meta['num_classes']!r}, input_kind={meta['input_kind']!r} are out of range")
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: its meta does not describe a network this version builds ({type(exc).__name__}: {exc})") from None
    return meta

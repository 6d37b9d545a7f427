"""DP-SGD training of the FR network (Opacus): per-sample clipping, Gaussian noise, accounting.

What Opacus needs and what we do about it:

- per-sample gradients: ``GradSampleModule`` (hooks; Conv/Linear/GroupNorm have exact
  grad samplers, PReLU and the ArcFace head fall back to Opacus' functorch path);
- no batch statistics: ``ModuleValidator.fix`` replaces every BatchNorm with GroupNorm
  (``meta["norm"] = "group"`` records it, so ``build_model`` rebuilds the same network);
- the loss must come from the module's own forward: the ArcFace head's ``forward`` gives
  ``s * cos``, and the angular margin is applied to that output;
- Poisson sampling (each face joins a batch independently with probability q), which the
  RDP accountant assumes; the noise multiplier is solved so that the run's planned steps
  spend exactly ``dp.target_epsilon`` at ``dp.delta``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer

from rl_mask.config import DPConfig, ModelConfig
from rl_mask.protocol import FRHyperparameters, ProtectedBatch
from rl_mask.server.trainer import FRTrainer, build_model

#: RDP orders searched when converting to (epsilon, delta): Opacus' defaults extended to 256,
#: since short runs (few steps) reach their tightest bound beyond Opacus' largest order (63).
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 257))


class DPFRTrainer(FRTrainer):
    """``FRTrainer`` with DP-SGD; ``epsilon()`` is the privacy spent so far at ``dp.delta``."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        input_kind: str,
        num_classes: int,
        model_cfg: ModelConfig,
        fr_cfg: FRHyperparameters,
        dp_cfg: DPConfig,
        device: torch.device,
        train_size: int,
        total_steps: int | None = None,
    ):
        super().__init__(input_shape, input_kind, num_classes, model_cfg, fr_cfg, device, total_steps)
        self.meta["norm"] = "group"
        torch.manual_seed(fr_cfg.seed)
        self.model = build_model(self.meta).to(device)
        # Opacus' per-sample gradients and clipping in float32 on a plain network: a DP step
        # takes neither fr.precision nor fr.channels_last (its own row_losses, no autocast).
        self.autocast = self.channels_last = False
        # Input standardisation fitted on a batch would be a statistic of private pixels
        # outside the DP accounting: DP-SGD keeps the data-independent identity map.
        self.input_stats_fitted = True
        self.dp = dp_cfg
        self.sample_rate = min(1.0, fr_cfg.batch_size / train_size)
        self.noise_multiplier = get_noise_multiplier(
            target_epsilon=dp_cfg.target_epsilon,
            target_delta=dp_cfg.delta,
            sample_rate=self.sample_rate,
            steps=self.total_steps,
            accountant="rdp",
            alphas=RDP_ORDERS,
        )
        self.grad_sample_module = GradSampleModule(self.model, batch_first=True, loss_reduction="mean")
        self.accountant = RDPAccountant()
        self.optimizer = DPOptimizer(
            torch.optim.AdamW(self.model.parameters(), lr=fr_cfg.lr, weight_decay=fr_cfg.weight_decay),
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=dp_cfg.max_grad_norm,
            expected_batch_size=max(1, round(self.sample_rate * train_size)),
            loss_reduction="mean",
            generator=torch.Generator(device=device).manual_seed(fr_cfg.seed + 1),
        )
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))

    def row_losses(self, batch: ProtectedBatch, train: bool = False) -> torch.Tensor:
        if batch.k != 1:
            raise ValueError(f"DP-SGD trains on unmixed faces; got a batch mixing k={batch.k}")
        head = self.model.head
        logits = self.grad_sample_module(batch.inputs.to(self.device))  # s * cos, through Opacus' hooks
        labels = batch.labels[:, 0].to(self.device)
        return F.cross_entropy(head.margin_logits(logits / head.scale, labels), labels, reduction="none")

    def train_rows(self, batch: ProtectedBatch, shards: int = 1) -> torch.Tensor:
        if batch.inputs.shape[0] == 0:
            # An empty Poisson batch: no update, but the step still counts for the accountant.
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
            self.step += 1
            return torch.zeros(0)  # its mean, the step's loss, is nan
        with warnings.catch_warnings():
            # Opacus' backward hooks on the first layer, whose input needs no gradient: harmless.
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            return super().train_rows(batch)

    @torch.no_grad()
    def eval_loss(self, batch: ProtectedBatch) -> float:
        self.model.eval()
        return float(self.loss(batch))

    def epsilon(self) -> float:
        return float(self.accountant.get_epsilon(delta=self.dp.delta, alphas=RDP_ORDERS)) if self.accountant.history else 0.0

    def privacy(self) -> dict:
        return {
            "epsilon": round(self.epsilon(), 4),
            "delta": self.dp.delta,
            "target_epsilon": self.dp.target_epsilon,
            "noise_multiplier": round(float(self.noise_multiplier), 4),
            "max_grad_norm": self.dp.max_grad_norm,
            "sample_rate": round(self.sample_rate, 6),
            "steps": self.step,
            "accountant": "rdp",
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "accountant": self.accountant.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "accountant" in state:
            self.accountant.load_state_dict(state["accountant"])

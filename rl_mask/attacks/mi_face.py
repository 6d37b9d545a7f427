"""MI-FACE (Fredrikson, Jha, Ristenpart, CCS 2015): gradient inversion of the trained classifier.

For every private identity c the attacker optimises a pixel image x (for frequency-input
models the deployed block DCT and channel removal sit in front of the model and are
differentiated through, so pixels stay the variable) to make the model see c:

    min_x  -logit_c(model(encode(jitter(x)))) + tv * TV(x) + l2 * ||x - mean public face||^2

What makes it work on a real face model rather than produce an adversarial pattern (each
measured on AT&T against the unprotected model; see the benchmark report):

- the image is optimised at 1/``downscale`` resolution and upsampled bilinearly (a smoothness
  prior), starting from the mean public face (the attacker's auxiliary data) plus noise;
- every step sees the image under a random flip, shift, scale and rotation (``jitter``);
- the objective is the target logit (ArcFace: scale x cosine to the class centre) rather
  than the cross-entropy of the original paper, which saturates once the class wins and
  stops pulling the image towards the identity (``objective="ce"`` restores it);
- several restarts per identity, the best chosen by the target model's own confidence under
  jitter (the evaluation model is never consulted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rl_mask.attacks.base import Attack, AttackTarget
from rl_mask.attacks.inversion import best_restarts, freeze, jitter, optimise_latent, target_confidence, target_logits, total_variation
from rl_mask.mask.defences.base import Defence
from rl_mask.reconstruction import Reconstruction

OBJECTIVES = ("logit", "ce")


class MIFace(Attack):
    name = "mi-face"
    kind = "inversion"

    def __init__(
        self,
        steps: int = 300,
        restarts: int = 4,
        lr: float = 0.05,
        tv_weight: float = 1.0,
        l2_weight: float = 0.0,
        jitter: float = 2.0,
        init_noise: float = 0.2,
        downscale: int = 4,
        objective: str = "logit",
        seed: int = 0,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective {objective!r} is not one of {OBJECTIVES}")
        if downscale < 1:
            raise ValueError(f"downscale must be >= 1, got {downscale}")
        self.steps = steps
        self.restarts = restarts
        self.lr = lr
        self.tv_weight = tv_weight
        self.l2_weight = l2_weight
        self.jitter = jitter
        self.init_noise = init_noise
        self.downscale = downscale
        self.objective = objective
        self.seed = seed
        self.prior: torch.Tensor | None = None

    def fit(self, public: torch.Tensor, defence: Defence, progress: bool = False) -> "MIFace":
        """The prior is the mean public face. (The model is queried through the deployed input
        encoding, which ships with the model: without it the model cannot be used at all.)"""
        self.prior = public.mean(0, keepdim=True)
        return self

    def _upsample(self, z: torch.Tensor) -> torch.Tensor:
        if self.downscale == 1:
            return z
        return F.interpolate(z, size=self.prior.shape[-2:], mode="bilinear", align_corners=False)

    def attack(self, target: AttackTarget, progress: bool = False) -> Reconstruction:
        if self.prior is None:
            raise RuntimeError("mi-face: call fit() before attack()")
        model = freeze(target.model)
        defence = target.defence
        c = target.num_classes
        labels = torch.arange(c).repeat(self.restarts)
        generator = torch.Generator().manual_seed(self.seed)
        start = F.avg_pool2d(self.prior, self.downscale) if self.downscale > 1 else self.prior
        z = start.repeat(len(labels), 1, 1, 1)
        z = (z + self.init_noise * torch.randn(z.shape, generator=generator)).clamp(-1, 1)

        def objective(z: torch.Tensor) -> torch.Tensor:
            x = self._upsample(z)
            logits = target_logits(model, defence, jitter(x, self.jitter, generator))
            if self.objective == "logit":
                loss = -logits.gather(1, labels[:, None]).squeeze(1)
            else:
                loss = F.cross_entropy(logits, labels, reduction="none")
            return loss + self.tv_weight * total_variation(x) + self.l2_weight * (x - self.prior).pow(2).flatten(1).mean(1)

        z = optimise_latent(z, objective, self.steps, self.lr, bound=1.0, desc=self.name, progress=progress)
        images = self._upsample(z)
        scores = target_confidence(model, defence, images, labels, generator, strength=self.jitter)
        return Reconstruction(best_restarts(images, scores, c, self.restarts), torch.arange(c), self.kind)

    def fit_key(self, defence: Defence, image_shape: tuple[int, int, int]) -> str:
        return f"{self.name}:{image_shape}"  # the prior is the mean public face: one fit serves all

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "steps": self.steps,
            "restarts": self.restarts,
            "lr": self.lr,
            "tv_weight": self.tv_weight,
            "l2_weight": self.l2_weight,
            "jitter": self.jitter,
            "downscale": self.downscale,
            "objective": self.objective,
        }

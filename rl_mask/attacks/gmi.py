"""GAN-prior model inversion (GMI: Zhang et al., "The Secret Revealer", CVPR 2020).

The attacker trains a GAN on its public faces (``rl_mask.attacks.gan``), then for every
private identity c searches the GAN's latent space:

    min_z  -logit_c(model(encode(jitter(G(z))))) - prior_weight * D(G(z))

(identity loss through the deployed input encoding, plus the discriminator's realism score as
the prior), from several random latents, Adam, latents clamped to [-3, 3]. The restart the
target model is most confident about under jitter is kept (the evaluation model is never
consulted).
"""

from __future__ import annotations

import torch

from rl_mask.attacks.base import Attack, AttackTarget
from rl_mask.attacks.gan import FaceGAN, train_gan
from rl_mask.attacks.inversion import best_restarts, freeze, jitter, optimise_latent, target_confidence, target_logits
from rl_mask.mask.defences.base import Defence
from rl_mask.reconstruction import Reconstruction

LATENT_BOUND = 3.0


class GANPriorInversion(Attack):
    name = "gmi"
    kind = "inversion"

    def __init__(
        self,
        gan_steps: int = 2000,
        steps: int = 200,
        restarts: int = 4,
        lr: float = 0.05,
        prior_weight: float = 1.0,
        jitter: float = 2.0,
        seed: int = 0,
    ):
        self.gan_steps = gan_steps
        self.steps = steps
        self.restarts = restarts
        self.lr = lr
        self.prior_weight = prior_weight
        self.jitter = jitter
        self.seed = seed
        self.gan: FaceGAN | None = None

    def fit(self, public: torch.Tensor, defence: Defence, progress: bool = False) -> "GANPriorInversion":
        """Train the GAN prior on public faces (independent of the defence)."""
        self.gan = train_gan(public, self.gan_steps, seed=self.seed, progress=progress)
        return self

    def attack(self, target: AttackTarget, progress: bool = False) -> Reconstruction:
        if self.gan is None:
            raise RuntimeError("gmi: call fit() before attack()")
        model = freeze(target.model)
        defence = target.defence
        g_net = self.gan.generator
        c = target.num_classes
        labels = torch.arange(c).repeat(self.restarts)
        generator = torch.Generator().manual_seed(self.seed + 1)
        z = torch.randn(len(labels), g_net.latent_dim, generator=generator)

        def objective(z: torch.Tensor) -> torch.Tensor:
            x = g_net.generate(z)
            logits = target_logits(model, defence, jitter(x, self.jitter, generator))
            identity = -logits.gather(1, labels[:, None]).squeeze(1)
            return identity - self.prior_weight * self.gan.realism(x)

        z = optimise_latent(z, objective, self.steps, self.lr, bound=LATENT_BOUND, desc=self.name, progress=progress)
        with torch.no_grad():
            images = g_net.generate(z)
        scores = target_confidence(model, defence, images, labels, generator, strength=self.jitter)
        return Reconstruction(best_restarts(images, scores, c, self.restarts), torch.arange(c), self.kind)

    def fit_key(self, defence: Defence, image_shape: tuple[int, int, int]) -> str:
        return f"{self.name}:gan:{self.gan_steps}:{self.seed}:{image_shape}"  # one GAN serves every defence

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "gan_steps": self.gan_steps,
            "steps": self.steps,
            "restarts": self.restarts,
            "lr": self.lr,
            "prior_weight": self.prior_weight,
            "jitter": self.jitter,
        }

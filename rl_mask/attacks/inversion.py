"""Shared pieces of the model-inversion attacks: priors, jitter, restart selection."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from tqdm.auto import tqdm

from rl_mask.mask.augment import augment
from rl_mask.mask.defences.base import Defence
from rl_mask.server.models import FaceRecognizer


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, per image ``[B]``."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random flip, shift, scale and rotation per image (``rl_mask.mask.augment.augment``, scaled by
    ``strength``; differentiable): an image the target recognises under every jitter is a
    face, not an adversarial pattern of the target model."""
    if strength <= 0:
        return x
    return augment(x, generator, max_shift=0.05 * strength, max_scale=0.05 * strength, max_rotate_deg=5.0 * strength)


def target_logits(model: FaceRecognizer, defence: Defence, images: torch.Tensor) -> torch.Tensor:
    """The target model's identity logits for pixel images: the attacker queries the model
    through the deployed input encoding (block DCT and channel removal for frequency models,
    differentiable, so pixels stay the optimisation variable)."""
    return model(defence.encode_eval(images))


@torch.no_grad()
def target_confidence(model: FaceRecognizer, defence: Defence, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, views: int = 4, strength: float = 1.0) -> torch.Tensor:
    """Mean target-class probability over a few jittered views (picks the best restart, using
    only what the attacker has: the target model)."""
    total = torch.zeros(images.shape[0])
    for _ in range(views):
        p = target_logits(model, defence, jitter(images, strength, generator)).softmax(1)
        total += p.gather(1, labels[:, None]).squeeze(1)
    return total / views


def best_restarts(images: torch.Tensor, scores: torch.Tensor, num_classes: int, restarts: int) -> torch.Tensor:
    """Images laid out ``[restarts * C]`` (restart-major) -> the best-scoring one per class ``[C]``."""
    s = scores.view(restarts, num_classes)
    best = s.argmax(0)
    return images.view(restarts, num_classes, *images.shape[1:])[best, torch.arange(num_classes)]


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy without parameter gradients (only the input is optimised; the
    caller's model is left as it was)."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def optimise_latent(
    z: torch.Tensor,
    objective: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    lr: float,
    bound: float,
    desc: str,
    progress: bool = False,
) -> torch.Tensor:
    """Minimise ``objective(z)`` (one loss per row) by Adam with a cosine-annealed learning
    rate, clamping ``z`` to [-bound, bound] after every step; returns the final ``z``."""
    z = z.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    for _ in tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
        loss = objective(z)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            z.clamp_(-bound, bound)
    return z.detach()

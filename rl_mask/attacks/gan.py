"""A small GAN of public faces: the image prior of the GAN-prior inversion (GMI).

DCGAN-style generator (latent -> 28x24 face, shown upsampled to the data size; coarse, but
the identity cues a judge uses -- face shape, hair, glasses -- live at that scale) and a
spectrally normalised discriminator, trained with the hinge loss on the attacker's public
faces only. With a couple of hundred faces, the discriminator sees every image through
DiffAugment-style random translation, flip and cutout (Zhao et al., NeurIPS 2020), applied
alike to real and fake images, which keeps it from memorising the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm
from tqdm.auto import tqdm

#: The GAN works at the data size divided by this (28x24 for 112x96 faces).
GAN_DOWNSCALE = 4


class Generator(nn.Module):
    def __init__(self, planes: int, height: int, width: int, latent_dim: int = 64, widths: tuple[int, ...] = (128, 64, 32)):
        super().__init__()
        self.latent_dim = latent_dim
        self.out_size = (height, width)
        levels = len(widths) - 1
        h0, w0 = height // GAN_DOWNSCALE // 2**levels, width // GAN_DOWNSCALE // 2**levels
        if h0 < 1 or w0 < 1 or (height // GAN_DOWNSCALE) % 2**levels or (width // GAN_DOWNSCALE) % 2**levels:
            raise ValueError(f"GAN generator: image size {height}x{width} must be divisible by {GAN_DOWNSCALE * 2**levels}")
        self.start = (widths[0], h0, w0)
        self.fc = nn.Sequential(nn.Linear(latent_dim, widths[0] * h0 * w0), nn.BatchNorm1d(widths[0] * h0 * w0), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(widths[-1], planes, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Faces at the GAN resolution ``[B, P, H / GAN_DOWNSCALE, W / GAN_DOWNSCALE]``."""
        return self.net(self.fc(z).view(-1, *self.start))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Faces at the data resolution ``[B, P, H, W]``."""
        return F.interpolate(self(z), size=self.out_size, mode="bilinear", align_corners=False)


class Discriminator(nn.Module):
    def __init__(self, planes: int, widths: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        c = planes
        for w in widths:
            layers += [spectral_norm(nn.Conv2d(c, w, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
            c = w
        self.net = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Realism logit per image at the GAN resolution."""
        return self.head(self.net(x).sum(dim=(2, 3))).squeeze(1)


def diff_augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random translation (1/8 of the size), horizontal flip and one cutout per image."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    sy, sx = h // 8, w // 8
    padded = F.pad(x, (sx, sx, sy, sy), mode="replicate")
    dy = torch.randint(0, 2 * sy + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * sx + 1, (b,), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2 * sx)
    x = padded.gather(2, rows)
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).view(b, 1, 1, w).expand(b, x.shape[1], h, w)
    x = x.gather(3, cols)
    ch, cw = h // 4, w // 4
    cy = torch.randint(0, h - ch + 1, (b,), generator=generator)
    cx = torch.randint(0, w - cw + 1, (b,), generator=generator)
    yy = torch.arange(h).view(1, h, 1)
    xx = torch.arange(w).view(1, 1, w)
    hole = ((yy >= cy.view(b, 1, 1)) & (yy < (cy + ch).view(b, 1, 1)) & (xx >= cx.view(b, 1, 1)) & (xx < (cx + cw).view(b, 1, 1))).unsqueeze(1)
    return x.masked_fill(hole, 0.0)


@dataclass
class FaceGAN:
    generator: Generator
    discriminator: Discriminator

    def realism(self, images: torch.Tensor) -> torch.Tensor:
        """Discriminator logit of data-resolution images."""
        return self.discriminator(F.avg_pool2d(images, GAN_DOWNSCALE))


def train_gan(public: torch.Tensor, steps: int, batch_size: int = 32, latent_dim: int = 64, seed: int = 0, progress: bool = False) -> FaceGAN:
    """Hinge-loss GAN on public faces ``[N, P, H, W]`` in [-1, 1] (TTUR: D at 2x G's rate)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    _, p, h, w = public.shape
    real_all = F.avg_pool2d(public, GAN_DOWNSCALE)
    g_net, d_net = Generator(p, h, w, latent_dim), Discriminator(p)
    opt_g = torch.optim.Adam(g_net.parameters(), lr=2e-4, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(d_net.parameters(), lr=4e-4, betas=(0.0, 0.99))
    n = real_all.shape[0]
    b = min(batch_size, n)
    bar = tqdm(range(steps), desc="GAN prior", disable=not progress, dynamic_ncols=True, leave=False)
    for _ in bar:
        real = real_all[torch.randint(0, n, (b,), generator=generator)]
        z = torch.randn(b, latent_dim, generator=generator)
        fake = g_net(z)
        d_real = d_net(diff_augment(real, generator))
        d_fake = d_net(diff_augment(fake.detach(), generator))
        loss_d = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = -d_net(diff_augment(fake, generator)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        bar.set_postfix(d=f"{loss_d.item():.2f}", g=f"{loss_g.item():.2f}")
    g_net.eval()
    d_net.eval()
    for net in (g_net, d_net):
        for prm in net.parameters():
            prm.requires_grad_(False)
    return FaceGAN(g_net, d_net)

"""The reconstruction attacker's network: a U-Net on the 8x8 block grid, and a PatchGAN critic.

Every defence here works on 8x8 blocks (the block DCT, or pixels whose blocks the FR model
reads the same way), so the decoder reads an encoded image as ``pixel_unshuffle(8)`` blocks
(plus their absolute values, which survive sign flips), runs a U-Net on the block grid
(H/8 x W/8, then /2, /4), predicts every block's 64 pixels, and a light full-resolution
convolution smooths block seams. It is cheap enough to train on a CPU in a minute and strong
enough to undo channel removal.

The optional PatchGAN critic (pix2pix, Isola et al. 2017) scores (encoded, face) pairs at
half resolution; its adversarial loss is added to L1 with a small weight.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BLOCK = 8


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class BlockUNet(nn.Module):
    """``[B, P, H, W]`` encoded view -> ``[B, P, H, W]`` face in [-1, 1]."""

    def __init__(self, planes: int = 1, widths: tuple[int, int, int] = (64, 128, 192)):
        super().__init__()
        w0, w1, w2 = widths
        c_in = 2 * planes * BLOCK * BLOCK
        self.planes = planes
        self.register_buffer("input_scale", torch.ones(1, c_in, 1, 1))
        self.inp = nn.Sequential(nn.Conv2d(c_in, w0, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
        self.enc0 = _conv(w0, w0)
        self.down1 = _conv(w0, w1, stride=2)
        self.enc1 = _conv(w1, w1)
        self.down2 = _conv(w1, w2, stride=2)
        self.enc2 = _conv(w2, w2)
        self.dec1 = nn.Sequential(_conv(w2 + w1, w1), _conv(w1, w1))
        self.dec0 = nn.Sequential(_conv(w1 + w0, w0), _conv(w0, w0))
        self.out = nn.Conv2d(w0, planes * BLOCK * BLOCK, 1)
        self.refine = nn.Sequential(nn.Conv2d(2 * planes, 16, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(16, planes, 3, padding=1))
        # Identity skip (learned gain): where the view already holds the face's detail (channel
        # removal keeps the high frequencies), the U-Net only has to add what is missing.
        self.skip = nn.Parameter(torch.ones(1, planes, 1, 1))
        # Channels-last weights and activations: the same numbers, 1.9x faster forward and
        # backward on a CPU (one thread, 16 rows of 112x96: 49 vs 93 ms; the full-resolution
        # refine convolutions, few channels on many pixels, gain most).
        self.to(memory_format=torch.channels_last)

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        b = F.pixel_unshuffle(x, BLOCK)
        return torch.cat([b, b.abs()], dim=1).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def set_input_scale(self, x: torch.Tensor) -> None:
        """Fix the per-channel input scale from sample encoded views ``[N, P, H, W]``."""
        self.input_scale.copy_(self._blocks(x).std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(self._blocks(x) / self.input_scale)
        e0 = self.enc0(h)
        e1 = self.enc1(self.down1(e0))
        e2 = self.enc2(self.down2(e1))
        d1 = self.dec1(torch.cat([F.interpolate(e2, size=e1.shape[-2:], mode="nearest"), e1], 1))
        d0 = self.dec0(torch.cat([F.interpolate(d1, size=e0.shape[-2:], mode="nearest"), e0], 1))
        coarse = F.pixel_shuffle(self.out(d0), BLOCK) + self.skip * x
        return torch.tanh(coarse + self.refine(torch.cat([coarse, x], 1).contiguous(memory_format=torch.channels_last)))


@torch.no_grad()
def decode_encoded(decoder: BlockUNet, to_pixels, encoded: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Encoded tensors -> faces: each ``chunk`` through ``to_pixels`` (the defence's person's
    view) and the decoder, on the decoder's device; the faces come back on ``encoded``'s."""
    device = next(decoder.parameters()).device
    return torch.cat([decoder(to_pixels(encoded[i : i + chunk]).to(device)).to(encoded.device) for i in range(0, encoded.shape[0], chunk)])


class PatchCritic(nn.Module):
    """pix2pix PatchGAN at half resolution: (encoded view, face) -> a grid of real/fake logits."""

    def __init__(self, planes: int = 1, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(2 * planes, width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.GroupNorm(8, 2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, 1, 1),
            nn.GroupNorm(8, 2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 1, 3, 1, 1),
        )

    def forward(self, view: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        scale = view.detach().flatten(1).std(dim=1).clamp_min(1e-4).view(-1, 1, 1, 1)
        return self.net(torch.cat([view / scale, face], 1))

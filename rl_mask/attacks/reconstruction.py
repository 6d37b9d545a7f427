"""Reconstruction attacks: a decoder trained on public (protected, original) pairs.

The attacker runs a defence on its own public faces (identities disjoint from the private
ones) to make (encoded, dominant original) pairs, trains a ``BlockUNet`` to map one to the
other, and applies it to the protected private training tensors that left the data owner.

- ``WhiteBoxReconstruction`` knows the deployed defence and all its parameters (channels,
  k or k distribution, weight law, cap, sign flips): it simulates exactly that defence.
- ``BlackBoxReconstruction`` knows only what crossed: the tensors' domain (block-DCT
  channels or pixels), shape, and the messages themselves. On frequency tensors it
  *estimates* which channels were kept from the crossed inputs and weights
  (``rl_mask.attacks.channels``), then trains on MixUp of ``guess_k`` faces (default 3) with
  Dirichlet(1) weights capped at 0.65, without sign flips, over the estimated channels (one
  decoder per distinct estimate). On pixel tensors it trains on ``guess_defence``.
  ``guess_defence`` (the former fixed guess: the lowest channels in row-major rather than
  zig-zag order) is kept for reference and for pixel defences.
"""

from __future__ import annotations

import copy
import json

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rl_mask import fit_cache
from rl_mask.attacks.base import Attack, AttackTarget
from rl_mask.attacks.channels import estimate_channels, removed_from
from rl_mask.attacks.decoder import BlockUNet, PatchCritic, decode_encoded
from rl_mask.mask.augment import augment, contrast_brightness
from rl_mask.mask.defences.base import Defence
from rl_mask.mask.defences.hybrid import HybridDefence
from rl_mask.mask.defences.pixel import PixelDefence
from rl_mask.mask.freq import CHANNELS_PER_PLANE, ZIGZAG
from rl_mask.mask.masking import HybridMask
from rl_mask.reconstruction import Reconstruction


def light_jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild contrast/brightness changes: more varied public pairs from few faces."""
    return contrast_brightness(images, generator, contrast_min=0.8, contrast_width=0.4, brightness=0.1).clamp(-1, 1)


def simulation_key(defence: Defence) -> str:
    """The parameters that decide how a defence encodes training data (not its name, not how
    the FR model is trained): equal keys mean identical simulations."""
    d = {k: v for k, v in defence.simulation_params().items() if k not in ("name", "dp")}
    return json.dumps({"domain": defence.input_kind, **d}, sort_keys=True)


def row_major_guess(n_removed: int) -> list[int]:
    """Zig-zag indices of the ``n_removed`` lowest coefficients in row-major block order."""
    zigzag_index = {rc: i for i, rc in enumerate(ZIGZAG)}
    return sorted(zigzag_index[(i // 8, i % 8)] for i in range(n_removed))


def guess_defence(defence: Defence, planes: int, height: int, width: int, guess_k: int = 3) -> Defence:
    """The black-box attacker's guess from what the protected tensors reveal (see module doc)."""
    if defence.input_kind == "freq":
        channels, h, _ = defence.input_shape(planes, height, width)
        n_removed = CHANNELS_PER_PLANE - channels // planes
        upsample = max(1, h * 8 // height)
        mask = HybridMask(row_major_guess(n_removed), planes=planes, weights="dirichlet", alpha=1.0, cap=0.65, upsample=upsample)
        return HybridDefence("blackbox-guess", mask, [guess_k])
    return PixelDefence("blackbox-guess", k=guess_k, weights="dirichlet", alpha=1.0, cap=0.65)


def train_decoder(
    simulated: Defence,
    public: torch.Tensor,
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    gan_weight: float = 0.0,
    seed: int = 0,
    progress: bool = False,
    desc: str = "decoder",
) -> BlockUNet:
    """Train a decoder on ``simulated``-protected public faces -> their dominant originals.

    Each step draws a batch of public faces, augments them (flip, shift, scale, rotation,
    contrast), encodes the batch with the simulated defence (mixing partners come from the
    same batch) and regresses the dominant face with L1 (+ ``gan_weight`` x pix2pix loss).
    Kept by ``rl_mask.fit_cache`` when a cache folder is set (a sweep's trials share decoders).
    """
    planes = public.shape[1]
    return fit_cache.fitted(
        "decoder",
        lambda: fit_cache.fingerprint(simulation_key(simulated), encoding_sample(simulated, public), public, steps, batch_size, lr, gan_weight, seed),
        lambda: BlockUNet(planes),
        lambda: _fit_decoder(simulated, public, steps, batch_size, lr, gan_weight, seed, progress, desc),
    )


def encoding_sample(simulated: Defence, public: torch.Tensor) -> torch.Tensor:
    """A few public faces through a copy of ``simulated``'s training encoding with a fixed
    generator: two defences that encode differently (mask, key, flips) differ here, and
    neither the global RNG nor a generator the defence holds (its held-out flips) moves."""
    with torch.random.fork_rng(devices=[]):
        n = min(8, public.shape[0])
        batch = copy.deepcopy(simulated).encode_train(public[:n], torch.arange(n), torch.Generator().manual_seed(0))
    return batch.inputs


def _fit_decoder(simulated: Defence, public: torch.Tensor, steps: int, batch_size: int, lr: float, gan_weight: float, seed: int, progress: bool, desc: str) -> BlockUNet:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    n = public.shape[0]
    batch_size = min(batch_size, n)
    labels = torch.arange(n)
    decoder = BlockUNet(public.shape[1])

    def pairs() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randperm(n, generator=generator)[:batch_size]
        faces = light_jitter(augment(public[idx], generator), generator)
        batch = simulated.encode_train(faces, labels[idx], generator)
        return simulated.to_pixels(batch.inputs), faces[batch.dominant_source]

    decoder.set_input_scale(torch.cat([pairs()[0] for _ in range(4)]))
    opt = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    critic = opt_c = None
    if gan_weight > 0:
        critic = PatchCritic(public.shape[1])
        opt_c = torch.optim.Adam(critic.parameters(), lr=lr / 2, betas=(0.5, 0.999))
    decoder.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True, leave=False)
    for _ in bar:
        view, target = pairs()
        out = decoder(view)
        loss = F.l1_loss(out, target)
        if critic is not None:
            real = critic(view, target)
            fake = critic(view, out.detach())
            loss_c = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
            adv = critic(view, out)
            loss = loss + gan_weight * F.binary_cross_entropy_with_logits(adv, torch.ones_like(adv))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(l1=f"{F.l1_loss(out.detach(), target):.3f}")
    return decoder.eval()


class DecoderAttack(Attack):
    """An attack that ends in a decoder trained on public faces: its training budget."""

    kind = "reconstruction"

    def __init__(self, steps: int = 1500, batch_size: int = 32, lr: float = 2e-3, gan_weight: float = 0.0, seed: int = 0):
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.gan_weight = gan_weight
        self.seed = seed
        self.decoder: BlockUNet | None = None

    @property
    def budget(self) -> tuple:
        return (self.steps, self.batch_size, self.lr, self.gan_weight, self.seed)


class WhiteBoxReconstruction(DecoderAttack):
    """Knows the deployed defence and its parameters; simulates exactly it on public faces."""

    name = "whitebox"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.simulated: Defence | None = None

    def simulate(self, defence: Defence, planes: int, height: int, width: int) -> Defence:
        return defence

    def fit(self, public: torch.Tensor, defence: Defence, progress: bool = False) -> "WhiteBoxReconstruction":
        _, p, h, w = public.shape
        self.simulated = self.simulate(defence, p, h, w)
        self.decoder = train_decoder(
            self.simulated, public, self.steps, self.batch_size, self.lr, self.gan_weight, self.seed, progress, desc=f"{self.name} decoder"
        )
        return self

    @torch.no_grad()
    def attack(self, target: AttackTarget, progress: bool = False) -> Reconstruction:
        if self.decoder is None or self.simulated is None:
            raise RuntimeError(f"{self.name}: call fit() before attack()")
        return self.decode(target, self.decoder, self.simulated, target.joined().inputs)

    @torch.no_grad()
    def decode(self, target: AttackTarget, decoder: BlockUNet, simulated: Defence, inputs: torch.Tensor) -> Reconstruction:
        """One reconstruction per crossed row: its dominant face (the largest crossed weight)."""
        joined = target.joined()
        return Reconstruction(decode_encoded(decoder, simulated.to_pixels, inputs), joined.dominant_label.clone(), self.kind, rows=torch.arange(len(joined)))

    def fit_key(self, defence: Defence, image_shape: tuple[int, int, int]) -> str:
        budget = self.budget
        return f"{self.name}:{budget}:{simulation_key(defence)}"

    def describe(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "steps": self.steps, "batch_size": self.batch_size, "gan_weight": self.gan_weight}
        if self.simulated is not None:
            d["trained_on"] = self.simulated.describe()
        return d


class BlackBoxReconstruction(WhiteBoxReconstruction):
    """Knows only what crossed; estimates the kept channels from it (module doc)."""

    name = "blackbox"

    def __init__(self, *args, guess_k: int = 3, **kwargs):
        super().__init__(*args, **kwargs)
        self.guess_k = guess_k
        self.public: torch.Tensor | None = None
        self.estimated: list[int] | None = None  # zig-zag index of each crossed channel (frequency tensors)
        self._decoders: dict[tuple, tuple[Defence, BlockUNet]] = {}
        self._fitted_freq = False

    def simulate(self, defence: Defence, planes: int, height: int, width: int) -> Defence:
        return guess_defence(defence, planes, height, width, self.guess_k)

    def fit(self, public: torch.Tensor, defence: Defence, progress: bool = False) -> "BlackBoxReconstruction":
        """Pixel tensors: train on the guess now. Frequency tensors: the channel estimate
        needs the crossed messages, so the decoder is trained at attack time."""
        self.public = public
        if defence.input_kind == "freq":
            self.simulated = self.decoder = None
            self._fitted_freq = True
            return self
        self._fitted_freq = False
        return super().fit(public, defence, progress)

    def estimate(self, target: AttackTarget) -> list[int]:
        """The crossed channels' zig-zag indices, from the crossed tensors alone."""
        joined = target.joined()
        planes = self.public.shape[1]
        return estimate_channels(joined.inputs, joined.weights, self.public, planes, seed=self.seed)

    @torch.no_grad()
    def attack(self, target: AttackTarget, progress: bool = False) -> Reconstruction:
        if self.public is None:
            raise RuntimeError(f"{self.name}: call fit() before attack()")
        if not self._fitted_freq:
            return super().attack(target, progress)
        self.estimated = self.estimate(target)
        order = sorted(range(len(self.estimated)), key=lambda i: self.estimated[i])
        kept = tuple(self.estimated[i] for i in order)
        if kept not in self._decoders:
            _, p, h, _ = self.public.shape
            inputs = target.joined().inputs
            upsample = max(1, round(inputs.shape[-2] * 8 / h))
            mask = HybridMask(removed_from(list(kept)), planes=p, weights="dirichlet", alpha=1.0, cap=0.65, upsample=upsample)
            simulated = HybridDefence("blackbox-estimate", mask, [self.guess_k])
            with torch.enable_grad():
                decoder = train_decoder(simulated, self.public, self.steps, self.batch_size, self.lr, self.gan_weight, self.seed, progress, desc=f"{self.name} decoder")
            self._decoders[kept] = (simulated, decoder)
        self.simulated, self.decoder = self._decoders[kept]
        inputs = target.joined().inputs
        per_plane = len(order)
        planes = inputs.shape[1] // per_plane
        index = torch.tensor([p * per_plane + i for p in range(planes) for i in order])
        return self.decode(target, self.decoder, self.simulated, inputs[:, index])

    def fit_key(self, defence: Defence, image_shape: tuple[int, int, int]) -> str:
        # The guess depends only on the domain and the tensor shape, so one decoder serves
        # every defence that looks alike.
        budget = (*self.budget, self.guess_k)
        return f"{self.name}:{budget}:{defence.input_kind}:{defence.input_shape(*image_shape)}"

    def describe(self) -> dict:
        d = {**super().describe(), "guess_k": self.guess_k}
        if self.estimated is not None:
            d["estimated_removed_channels"] = removed_from(self.estimated)
        return d

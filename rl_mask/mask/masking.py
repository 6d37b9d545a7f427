"""Hybrid masking: frequency channel removal followed by MixUp of k masked faces.

``HybridMask`` is what the data owner applies before a batch leaves it:

1. block DCT (``rl_mask.mask.freq``), 64 zig-zag channels per colour plane;
2. removal of a configured channel set (default: DC and the lowest zig-zag channels, which
   carry most of what a person sees, as in PPFR-FD);
3. MixUp of k masked faces of the batch: each output sample mixes its own face with k-1
   distinct partners, weights from Dirichlet(alpha) or InstaHide-style normalised |N(0,1)|,
   redrawn until no weight exceeds ``cap``; optional random sign flips of every coefficient.

The result holds the message that crosses and its provenance (which faces, which weights),
known to whoever ran the mask: the data owner for its private batches (its judge and the
benchmark read the dominant face), an attacker for the batches it simulates on public faces. ``k = 1`` is masking without mixing (and
without sign flips): what held-out and inference images get.

``mix`` is shared with the pixel-domain baselines (MixUp, InstaHide).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import numpy as np
import torch

from rl_mask.mask.freq import CHANNELS_PER_PLANE, block_dct, block_idct
from rl_mask.mask.settings import MaskSettings
from rl_mask.protocol import ProtectedBatch

#: Default removed channels (zig-zag indices per plane): DC and the 5 lowest AC channels.
DEFAULT_REMOVED_CHANNELS: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
WEIGHT_KINDS = ("dirichlet", "instahide")
_MAX_WEIGHT_REDRAWS = 10_000


class CoefficientKey(Protocol):
    """A secret invertible transform of the kept coefficients, held by the data owner
    (``rl_mask.owner.key.OwnerKey``); the public algorithm only applies one it is given."""

    def apply(self, x: torch.Tensor) -> torch.Tensor: ...

    def invert(self, x: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class MaskedBatch:
    """A protected batch and its provenance: the data owner's own record of a batch.

    ``sent`` is the ``ProtectedBatch`` exactly as it crosses to the FR server. The owner adds
    what never crosses: ``sources[i, j]``, the position (in the batch given to the mask) of
    the face in column j of row i; the per-batch ``settings`` it was made with
    (``rl_mask.mask.settings``), if any; and, only where they differ from what was sent
    (``hard_labels``: just the dominant identity crosses, with weight 1), every mixed face's
    ``owner_labels`` and ``owner_weights``. ``labels`` / ``weights`` read the owner's full record.
    """

    sent: ProtectedBatch
    sources: torch.Tensor  # [B, k] long
    settings: MaskSettings | None = None
    owner_labels: torch.Tensor | None = None  # [B, k] long, when not sent as they are
    owner_weights: torch.Tensor | None = None  # [B, k] float, rows sum to 1

    def __post_init__(self) -> None:
        if (self.owner_labels is None) != (self.owner_weights is None):
            raise ValueError("MaskedBatch: owner_labels and owner_weights are kept together (both or neither)")

    @classmethod
    def of(cls, inputs: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, sources: torch.Tensor, *, hard_labels: bool = False, settings: MaskSettings | None = None) -> "MaskedBatch":
        """The record of mixed ``inputs`` whose row i mixes faces ``sources[i]`` (identities
        ``labels[i]``) with ``weights[i]``; ``hard_labels``: only each row's dominant identity crosses."""
        if not hard_labels:
            return cls(ProtectedBatch(inputs, labels, weights), sources, settings)
        dominant = labels.gather(1, weights.argmax(dim=1, keepdim=True))
        sent = ProtectedBatch(inputs, dominant, torch.ones(labels.shape[0], 1, dtype=weights.dtype, device=weights.device))
        return cls(sent, sources, settings, labels, weights)

    @property
    def inputs(self) -> torch.Tensor:
        return self.sent.inputs

    @property
    def labels(self) -> torch.Tensor:
        """Every mixed face's identity, ``[B, k]`` (also where only the dominant one crossed)."""
        return self.sent.labels if self.owner_labels is None else self.owner_labels

    @property
    def weights(self) -> torch.Tensor:
        """Every mixed face's weight, ``[B, k]``."""
        return self.sent.weights if self.owner_weights is None else self.owner_weights

    @property
    def hard_labels(self) -> bool:
        return self.owner_labels is not None

    @property
    def k(self) -> int:
        return int(self.weights.shape[1])

    def soft_labels(self, num_classes: int) -> torch.Tensor:
        """The weighted sum of the one-hot labels of the mixed faces, ``[B, num_classes]``."""
        out = torch.zeros(self.labels.shape[0], num_classes, dtype=self.weights.dtype, device=self.weights.device)
        return out.scatter_add_(1, self.labels, self.weights)

    @property
    def dominant(self) -> torch.Tensor:
        """Column (0..k-1) of the largest weight of each sample."""
        return self.weights.argmax(dim=1)

    @property
    def dominant_source(self) -> torch.Tensor:
        return self.sources.gather(1, self.dominant[:, None]).squeeze(1)

    @property
    def dominant_label(self) -> torch.Tensor:
        return self.labels.gather(1, self.dominant[:, None]).squeeze(1)

    def with_sources(self, ids: torch.Tensor) -> "MaskedBatch":
        """Provenance in another index space (e.g. data-set indices of the batch's faces)."""
        return replace(self, sources=ids.to(self.sources.device)[self.sources])

    def with_settings(self, settings: MaskSettings) -> "MaskedBatch":
        """This batch as made with ``settings`` (``labels='hard'``: only the dominant identity crosses)."""
        return MaskedBatch.of(self.inputs, self.labels, self.weights, self.sources, hard_labels=settings.labels == "hard", settings=settings)

    def protected(self) -> ProtectedBatch:
        """The message that crosses to the FR server: everything but the provenance."""
        return self.sent

    def to(self, device: torch.device | str) -> "MaskedBatch":
        owner = {name: getattr(self, name).to(device) for name in ("owner_labels", "owner_weights") if getattr(self, name) is not None}
        return replace(self, sent=self.sent.to(device), sources=self.sources.to(device), **owner)


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy generator seeded from the torch one, so one torch seed drives everything."""
    seed = torch.randint(0, 2**62, (1,), generator=generator).item()
    return np.random.default_rng(seed)


def sample_partners(batch_size: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, k]`` batch positions: column 0 is the sample itself, the rest distinct others."""
    if not 1 <= k <= batch_size:
        raise ValueError(f"k={k} needs 1 <= k <= batch size ({batch_size})")
    own = torch.arange(batch_size)[:, None]
    if k == 1:
        return own
    scores = torch.rand(batch_size, batch_size, generator=generator)
    scores.fill_diagonal_(2.0)  # never pick yourself as a partner
    partners = scores.topk(k - 1, dim=1, largest=False).indices
    return torch.cat([own, partners], dim=1)


def sample_weights(
    n: int,
    k: int,
    kind: str = "dirichlet",
    alpha: float = 1.0,
    cap: float = 0.65,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``[n, k]`` mixing weights on the simplex, no weight above ``cap`` (redrawn until so)."""
    if k == 1:
        return torch.ones(n, 1)
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"weights kind {kind!r} is not one of {WEIGHT_KINDS}")
    if not 1.0 / k < cap <= 1.0:
        raise ValueError(f"cap={cap} must lie in (1/k, 1] = ({1.0 / k:.4f}, 1] for k={k}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = _numpy_rng(generator)

    def draw(m: int) -> np.ndarray:
        if kind == "dirichlet":
            return rng.dirichlet(np.full(k, alpha), size=m)
        w = np.abs(rng.standard_normal((m, k)))
        return w / w.sum(axis=1, keepdims=True)

    w = draw(n)
    for _ in range(_MAX_WEIGHT_REDRAWS):
        bad = np.flatnonzero(w.max(axis=1) > cap)
        if bad.size == 0:
            return torch.from_numpy(w).float()
        w[bad] = draw(bad.size)
    raise RuntimeError(f"could not draw {kind} weights with cap {cap} for k={k}; raise the cap")


def flip_mask(n: int, p: float, generator: torch.Generator | None = None) -> np.ndarray:
    """``n`` independent coin flips, each True with probability ``p`` (a numpy bool array).

    Drawn as raw 64-bit words of numpy's PCG64, seeded from ``generator`` (one torch seed
    still drives everything): about 5x faster than ``torch.rand`` on CPU, and this runs on
    the owner's critical path (every env step's protection). ``p = 0.5`` takes one random bit
    per coefficient; any other ``p`` compares 32 random bits with ``p * 2**32`` (finer than
    the 24-bit floats of ``torch.rand``)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability {p} is not in [0, 1]")
    if p in (0.0, 1.0):
        return np.full(n, p == 1.0)
    raw = _numpy_rng(generator).bit_generator.random_raw
    if p == 0.5:
        return np.unpackbits(raw((n + 63) // 64).view(np.uint8), count=n).view(np.bool_)
    return raw((n + 1) // 2).view(np.uint32)[:n] < np.uint32(round(p * 2.0**32))


def flip_signs(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` with each coefficient's sign flipped independently with probability ``p``
    (``flip_mask``); a float32 CPU tensor outside autograd has its sign bits flipped in place
    of a multiply."""
    flipped = flip_mask(x.numel(), p, generator)
    if x.dtype == torch.float32 and x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled()):
        bits = flipped.astype(np.int32)
        np.left_shift(bits, 31, out=bits)
        np.bitwise_xor(bits, x.detach().contiguous().numpy().reshape(-1).view(np.int32), out=bits)
        return torch.from_numpy(bits.view(np.float32)).view(x.shape)
    return x * (1 - 2 * torch.from_numpy(flipped).view(x.shape).to(x.device, x.dtype))


def mix(
    x: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    *,
    weights: str = "dirichlet",
    alpha: float = 1.0,
    cap: float = 0.65,
    sign_flip: bool = False,
    flip_prob: float | None = None,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """MixUp of ``k`` samples of ``x`` (any domain); k = 1 returns ``x`` as it is.

    Mixed rows get each coefficient's sign flipped with probability ``flip_prob`` (default:
    0.5 with ``sign_flip``, else 0)."""
    p_flip = (0.5 if sign_flip else 0.0) if flip_prob is None else float(flip_prob)
    b = x.shape[0]
    sources = sample_partners(b, k, generator)
    w = sample_weights(b, k, weights, alpha, cap, generator)
    if k == 1:
        out = x
    else:
        w_dev = w.to(device=x.device, dtype=x.dtype)
        src_dev = sources.to(x.device)
        flat = x.reshape(b, -1)
        # index_select + in-place multiply-adds: ~4x faster than fancy indexing on CPU
        out = flat.index_select(0, src_dev[:, 0]).mul_(w_dev[:, :1])
        for j in range(1, k):
            out.addcmul_(flat.index_select(0, src_dev[:, j]), w_dev[:, j : j + 1])
        out = out.view_as(x)
        if p_flip > 0:
            out = flip_signs(out, p_flip, generator)
    labels = labels.to(sources.device)
    return MaskedBatch.of(out, labels[sources], w, sources)


def kept_channel_indices(removed: Sequence[int], planes: int) -> torch.Tensor:
    """Indices (over ``planes * 64`` channels) that survive removal of ``removed`` per plane."""
    removed_set = set(int(c) for c in removed)
    bad = [c for c in removed_set if not 0 <= c < CHANNELS_PER_PLANE]
    if bad:
        raise ValueError(f"removed channels {sorted(bad)} are outside 0..{CHANNELS_PER_PLANE - 1}")
    if len(removed_set) >= CHANNELS_PER_PLANE:
        raise ValueError("removing all 64 channels leaves nothing to train on")
    kept = [p * CHANNELS_PER_PLANE + c for p in range(planes) for c in range(CHANNELS_PER_PLANE) if c not in removed_set]
    return torch.tensor(kept, dtype=torch.long)


class HybridMask:
    """Channel removal + frequency MixUp (see the module docstring)."""

    def __init__(
        self,
        removed_channels: Sequence[int] = DEFAULT_REMOVED_CHANNELS,
        planes: int = 1,
        weights: str = "dirichlet",
        alpha: float = 1.0,
        cap: float = 0.65,
        sign_flip: bool = False,
        upsample: int = 1,
        key: CoefficientKey | None = None,
    ):
        if weights not in WEIGHT_KINDS:
            raise ValueError(f"weights kind {weights!r} is not one of {WEIGHT_KINDS}")
        self.removed_channels = tuple(sorted(set(int(c) for c in removed_channels)))
        self.planes = planes
        self.weights = weights
        self.alpha = alpha
        self.cap = cap
        self.sign_flip = sign_flip
        self.upsample = upsample
        self.key = key  # owner-held (rl_mask.owner.key): applied in ``transform``, so to every message
        self.kept = kept_channel_indices(self.removed_channels, planes)
        self._kept_per_plane = self.kept[: self.kept.numel() // planes]

    @classmethod
    def from_config(cls, m, planes: int, key: CoefficientKey | None = None) -> "HybridMask":
        """The mask a ``MaskConfig``'s public fields describe, for ``planes`` colour planes,
        with ``key`` (the owner's) or without it (the algorithm as anyone can run it)."""
        return cls(removed_channels=m.removed_channels, planes=planes, weights=m.weights, alpha=m.alpha, cap=m.cap, sign_flip=m.sign_flip, upsample=m.upsample, key=key)

    @property
    def num_channels(self) -> int:
        """Channels of the masked tensor."""
        return int(self.kept.numel())

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """Channel removal only (k = 1): ``[B, P, H, W]`` -> ``[B, kept, h, w]``, then the
        owner's key if it has one (the one encoding every message goes through)."""
        out = block_dct(images, self.upsample, keep=self._kept_per_plane)
        return out if self.key is None else self.key.apply(out)

    def public(self) -> "HybridMask":
        """This mask as anyone without the owner's key can run it (the key left out)."""
        if self.key is None:
            return self
        out = copy.copy(self)
        out.key = None
        return out

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
    ) -> MaskedBatch:
        """Mask then mix ``k`` faces of the batch ``images [B, P, H, W]`` with ``labels [B]``."""
        self._check_planes(images)
        return self.mix_transformed(self.transform(images), labels, k, generator)

    def mix_transformed(
        self, masked: torch.Tensor, labels: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> MaskedBatch:
        """The mixing half of ``__call__`` on an already channel-removed batch."""
        return mix(
            masked,
            labels,
            k,
            weights=self.weights,
            alpha=self.alpha,
            cap=self.cap,
            sign_flip=self.sign_flip,
            generator=generator,
        )

    def _check_planes(self, images: torch.Tensor) -> None:
        if images.shape[1] != self.planes:
            raise ValueError(f"HybridMask is set for {self.planes} colour plane(s), images have {images.shape[1]}")

    @property
    def kept_per_plane(self) -> int:
        return int(self._kept_per_plane.numel())

    def extra_removed_channels(self, extra: int) -> torch.Tensor:
        """Positions (in the masked tensor) of the ``extra`` lowest kept channels of each plane."""
        n = self.kept_per_plane
        return torch.tensor([p * n + j for p in range(self.planes) for j in range(extra)], dtype=torch.long)

    def remove_extra(self, masked: torch.Tensor, extra: int) -> torch.Tensor:
        """``masked`` (``transform``'s output) with its ``extra`` lowest kept channels of each
        plane zeroed too, out of place (a caller's tensor stays as it was); with a key, they
        are removed in the DCT basis."""
        if not extra:
            return masked
        channels = self.extra_removed_channels(extra).to(masked.device)
        return masked.index_fill(1, channels, 0.0) if self.key is None else self.key.zero_channels(masked, channels)

    def apply(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        settings: MaskSettings,
        generator: torch.Generator | None = None,
        transformed: torch.Tensor | None = None,
    ) -> MaskedBatch:
        """Protect a batch with one batch's knobs (``rl_mask.mask.settings``): remove, zero
        ``extra_removed`` more channels, mix ``k`` faces with Dirichlet(``alpha``) weights,
        flip signs with probability ``flip``; ``labels='hard'`` lets only the dominant identity cross.
        ``transformed``: ``transform(images)`` if the caller has it already (not modified)."""
        self._check_planes(images)
        settings.check(images.shape[0], self.kept_per_plane, self.cap)
        masked = self.remove_extra(self.transform(images) if transformed is None else transformed, settings.extra_removed)
        out = mix(masked, labels, settings.k, weights=self.weights, alpha=settings.alpha, cap=self.cap, flip_prob=settings.flip, generator=generator)
        return out.with_settings(settings)

    def to_pixels(self, masked: torch.Tensor) -> torch.Tensor:
        """What a person sees of a masked tensor: removed channels zeroed, inverse DCT."""
        b, _, h, w = masked.shape
        full = masked.new_zeros(b, self.planes * CHANNELS_PER_PLANE, h, w)
        full[:, self.kept.to(masked.device)] = masked
        return block_idct(full, self.upsample)

"""Undoing frequency (or pixel) MixUp once the attacker knows which faces a row mixes.

A protected batch without sign flips is a linear system ``X = M S``: row i of ``M`` holds
row i's crossed weights at the batch positions of the faces it mixes (its own face at i,
its partners elsewhere). Every position's own face is in its own row, so ``M`` is square
(B x B) and, for the weights drawn here, invertible: knowing the positions, ``S`` (the
channel-removed faces) follows exactly. What is then missing is only what channel removal
took: a decoder trained on k = 1 (mask-only) protected public faces maps each unmixed face
to pixels, the white-box decoder for exactly that input.

Sign flips (random sign per coefficient) break the linearity: ``X`` is no longer ``M S``.
"""

from __future__ import annotations

import torch

from rl_mask.attacks.base import AttackTarget
from rl_mask.attacks.decoder import BlockUNet, decode_encoded
from rl_mask.attacks.reconstruction import DecoderAttack, simulation_key, train_decoder
from rl_mask.mask.defences.base import Defence
from rl_mask.mask.defences.hybrid import HybridDefence
from rl_mask.mask.settings import MaskSettings
from rl_mask.reconstruction import Reconstruction

#: Decoders for unmixed faces, shared by the attacks that unmix (same budget, same mask).
_DECODERS: dict[str, tuple[Defence, BlockUNet | None]] = {}


def mixing_matrix(weights: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` float64: row i puts ``weights[i, j]`` at column ``assignment[i, j]``."""
    b = weights.shape[0]
    m = torch.zeros(b, b, dtype=torch.float64)
    keep = assignment >= 0
    rows = torch.arange(b)[:, None].expand_as(assignment)
    return m.index_put_((rows[keep], assignment[keep]), weights.double()[keep], accumulate=True)


def unmix(inputs: torch.Tensor, weights: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """The faces ``S`` with ``inputs = M S`` (``M = mixing_matrix(weights, assignment)``)."""
    x = inputs.reshape(inputs.shape[0], -1).double()
    s = torch.linalg.lstsq(mixing_matrix(weights, assignment), x).solution
    return s.to(inputs.dtype).view_as(inputs)


def unmixed_view(defence: Defence) -> Defence:
    """The deployed encoding without mixing: what an unmixed row is an instance of."""
    if isinstance(defence, HybridDefence):
        extras = sorted({s.extra_removed for s in defence.settings_pool})
        if extras and extras != [0]:  # the policy zeroes more channels in some batches
            pool = [MaskSettings(k=1, extra_removed=x) for x in extras]
            return HybridDefence(f"{defence.name}-unmixed", defence.mask, [1], settings_pool=pool)
        return HybridDefence(f"{defence.name}-unmixed", defence.mask, [1])
    return defence  # pixel defences: an unmixed row is the face itself


class UnmixingAttack(DecoderAttack):
    """Shared by attacks that unmix: fit = the k = 1 decoder of the deployed (white-box) mask."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.view: Defence | None = None

    def fit(self, public: torch.Tensor, defence: Defence, progress: bool = False) -> "UnmixingAttack":
        view = unmixed_view(defence)
        key = f"{self.budget}:{simulation_key(view)}"
        if key not in _DECODERS:
            decoder = None
            if view.input_kind == "freq":
                decoder = train_decoder(view, public, self.steps, self.batch_size, self.lr, self.gan_weight, self.seed, progress, desc=f"{self.name} decoder")
            _DECODERS[key] = (view, decoder)
        self.view, self.decoder = _DECODERS[key]
        return self

    def _check_fitted(self) -> None:
        if self.view is None:
            raise RuntimeError(f"{self.name}: call fit() before attack()")

    @torch.no_grad()
    def to_faces(self, unmixed: torch.Tensor) -> torch.Tensor:
        """Unmixed encoded faces -> pixel faces in [-1, 1]."""
        if self.decoder is None:
            return unmixed.clamp(-1, 1)
        return decode_encoded(self.decoder, self.view.to_pixels, unmixed)

    def reconstruct(self, target: AttackTarget, assignments: list[torch.Tensor]) -> Reconstruction:
        """One face per crossed row: that row's own face (column 0), given per-message
        assignments ``[B, k]`` of batch positions."""
        faces = [unmix(b.inputs, b.weights, a) for b, a in zip(target.crossed, assignments) if len(b)]
        joined = target.joined()
        return Reconstruction(self.to_faces(torch.cat(faces)), joined.labels[:, 0].clone(), self.kind, rows=torch.arange(len(joined)))

    def fit_key(self, defence: Defence, image_shape: tuple[int, int, int]) -> str:
        return f"{self.name}:{self.budget}:{simulation_key(unmixed_view(defence))}"

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "decoder_steps": self.steps, "what_if": self.what_if}

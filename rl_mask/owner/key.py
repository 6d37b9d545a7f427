"""The owner-held key: a secret orthogonal transform of the kept DCT coefficients.

Everything else about the encoding is public (Kerckhoffs), so without a secret the FR server
can encode photos of candidates itself and link them to the private labels (statistics of
the crossed rows, or the trained model). The key is drawn from a seed only the data owner
holds and is applied by the owner to every message that crosses (it lives in
``HybridMask.transform``, the one encoding that training batches, evaluation sets and
inference probes all go through), so the FR network trains under it and serves only key
holders, as in cancelable biometrics.

The constructions (``kind``):

- ``channels``: one Haar-random orthogonal ``C x C`` mixing of the kept channels, the same at
  every block position. A convolution is linear in its input channels, so the FR network's
  first layer can absorb it: no utility is lost by construction.
- ``positions``: a different orthogonal mixing at every block position (the convolution can no
  longer absorb it: utility is at risk).
- ``scramble``: a secret permutation of every kept coefficient (channel and block position
  alike) with secret signs. It keeps no block position's energy together, so nothing local
  survives it; a convolution cannot learn through it, the dense ``model.arch: mlp`` learns
  exactly as without it (its first layer is permuted with the input).
- ``dense``: ``DENSE_ROUNDS`` rounds of (a secret permutation of every kept coefficient, then a
  Haar-random orthogonal mixing of each consecutive group of ``C``): every keyed coefficient is
  a mixture of coefficients from all over the face, so no block, position or channel survives
  it, and the sign flips that follow (mixing applies them in the keyed basis) leave the server
  only the magnitudes of random projections. It needs ``model.arch: mlp`` as well; the
  network no longer learns exactly as without it (measured, README).

The first two preserve each block position's energy (the sum of squares of its kept
coefficients): any orthogonal per-position transform does. That invariant is public: it is what
the benchmark's ``link-energy`` attack reads. A rotation is also identifiable from second-order
statistics of what crosses up to signs (``rl_mask.attacks.key_recovery``); a permutation
from the statistics of each coefficient and their correlations
(``rl_mask.attacks.key_recovery``).

The ``dense`` key keeps only each row's total energy (it is orthogonal); the sign flips of
mixing then act on its outputs, not on the coefficients, so even the key holder could not
invert a flipped row: what any reader of it has is the magnitudes of ``C * h * w`` random
projections of the mixture, which the network learns from (``rl_mask.attacks.key_recovery``
says what the server can estimate of it).

Rotating the key changes the input basis the network was trained in: a new key needs a new
(or re-trained) FR network; old messages and the old model stop matching.
"""

from __future__ import annotations

import torch

from rl_mask.config import KEY_KINDS

#: Rounds of the ``dense`` key: after r rounds a keyed coefficient mixes up to ``C ** r`` inputs
#: (3 rounds: more than every kept coefficient of a 112 x 92 grey face, 58 x 168 with the default removed channels).
DENSE_ROUNDS = 3


def haar_orthogonal(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``[count, n, n]`` Haar-distributed orthogonal matrices (QR of a Gaussian, signs fixed)."""
    g = torch.randn(count, n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


class OwnerKey:
    """A secret orthogonal transform of ``[B, C, h, w]`` coefficient tensors, from ``seed``.

    The matrices are drawn lazily for each tensor shape (the grid depends on the face size),
    always from the same seed, so the owner can re-create the key from the seed alone."""

    def __init__(self, seed: int, kind: str = "channels"):
        if kind not in KEY_KINDS:
            raise ValueError(f"mask key kind {kind!r} is not one of {KEY_KINDS}")
        self.seed = int(seed)
        self.kind = kind
        self._cache: dict[tuple[int, int, int], torch.Tensor] = {}
        self._scrambles: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._dense: dict[tuple[int, int, int], list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def matrices(self, channels: int, h: int, w: int) -> torch.Tensor:
        """``[1, C, C]`` (channels) or ``[h * w, C, C]`` (positions), float64 (not ``scramble``, ``dense``)."""
        shape = (channels, h, w) if self.kind == "positions" else (channels, 0, 0)
        if shape not in self._cache:
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + channels) % 2**63)
            self._cache[shape] = haar_orthogonal(channels, h * w if self.kind == "positions" else 1, gen)
        return self._cache[shape]

    def _generator(self, shape: tuple[int, int, int], salt: int = 0) -> torch.Generator:
        """The owner's draws for one coefficient grid ``(C, h, w)`` (``salt``: one stream per construction)."""
        channels, h, w = shape
        return torch.Generator().manual_seed((self.seed * 1_000_003 + channels * 7919 + h * 131 + w + salt) % 2**63)

    def scramble(self, channels: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``scramble``'s ``(permutation, signs)`` of the ``C * h * w`` coefficients: keyed
        coefficient ``i`` is ``signs[i] * x[permutation[i]]``."""
        shape = (channels, h, w)
        if shape not in self._scrambles:
            gen = self._generator(shape)
            n = channels * h * w
            perm = torch.randperm(n, generator=gen)
            signs = torch.randint(0, 2, (n,), generator=gen, dtype=torch.float64) * 2 - 1
            self._scrambles[shape] = (perm, signs)
        return self._scrambles[shape]

    def dense(self, channels: int, h: int, w: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``dense``'s rounds, each ``(permutation [C*h*w], rotations [h*w, C, C] float64)``: a
        round takes ``x[:, permutation]``, then mixes each consecutive group of ``C`` by its rotation."""
        shape = (channels, h, w)
        if shape not in self._dense:
            gen = self._generator(shape, salt=17)
            n = channels * h * w
            self._dense[shape] = [(torch.randperm(n, generator=gen), haar_orthogonal(channels, h * w, gen)) for _ in range(DENSE_ROUNDS)]
        return self._dense[shape]

    def _apply_dense(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, -1)
        rounds = self.dense(c, h, w)
        for perm, q in reversed(rounds) if inverse else rounds:
            perm, q = perm.to(x.device), q.to(device=x.device, dtype=x.dtype)
            if inverse:
                groups = torch.einsum("gji,bgj->bgi", q, flat.reshape(b, h * w, c)).reshape(b, -1)
                flat = torch.empty_like(groups).index_copy_(1, perm, groups)
            else:
                flat = torch.einsum("gij,bgj->bgi", q, flat[:, perm].reshape(b, h * w, c)).reshape(b, -1)
        return flat.reshape(b, c, h, w)

    def _apply(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.kind == "dense":
            return self._apply_dense(x, inverse)
        if self.kind == "scramble":
            perm, signs = self.scramble(c, h, w)
            perm, signs = perm.to(x.device), signs.to(device=x.device, dtype=x.dtype)
            flat = x.reshape(b, -1)
            if not inverse:
                return (flat[:, perm] * signs).reshape(b, c, h, w)
            return torch.empty_like(flat).index_copy_(1, perm, flat * signs).reshape(b, c, h, w)
        q = self.matrices(c, h, w).to(device=x.device, dtype=x.dtype)
        if inverse:
            q = q.transpose(1, 2)
        if self.kind == "channels":
            return torch.einsum("ij,bjhw->bihw", q[0], x)
        flat = x.reshape(b, c, h * w)
        return torch.einsum("pij,bjp->bip", q, flat).reshape(b, c, h, w)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Key the coefficients (the owner, before anything crosses)."""
        return self._apply(x, inverse=False)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Undo ``apply`` (owner side only: it needs the seed)."""
        return self._apply(x, inverse=True)

    def zero_channels(self, x: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """``apply(invert(x) with the DCT channels ``channels`` zeroed)``: keyed coefficients
        with more channels removed. For the rotation keys that is the projection
        ``x - Q_E Q_E^T x`` (``Q_E``: the key's columns of those channels), a rank-``|E|``
        update instead of two full transforms: it is on the adaptive env's critical path
        (the FR server waits for the batch it protects with the action's settings)."""
        if self.kind not in ("channels", "positions"):
            return self.apply(self.invert(x).index_fill(1, channels, 0.0))
        b, c, h, w = x.shape
        q = self.matrices(c, h, w)[:, :, channels.cpu()].to(device=x.device, dtype=x.dtype)  # [1 | h*w, C, E]
        if self.kind == "channels":
            removed = torch.einsum("je,bjhw->behw", q[0], x)
            return x - torch.einsum("ie,behw->bihw", q[0], removed)
        flat = x.reshape(b, c, h * w)
        removed = torch.einsum("pje,bjp->bep", q, flat)
        return (flat - torch.einsum("pie,bep->bip", q, removed)).reshape(b, c, h, w)

    def describe(self) -> dict:
        """What may be said about the key in a report: its construction, never its seed."""
        return {"kind": self.kind}

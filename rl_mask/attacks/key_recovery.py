"""Key recovery: estimate the owner's key (``rl_mask.owner.key``) from what crossed.

The key's construction is public, its seed is not. The server holds every crossed row and
inference probe, keyed, and can encode its own public faces without the key; what it can
estimate from the two is a ``KeyEstimate``, which attacks use to undo the key on crossed
messages (``undo``) or to key their own encodings (``apply``). ``+recover`` attacks are the
attacks on top of ``recover_key``.

- **rotations** (``channels``, ``positions``): ``E[y y^T] = Q E[x x^T] Q^T``, so ``Q`` is
  identifiable from second moments up to signs (eigenvectors sorted alike; signs from third
  moments). Sign flips zero the off-diagonal moments of the rows they touch.
- **scramble** (a permutation of every coefficient): sign flips hide signs, not magnitudes,
  and the magnitudes of the coefficients of one 8x8 block rise and fall together (the block's
  texture). So: (1) the coefficients are clustered into blocks by the correlation of their
  magnitudes over the crossed rows (spectral clustering, blocks of equal size); (2) each
  recovered block is given a block position by matching the correlations of block energies
  (neighbouring blocks correlate) and each block's profile of coefficient magnitudes against
  those of public faces (a quadratic assignment, local search from restarts); (3) inside a
  block, each coefficient gets the channel whose public mean magnitude at that position ranks
  as its own does. Faces are nearly symmetric, so step (2) often finds the mirror image of
  the truth: attacks on top of it try both orientations (``KeyEstimate.mirror_ambiguous``).
  ``scramble_recovery_score`` says, owner side, how much of all that was right.
- **dense** (rounds of permutations and group rotations of every coefficient, then the sign
  flips of mixing in the keyed basis): nothing is left but magnitudes of the keyed
  coordinates ``y_j = q_j . m``. For Gaussian-like mixtures the correlation of their squares is
  the squared correlation of the keyed coordinates, so (1) ``|rho| = sqrt(corr(y^2))`` over the
  crossed rows; (2) the signs of ``rho`` (up to the flips' gauge, which no attack needs) by
  alternating projections onto rank-``DENSE_RANK`` PSD matrices; (3) its leading eigenvectors
  are ``Q v_r`` for the public principal directions ``v_r`` of the mixtures, matched by order.
  The estimate is the key on that subspace (``SubspaceEstimate``); comparisons are made in the
  keyed basis (the flips act there, so undoing it gives nothing back: ``compare_keyed``).
  ``subspace_recovery_score`` says, owner side, how well each direction was found.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from rl_mask.mask.augment import augment
from rl_mask.mask.defences.base import Defence
from rl_mask.mask.settings import MaskSettings
from rl_mask.protocol import ProtectedBatch

#: Key constructions that are rotations of the DCT coefficients (``undo`` gives the rows back),
#: estimated from second moments (``recover_rotation``).
ROTATION_KEYS = ("channels", "positions")
#: Restarts of the block-position search (local search from random starts; the best objective wins).
POSITION_RESTARTS = 32
#: Weight of the block-profile term against the block-correlation term of that search.
PROFILE_WEIGHT = 0.3
#: Power iterations of the spectral embedding (a randomized subspace iteration: no dense eigh).
POWER_ITERATIONS = 30


class KeyEstimate(abc.ABC):
    """The attacker's estimate of the owner's key on ``[N, C, h, w]`` coefficient tensors.

    ``mirror_ambiguous``: the estimate may have put every block at its mirror position (face
    statistics are nearly left-right symmetric), so attacks also try mirrored photos."""

    mirror_ambiguous = False
    #: The owner's sign flips act after the key (``dense``): compare in the keyed basis
    #: (``apply`` to one's own encodings), since ``undo`` of a flipped row is noise.
    compare_keyed = False

    @abc.abstractmethod
    def undo(self, keyed: torch.Tensor) -> torch.Tensor:
        """Crossed (keyed) coefficients -> the estimate of their unkeyed public encoding."""

    @abc.abstractmethod
    def apply(self, encoded: torch.Tensor) -> torch.Tensor:
        """The attacker's own public encoding -> the estimate of the owner's keyed message."""


# ----------------------------------------------------------------------------- rotations


def second_moments(x: torch.Tensor, per_position: bool) -> torch.Tensor:
    """``E[v v^T]`` of the channel vectors of ``[N, C, h, w]``: ``[1, C, C]`` pooled over block
    positions, or ``[h * w, C, C]`` per position."""
    n, c, h, w = x.shape
    v = x.double().reshape(n, c, h * w)
    if per_position:
        return torch.einsum("nip,njp->pij", v, v) / n
    rows = v.transpose(1, 2).reshape(n * h * w, c)  # one matrix product: faster than the einsum
    return (rows.T @ rows / (n * h * w))[None]


def third_moment_signs(x: torch.Tensor, basis: torch.Tensor, per_position: bool) -> torch.Tensor:
    """Sign of the third moment of ``x`` along each column of ``basis`` (the eigenvectors):
    what fixes each recovered axis' sign when the data are not symmetric (no sign flips)."""
    n, c, h, w = x.shape
    v = x.double().reshape(n, c, h * w)
    proj = torch.einsum("pij,nip->npj", basis, v) if per_position else torch.einsum("ij,nip->npj", basis[0], v)
    m3 = proj.pow(3).mean(0) if per_position else proj.pow(3).mean((0, 1))[None]
    return torch.sign(m3)


def mean_sign_scores(crossed: torch.Tensor, public_encoded: torch.Tensor, uy: torch.Tensor, ux: torch.Tensor, per_position: bool) -> torch.Tensor:
    """``[1 | h*w, C]``: per recovered axis, the agreement of the two sides' mean maps along it.
    Mixing weights sum to 1, so a mixture's mean is the mean face's: ``E[y] = Q E[x]`` at every
    block position, and the sign of ``(u_y . E[y]) (u_x . E[x])`` is the axis' sign (pooled over
    the positions for one key everywhere). Sign flips zero both means: the score is then noise."""
    def mean_map(x):
        n, c, h, w = x.shape
        return x.double().reshape(n, c, h * w).mean(0)  # [C, P]

    py = torch.einsum("pij,ip->pj", uy, mean_map(crossed)) if per_position else (uy[0].T @ mean_map(crossed)).T  # [P, C]
    px = torch.einsum("pij,ip->pj", ux, mean_map(public_encoded)) if per_position else (ux[0].T @ mean_map(public_encoded)).T
    return py * px if per_position else (py * px).sum(0, keepdim=True)


#: Where the recovered axes' signs come from: the mean face (then third moments where its
#: score is 0), or third moments alone (the estimator before 2026-11-30, kept for comparison).
SIGN_SOURCES = ("mean", "third")


def recover_rotation(crossed: torch.Tensor, public_encoded: torch.Tensor, per_position: bool, signs: str = "mean") -> torch.Tensor:
    """Estimate the owner's orthogonal key ``Q`` (crossed = Q x) from moments:
    ``E[y y^T] = Q E[x x^T] Q^T``, so ``Q ~ U_y S U_x^T`` with eigenvectors sorted alike; the
    signs S from the first moments (the mean face, ``mean_sign_scores``), where those are
    zero from third moments. ``[1 | h*w, C, C]``. Sign flips zero the off-diagonal moments
    and the means of the training rows; k = 1 probes (without flips) keep them. (Signs from
    third moments alone, ``signs="third"``, left the axes' signs a coin toss on mixtures: on
    AT&T k = 3 batches the undone rows were as far from the truth as the keyed ones, README.)"""
    if signs not in SIGN_SOURCES:
        raise ValueError(f"signs {signs!r} is not one of {SIGN_SOURCES}")
    my = second_moments(crossed, per_position)
    mx = second_moments(public_encoded, per_position)
    _, uy = torch.linalg.eigh(my)
    _, ux = torch.linalg.eigh(mx)
    score = mean_sign_scores(crossed, public_encoded, uy, ux, per_position) if signs == "mean" else torch.zeros(())
    s = torch.sign(score)
    if (score == 0).any():  # third moments only where the means say nothing: they cost half the estimate
        s3 = third_moment_signs(crossed, uy, per_position) * third_moment_signs(public_encoded, ux, per_position)
        s = torch.where(score != 0, s, s3)
    s = torch.where(s < 0, -1.0, 1.0).to(torch.float64)
    return uy @ (s[..., :, None] * ux.transpose(1, 2))


def rotation_alignment(true_q: torch.Tensor, estimate: torch.Tensor) -> float:
    """Owner side: the mean |cos| between each axis of the true pooled key ``[C, C]`` and its
    estimate ``[1, C, C]`` (1: exact up to the axes' signs; a random rotation about 0.1)."""
    return float((true_q.double().T @ estimate[0].double()).diagonal().abs().mean())


def apply_matrices(q: torch.Tensor, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """``q [1 | h*w, C, C]`` applied to the channel vector of every block of ``x [N, C, h, w]``."""
    n, c, h, w = x.shape
    m = q.to(torch.float64)
    if transpose:
        m = m.transpose(1, 2)
    v = x.double().reshape(n, c, h * w)
    out = torch.einsum("ij,njp->nip", m[0], v) if m.shape[0] == 1 else torch.einsum("pij,njp->nip", m, v)
    return out.reshape(n, c, h, w).to(x.dtype)


class RotationEstimate(KeyEstimate):
    def __init__(self, q: torch.Tensor):
        self.q = q

    def undo(self, keyed: torch.Tensor) -> torch.Tensor:
        return apply_matrices(self.q, keyed, transpose=True)

    def apply(self, encoded: torch.Tensor) -> torch.Tensor:
        return apply_matrices(self.q, encoded)


# ----------------------------------------------------------------------------- scramble


class PermutationEstimate(KeyEstimate):
    """``source[j]``: the public coefficient (flat index into ``C * h * w``) that keyed coefficient
    ``j`` is estimated to be; ``signs[j]`` its estimated sign (irrelevant under sign flips)."""

    mirror_ambiguous = True

    def __init__(self, source: torch.Tensor, signs: torch.Tensor):
        self.source, self.signs = source, signs

    def undo(self, keyed: torch.Tensor) -> torch.Tensor:
        flat = keyed.reshape(len(keyed), -1)
        return torch.empty_like(flat).index_copy_(1, self.source, flat * self.signs.to(flat.dtype)).reshape(keyed.shape)

    def apply(self, encoded: torch.Tensor) -> torch.Tensor:
        flat = encoded.reshape(len(encoded), -1)
        return (flat[:, self.source] * self.signs.to(flat.dtype)).reshape(encoded.shape)


def unit_rms(x: torch.Tensor) -> torch.Tensor:
    """``[N, D]`` float64 rows of ``x`` scaled to unit RMS (mixing changes a row's scale)."""
    a = x.flatten(1).double()
    return a / a.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12)


def magnitudes(x: torch.Tensor) -> torch.Tensor:
    """``[N, D]`` |coefficients| of each row scaled to unit RMS."""
    return unit_rms(x.abs())


def correlation(a: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[D, D]`` correlation of the columns of ``a [N, D]``, multiplied out in ``dtype``."""
    z = a - a.mean(0)
    z = (z / z.norm(dim=0).clamp_min(1e-12)).to(dtype)
    return z.T @ z


def leading_eigenvectors(x: torch.Tensor, rank: int, generator: torch.Generator, basis: torch.Tensor | None = None, iterations: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values [rank], vectors [D, rank])`` of the largest eigenvalues of symmetric ``x``,
    descending, by a randomized subspace iteration (warm-started from ``basis``)."""
    if basis is None:
        basis = torch.randn(len(x), rank + 8, generator=generator, dtype=x.dtype)
    basis = torch.linalg.qr(basis)[0]
    for _ in range(iterations):
        basis = torch.linalg.qr(x @ basis)[0]
    values, vectors = torch.linalg.eigh(basis.T @ x @ basis)
    order = values.argsort(descending=True)[:rank]
    return values[order], basis @ vectors[:, order]


def spectral_blocks(corr: torch.Tensor, blocks: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``[D]`` block index of every coefficient: spectral clustering of the positive part of
    ``corr`` into ``blocks`` clusters of exactly ``size`` members each."""
    affinity = corr.clamp_min(0)
    affinity.fill_diagonal_(0)
    scale = affinity.sum(1).clamp_min(1e-12).rsqrt()
    affinity = scale[:, None] * affinity * scale[None, :]
    _, vectors = leading_eigenvectors(affinity, blocks, generator, iterations=POWER_ITERATIONS)  # a dense eigh is O(D^3)
    embedding = vectors.double()
    embedding = embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12)
    centres = kmeans(embedding, blocks, generator)
    cost = torch.cdist(embedding, centres).repeat_interleave(size, dim=1)
    _, slot = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(slot) // size


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 50) -> torch.Tensor:
    """``[k, dim]`` centres of ``x`` (k-means++ seeding, Lloyd iterations)."""
    first = int(torch.randint(len(x), (1,), generator=generator))
    centres = [x[first]]
    d2 = (x - centres[0]).pow(2).sum(1)
    for _ in range(k - 1):
        i = int(torch.multinomial(d2 / d2.sum().clamp_min(1e-12), 1, generator=generator))
        centres.append(x[i])
        d2 = torch.minimum(d2, (x - centres[-1]).pow(2).sum(1))
    c = torch.stack(centres)
    for _ in range(iterations):
        label = torch.cdist(x, c).argmin(1)
        for j in range(k):
            members = label == j
            if members.any():
                c[j] = x[members].mean(0)
    return c


def block_statistics(a: torch.Tensor, member_of: torch.Tensor, blocks: int) -> tuple[np.ndarray, torch.Tensor]:
    """Correlation ``[B, B]`` of the blocks' log energies over rows, and each block's profile
    (its members' log mean magnitudes, sorted: a statistic blind to the order of its members)."""
    energy = torch.stack([a[:, member_of == j].pow(2).mean(1) for j in range(blocks)], 1).clamp_min(1e-12).log()
    profile = torch.stack([a[:, member_of == j].mean(0).clamp_min(1e-12).log().sort(descending=True).values for j in range(blocks)])
    return correlation(energy, torch.float64).numpy(), profile


def match_positions(g_crossed: np.ndarray, g_public: np.ndarray, linear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``p[i]``: the position of recovered block ``i`` maximising
    ``sum_ij g_crossed[i, j] g_public[p_i, p_j] + sum_i linear[i, p_i]``
    (best-improvement pairwise swaps from ``POSITION_RESTARTS`` starts; the best end wins)."""
    n = len(g_crossed)
    best, best_p = -np.inf, np.arange(n)
    for restart in range(POSITION_RESTARTS):
        p = linear_sum_assignment(-linear)[1] if restart == 0 else rng.permutation(n)
        while True:
            m = g_crossed @ g_public[:, p].T  # m[a, q] = sum_k g_crossed[a, k] g_public[q, p_k]
            mp = m[:, p]
            d = np.diag(mp).copy()
            gp = g_public[np.ix_(p, p)]
            gd, yd = np.diag(gp), np.diag(g_crossed)
            delta = 2 * (mp + mp.T - d[:, None] - d[None, :])
            delta -= 2 * ((yd[:, None] - g_crossed.T) * (gp.T - gd[:, None]) + (g_crossed - yd[None, :]) * (gd[None, :] - gp))
            lin = linear[:, p]
            ld = np.diag(lin).copy()
            delta += lin + lin.T - ld[:, None] - ld[None, :]
            np.fill_diagonal(delta, -np.inf)
            a, b = np.unravel_index(np.argmax(delta), delta.shape)
            if delta[a, b] <= 1e-9:
                break
            p[a], p[b] = p[b], p[a]
        value = float((g_crossed * g_public[np.ix_(p, p)]).sum() + linear[np.arange(n), p].sum())
        if value > best:
            best, best_p = value, p.copy()
    return best_p


def recover_scramble(crossed: torch.Tensor, public_encoded: torch.Tensor, seed: int = 0) -> PermutationEstimate:
    """Estimate the owner's ``scramble`` key from the crossed rows ``[N, C, h, w]`` (keyed) and
    the attacker's public encodings ``[M, C, h, w]`` (module doc: blocks, positions, channels)."""
    _, c, h, w = crossed.shape
    positions = h * w
    generator = torch.Generator().manual_seed(seed)
    a, b = magnitudes(crossed), magnitudes(public_encoded)
    member_of = spectral_blocks(correlation(a), positions, c, generator)
    g_crossed, profile_crossed = block_statistics(a, member_of, positions)
    public_blocks = torch.arange(c * positions) % positions  # a public coefficient's block position
    g_public, profile_public = block_statistics(b, public_blocks, positions)
    profile_cost = torch.cdist(profile_crossed.float(), profile_public.float()).pow(2).numpy()
    linear = -PROFILE_WEIGHT * profile_cost / max(float(profile_cost.std()), 1e-12)
    place = match_positions(g_crossed, g_public, linear, np.random.default_rng(seed))
    # inside each block: channels by the rank of their mean magnitude at the block's position
    mean_crossed = a.mean(0).clamp_min(1e-12).log()
    mean_public = b.mean(0).clamp_min(1e-12).log().reshape(c, positions)
    source = torch.empty(c * positions, dtype=torch.long)
    for block in range(positions):
        members = (member_of == block).nonzero().squeeze(1)
        p = int(place[block])
        cost = (mean_crossed[members][:, None] - mean_public[:, p][None, :]).pow(2)
        rows, channels = linear_sum_assignment(cost.numpy())
        source[members[rows]] = torch.as_tensor(channels) * positions + p
    # signs: agree with the public mean where the crossed rows have one (no sign flips)
    mean_y = crossed.flatten(1).double().mean(0)
    mean_x = public_encoded.flatten(1).double().mean(0)[source]
    signs = torch.where(mean_y * mean_x < 0, -1.0, 1.0).to(torch.float64)
    return PermutationEstimate(source, signs)


def scramble_recovery_score(estimate: PermutationEstimate, source: torch.Tensor, shape: tuple[int, int, int]) -> dict:
    """Owner side (it knows the key's true ``source``): how pure the recovered blocks are, and
    the fraction of keyed coefficients put at their own block position, at its mirror, within
    one block of either, and at their own coefficient."""
    c, h, w = shape
    positions = h * w
    est, true = estimate.source % positions, source % positions
    mirrored = est - est % w + (w - 1 - est % w)  # the same block row, the mirror column
    near = ((est // w - true // w).abs() <= 1) & ((est % w - true % w).abs() <= 1)
    near_mirrored = ((mirrored // w - true // w).abs() <= 1) & ((mirrored % w - true % w).abs() <= 1)
    purity = sum(int(torch.bincount(true[est == p], minlength=positions).max()) for p in range(positions) if (est == p).any())
    return {
        "block_purity": purity / len(true),
        "block_position": float((est == true).double().mean()),
        "block_position_mirrored": float((mirrored == true).double().mean()),
        "within_one_block": float(near.double().mean()),
        "within_one_block_mirrored": float(near_mirrored.double().mean()),
        "coefficient": float((estimate.source == source).double().mean()),
        "chance_block_position": 1.0 / positions,
    }


# ----------------------------------------------------------------------------- dense

#: Directions of the dense key the recovery estimates (the public mixtures' leading principal directions).
DENSE_RANK = 32
#: Alternating projections of the sign retrieval.
SIGN_ITERATIONS = 12


class SubspaceEstimate(KeyEstimate):
    """The key on a subspace: ``keyed[:, D] ~ (x @ public[:, D, R]) @ keyed_dirs[:, D, R].T``."""

    compare_keyed = True

    def __init__(self, keyed_dirs: torch.Tensor, public_dirs: torch.Tensor):
        self.keyed_dirs, self.public_dirs = keyed_dirs, public_dirs

    def undo(self, keyed: torch.Tensor) -> torch.Tensor:
        flat = keyed.flatten(1).double()
        return ((flat @ self.keyed_dirs) @ self.public_dirs.T).reshape(keyed.shape).to(keyed.dtype)

    def apply(self, encoded: torch.Tensor) -> torch.Tensor:
        flat = encoded.flatten(1).double()
        return ((flat @ self.public_dirs) @ self.keyed_dirs.T).reshape(encoded.shape).to(encoded.dtype)


def principal_directions(x: torch.Tensor, rank: int) -> torch.Tensor:
    """``[D, rank]`` leading principal directions (uncentred: the flips centre the rows) of
    ``x [N, C, h, w]``, rows scaled to unit RMS."""
    return torch.linalg.svd(unit_rms(x), full_matrices=False)[2][:rank].T


def recover_dense(crossed: torch.Tensor, public_encoded: torch.Tensor, seed: int = 0, rank: int = DENSE_RANK) -> SubspaceEstimate:
    """Estimate the owner's ``dense`` key on the public mixtures' leading ``rank`` principal
    directions from the crossed rows ``[N, C, h, w]`` (module doc: |rho|, its signs, eigenvectors)."""
    generator = torch.Generator().manual_seed(seed)
    size = correlation(unit_rms(crossed).pow(2)).clamp_(0, 1).sqrt_()  # |rho|
    size.fill_diagonal_(1.0)
    signed, basis = size.clone(), None
    for _ in range(SIGN_ITERATIONS):
        values, vectors = leading_eigenvectors(signed, rank, generator, basis)
        basis = vectors
        low = (vectors * values.clamp_min(0)) @ vectors.T
        torch.mul(size, torch.sign(low), out=signed)
        del low
    _, keyed_dirs = leading_eigenvectors(signed, rank, generator, basis)
    rank = keyed_dirs.shape[1]
    return SubspaceEstimate(keyed_dirs.double(), principal_directions(public_encoded, rank))


def subspace_recovery_score(estimate: SubspaceEstimate, apply_key: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int, int]) -> dict:
    """Owner side (``apply_key``: the owner's key on ``[N, C, h, w]`` coefficients of ``shape``):
    the overlap ``|U^T S T|_F^2 / R`` of the recovered keyed subspace ``U`` with the true one
    ``T``, the key applied to the public directions the estimate used (1 = the same subspace,
    chance about ``R / D``), under the flips' sign gauge ``S`` (each keyed coordinate's sign,
    which no attack needs) chosen to agree with the truth."""
    true_dirs = apply_key(estimate.public_dirs.T.reshape(-1, *shape)).flatten(1).T
    t = torch.linalg.qr(true_dirs.double())[0]

    def overlap(dirs: torch.Tensor) -> float:
        u = torch.linalg.qr(dirs.double())[0]
        agreement = (u @ u.T) * (t @ t.T)  # the gauge that best aligns the two projectors
        _, vector = leading_eigenvectors(agreement, 1, torch.Generator().manual_seed(0))
        gauge = torch.where(vector[:, 0] < 0, -1.0, 1.0).to(torch.float64)
        return float((u.T @ (gauge[:, None] * t)).pow(2).sum() / t.shape[1])

    random = torch.randn(true_dirs.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return {"subspace_overlap": overlap(estimate.keyed_dirs), "chance_subspace_overlap": overlap(random), "directions": int(true_dirs.shape[1])}


# ----------------------------------------------------------------------------- one entry

#: Passes over the attacker's public faces (augmented) it encodes as training rows for the
#: scramble recovery's reference: the crossed rows are mixtures, and so should its reference be.
REFERENCE_PASSES = 8


def key_reference(defence: Defence, public: torch.Tensor, kind: str, seed: int = 0, training_rows: int = 0, probe_rows: int = 0) -> torch.Tensor:
    """The attacker's own public encodings a ``kind`` key is recovered against: the k = 1
    encoding of its faces, and for ``scramble`` also training rows it encodes from them with
    the public algorithm (``defence`` is the public view: no key). ``dense``: the coefficients
    before any flip (its flips come after the key), of augmented passes over the faces.

    Rotations (``channels``, ``positions``) are read from second moments, which depend on how
    the rows were mixed (k, weights, extra removal): given the counts of crossed rows it holds
    (``training_rows`` training rows, then ``probe_rows`` k = 1 probes), the reference is its
    faces put through the same public settings in the same proportion: ``training_rows`` rows
    encoded as training rows, ``probe_rows`` as probes. Against a k = 1 reference alone the
    estimate of a channels key on AT&T batches of k = 2..6 aligned with the true axes at a
    mean |cos| of 0.26-0.43; against the matched one at 0.64-0.72
    (``benchmarks/key_reference.py``)."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "dense":
        return torch.cat([defence.transform(public)] + [defence.transform(augment(public, generator)) for _ in range(REFERENCE_PASSES)])
    labels = torch.arange(len(public))
    if kind in ROTATION_KEYS and training_rows > 0:
        training = _rows(lambda: defence.encode_train(augment(public, generator), labels, generator).protected().inputs, training_rows)
        probes = _rows(lambda: defence.encode_eval(augment(public, generator)), probe_rows) if probe_rows > 0 else training[:0]
        return torch.cat([training, probes])
    reference = [defence.encode_eval(public)]
    if kind == "scramble":
        reference += [defence.encode_train(augment(public, generator), labels, generator).protected().inputs for _ in range(REFERENCE_PASSES)]
    return torch.cat(reference)


def reads_key(settings: MaskSettings) -> bool:
    """Whether a training message sent with ``settings`` tells a rotation estimate anything:
    sign flips zero its means and off-diagonal moments (and act in the keyed basis, so they
    are not the key's). k = 1 rows are never flipped (``rl_mask.mask.masking.mix``)."""
    return settings.flip == 0.0 or settings.k == 1


def settings_reference(defence: Defence, public: torch.Tensor, batches: Sequence[ProtectedBatch], settings: Sequence[MaskSettings], probes: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor] | None:
    """White-box (each message's settings are public): the crossed rows a rotation estimate
    reads and the attacker's reference for them, or None when every training message was
    flipped. Each message sent without flips (``reads_key``) is held against as many of its
    public faces put through that message's own settings (k, weights, extra removal) with
    ``defence`` (the public view: no key); the k = 1 probes against k = 1 encodings, unless
    the probes are flipped too. A pooled reference (``key_reference``) mixes the flipped
    messages in: against a policy that flips most of its batches it reads mostly noise, while
    the few batches it sends without flips give the key away as a fixed unflipped setting does."""
    kept = [(b, s) for b, s in zip(batches, settings) if len(b) and reads_key(s)]
    if not kept:
        return None
    generator = torch.Generator().manual_seed(seed)
    held, reference = [], []
    for batch, s in kept:
        faces = augment(public[torch.randint(len(public), (len(batch),), generator=generator)], generator)
        held.append(batch.inputs)
        reference.append(defence.encode_train(faces, torch.arange(len(batch)), generator, settings=s).protected().inputs)
    if len(probes) and getattr(defence, "eval_flip", 0.0) == 0.0:
        held.append(probes)
        reference.append(_rows(lambda: defence.encode_eval(augment(public, generator)), len(probes)))
    return torch.cat(held), torch.cat(reference)


def _rows(encode: Callable[[], torch.Tensor], n: int) -> torch.Tensor:
    """The first ``n`` rows of as many passes of ``encode`` as it takes."""
    out, have = [], 0
    while have < n:
        out.append(encode())
        have += len(out[-1])
    return torch.cat(out)[:n]


def recover_key(kind: str, crossed: torch.Tensor, public_encoded: torch.Tensor) -> KeyEstimate:
    """The attacker's estimate of a ``kind`` key (``rl_mask.owner.key``) from every message it
    holds (``crossed``, keyed) and its own public encodings (``public_encoded``)."""
    if kind == "scramble":
        return recover_scramble(crossed, public_encoded)
    if kind == "dense":
        return recover_dense(crossed, public_encoded)
    if kind in ROTATION_KEYS:
        return RotationEstimate(recover_rotation(crossed, public_encoded, per_position=kind == "positions"))
    raise ValueError(f"no key recovery for key kind {kind!r}")

"""The black-box attacker's estimate of which block-DCT channels crossed.

Nothing about the defence is read: only the crossed tensors (inputs and the mixing weights
that cross with them) and the attacker's public faces. Every zig-zag DCT channel of aligned
faces has its own energy level and its own spatial energy map over the block grid (low
frequencies are strong everywhere, high ones only at edges: eyes, mouth, hair line). From
its public faces (augmented as the public training code augments) the attacker predicts
each channel's mean-square map under the crossed mixing:

    E[x_c^2] = mean(sum_j w_j^2) * E[s_c^2] + mean(1 - sum_j w_j^2) * E[s_c]^2

(independent faces; sign flips leave squares unchanged) and aligns the crossed channels'
log maps to the predicted ones. The masking code is public and stores kept channels in
ascending zig-zag order, so the alignment is monotone (dynamic programming: which 64 - C
channels are missing), with a small common offset allowed (public and private faces are
not photographed alike). ``hungarian=True`` drops the order assumption (weaker: zig-zag
neighbours with similar maps get swapped).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from rl_mask.mask.augment import augment
from rl_mask.mask.freq import CHANNELS_PER_PLANE, block_dct

#: Largest common log-energy offset allowed between private and public faces (a factor e).
MAX_OFFSET = 1.0


def _monotone_alignment(cost: np.ndarray) -> tuple[float, list[int]]:
    """Cheapest strictly increasing map of rows (crossed channels) to columns (zig-zag)."""
    c, m = cost.shape
    total = np.full((c + 1, m + 1), np.inf)
    total[0, :] = 0.0
    take = np.zeros((c + 1, m + 1), dtype=bool)
    for i in range(1, c + 1):
        for j in range(i, m + 1):
            skip, use = total[i, j - 1], total[i - 1, j - 1] + cost[i - 1, j - 1]
            take[i, j] = use <= skip
            total[i, j] = use if take[i, j] else skip
    out, j = [], m
    for i in range(c, 0, -1):
        while not take[i, j]:
            j -= 1
        out.append(j - 1)
        j -= 1
    return float(total[c, m]), out[::-1]


def estimate_channels(
    crossed: torch.Tensor, weights: torch.Tensor, public: torch.Tensor, planes: int = 1, hungarian: bool = False, seed: int = 0
) -> list[int]:
    """Per crossed channel of plane 0 (``crossed [N, C, h, w]``, ``C = planes * kept``, mixed
    with ``weights [N, k]``), the zig-zag index (0..63) it is estimated to be, from public
    faces ``[M, P, H, W]``."""
    _, c, h, _ = crossed.shape
    per_plane = c // planes
    upsample = max(1, round(h * 8 / public.shape[-2]))
    faces = augment(public[:, :1], torch.Generator().manual_seed(seed))
    coeffs = block_dct(faces, upsample).double()
    own = float(weights.double().pow(2).sum(1).mean())
    predicted = own * coeffs.pow(2).mean(0) + (1.0 - own) * coeffs.mean(0).pow(2)
    reference = predicted.clamp_min(1e-12).log().flatten(1)  # [64, h*w]
    observed = crossed[:, :per_plane].double().pow(2).mean(0).clamp_min(1e-12).log().flatten(1)
    diff = observed[:, None, :] - reference[None, :, :]  # [kept, 64, h*w]
    best_cost, best = float("inf"), None
    for offset in np.linspace(-MAX_OFFSET, MAX_OFFSET, 41):
        cost = (diff - offset).pow(2).mean(-1).numpy()
        if hungarian:
            rows, cols = linear_sum_assignment(cost)
            total, cols = float(cost[rows, cols].sum()), list(cols)
        else:
            total, cols = _monotone_alignment(cost)
        if total < best_cost:
            best_cost, best = total, cols
    return [int(x) for x in best]


def removed_from(kept: list[int]) -> list[int]:
    """The channels an estimate says were removed (the complement of ``kept``)."""
    return sorted(set(range(CHANNELS_PER_PLANE)) - set(kept))

"""Label-aware unmixing: the crossed labels say which faces of a batch each row can mix.

Row p's own face (column 0) has identity ``labels[p, 0]``; a partner in column j with
identity L can only be a position p' != p of the same message with ``labels[p', 0] == L``
(partners are other faces of the same batch: the public mixing algorithm). On AT&T (20
identities, batches of 64) that leaves about 2-3 candidates per partner slot. The attack:

1. *Correlation start*: each slot takes the candidate whose crossed row correlates best with
   row p (the partner's own row holds the same face).
2. *Search*: ``X = M S`` is square (every face is in its own row), so any invertible
   assignment fits the crossed rows exactly; what tells assignments apart is a prior on the
   unmixed faces. A wrong assignment leaves other faces in (and amplifies) the unmixed
   ones, so the true assignment has low energy: minimise ``sum ||S / sigma||^2`` (``sigma``:
   per-coefficient spread of the attacker's k = 1 protected public faces), by block
   coordinate descent, one row at a time, trying every combination of its candidates
   (Sherman-Morrison updates of ``M^-1``, on a random projection of the coefficients).
3. *Unmix and decode*: solve ``S`` and map it to pixels with the k = 1 decoder
   (``rl_mask.attacks.unmix``).

Measured on AT&T (see the report of issue 9 / tests/test_label_aware.py): exact at k = 2; at
k >= 3 the search is stuck in local minima and identifies fewer partners than the start.

Sign flips break step 2 and 3 (``X != M S``); the attack then runs on ``|X|`` (a heuristic,
not an unmixing). Not done yet: Carlini-style clustering *across* messages (the same face
appears, differently augmented, in batches of later epochs); with augmentation on, the
copies are not equal, so it needs a learned similarity, as Carlini et al. trained for
InstaHide.
"""

from __future__ import annotations

import itertools

import torch

from rl_mask.attacks.base import AttackTarget
from rl_mask.attacks.unmix import UnmixingAttack, mixing_matrix
from rl_mask.mask.defences.base import Defence
from rl_mask.protocol import ProtectedBatch
from rl_mask.reconstruction import Reconstruction

MAX_COMBOS = 729  # per row and sweep (3^6)


def partner_candidates(labels: torch.Tensor) -> list[list[list[int]]]:
    """``[i][j]``: the batch positions that can be row i's face in column j (j = 0: i itself)."""
    own = labels[:, 0].tolist()
    b, k = labels.shape
    by_identity: dict[int, list[int]] = {}
    for p, lab in enumerate(own):
        by_identity.setdefault(lab, []).append(p)
    return [[[i]] + [[p for p in by_identity.get(int(labels[i, j]), []) if p != i] for j in range(1, k)] for i in range(b)]


def correlation_assignment(inputs: torch.Tensor, labels: torch.Tensor, candidates: list) -> torch.Tensor:
    """``[B, k]``: per slot the candidate whose crossed row correlates best with the row."""
    x = inputs.reshape(inputs.shape[0], -1).double()
    x = x - x.mean(1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    corr = x @ x.T
    out = []
    for i, slots in enumerate(candidates):
        row = [i]
        for cands in slots[1:]:
            free = [p for p in cands if p not in row] or cands or [i]
            row.append(max(free, key=lambda p: float(corr[i, p])))
        out.append(row)
    return torch.tensor(out, dtype=torch.long)


def refine_assignment(projected: torch.Tensor, weights: torch.Tensor, assignment: torch.Tensor, candidates: list, sweeps: int = 6) -> torch.Tensor:
    """Block coordinate descent on ``||M^-1 X||^2`` over each row's candidate combinations."""
    a = assignment.clone()
    b, k = a.shape
    w = weights.double()
    m = mixing_matrix(w, a)
    try:
        m_inv = torch.linalg.inv(m)
    except RuntimeError:  # singular start: nudge it
        m_inv = torch.linalg.pinv(m)
    s = m_inv @ projected
    energy = float(s.pow(2).sum())
    for _ in range(sweeps):
        changed = False
        for i in range(b):
            combos = [c for c in itertools.product(*candidates[i][1:]) if len(set(c)) == k - 1]
            if len(combos) <= 1:
                continue
            combos = torch.tensor(combos[:MAX_COMBOS], dtype=torch.long)
            new_rows = torch.zeros(len(combos), b, dtype=torch.float64)
            new_rows[:, i] += w[i, 0]
            new_rows.scatter_add_(1, combos, w[i, 1:].expand(len(combos), -1).contiguous())
            delta = new_rows - m[i]  # [n, B]: M' = M + e_i delta^T
            col = m_inv[:, i]  # [B]
            denom = 1.0 + delta @ col  # [n]
            ok = denom.abs() > 1e-8
            ds = (delta @ s) / torch.where(ok, denom, torch.ones_like(denom))[:, None]  # [n, D]
            # ||S - col ds^T||^2 without forming the n candidate S matrices
            e = energy - 2.0 * (ds @ (col @ s)) + float(col @ col) * ds.pow(2).sum(1)
            e = e.masked_fill(~ok, float("inf"))
            n = int(e.argmin())
            if float(e[n]) < energy * (1 - 1e-9) and not torch.equal(combos[n], a[i, 1:]):
                energy = float(e[n])
                a[i, 1:] = combos[n]
                m_inv = m_inv - torch.outer(col, delta[n] @ m_inv) / denom[n]
                m[i] = new_rows[n]
                s = s - torch.outer(col, ds[n])
                changed = True
        if not changed:
            break
    return a


class LabelAwareUnmixing(UnmixingAttack):
    name = "label-aware"

    def __init__(self, *args, refine_sweeps: int = 6, projection: int = 256, **kwargs):
        super().__init__(*args, **kwargs)
        self.refine_sweeps = refine_sweeps
        self.projection = projection
        self.scale: torch.Tensor | None = None
        self.sign_flip = False
        self.assignments: list[torch.Tensor] = []  # per crossed message, the inferred [B, k] positions

    def fit(self, public: torch.Tensor, defence: Defence, progress: bool = False) -> "LabelAwareUnmixing":
        super().fit(public, defence, progress)
        encoded = self.view.encode_eval(public).double()
        self.scale = encoded.std(0).flatten().clamp_min(1e-6)
        self.sign_flip = bool(defence.describe().get("sign_flip", False))
        return self

    def infer(self, batch: ProtectedBatch) -> torch.Tensor:
        """The inferred ``[B, k]`` batch positions of every row's faces (column 0: the row)."""
        candidates = partner_candidates(batch.labels)
        x = batch.inputs.reshape(len(batch), -1).double()
        if batch.k == 1:
            return torch.arange(len(batch))[:, None]
        start = correlation_assignment(x, batch.labels, candidates)
        if self.refine_sweeps <= 0:
            return start
        g = torch.Generator().manual_seed(self.seed)
        proj = torch.randn(x.shape[1], self.projection, generator=g, dtype=torch.float64) / self.projection**0.5
        return refine_assignment((x / self.scale) @ proj, batch.weights, start, candidates, self.refine_sweeps)

    def attack(self, target: AttackTarget, progress: bool = False) -> Reconstruction:
        self._check_fitted()
        settings = target.settings or [None] * len(target.crossed)
        flipped = [s.flip > 0 if s is not None else self.sign_flip for s in settings]
        if any(flipped):  # heuristic: magnitudes only (see the module docstring)
            crossed = [ProtectedBatch(b.inputs.abs(), b.labels, b.weights) if f else b for b, f in zip(target.crossed, flipped)]
            target = AttackTarget(target.defence, crossed, target.model, target.num_classes, target.settings)
        self.assignments = [self.infer(b) if len(b) else torch.empty(0, b.k, dtype=torch.long) for b in target.crossed]
        return self.reconstruct(target, self.assignments)

    def describe(self) -> dict:
        return {**super().describe(), "refine_sweeps": self.refine_sweeps, "projection": self.projection}

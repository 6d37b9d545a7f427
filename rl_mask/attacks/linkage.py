"""Identity linkage: given photos of candidate people, name the person behind each private label.

Protecting appearance is not protecting identity. The FR server holds every crossed row under
its label (hard labels: the dominant identity; soft labels: the column with the largest
weight), the trained model, and the public encoding. Two routes link a private label to one of
the candidates in a gallery of ordinary photos (held-out private faces that never crossed in
a training batch, plus public distractors; which candidate is which is the owner's truth):

- **statistics** (``link-abs``, ``link-energy``): average a sign-invariant statistic of the
  crossed rows per label and compare it with the same statistic of each candidate's photos,
  encoded with the public mask. ``abs``: mean |coefficient| per kept channel and block
  position (sign flips do not touch it); ``energy``: the root energy of the kept channels per
  block position (also invariant under any orthogonal per-position key, ``rl_mask.owner.key``).
  Both fingerprints are centred over their set (the average face is shared by everyone; what
  is left is the person) and matched by cosine similarity;
- **model** (``link-model``): encode each candidate's photos with the public encoding, run
  the trained model's classifier head, and ask which candidate it names each label for.

``+recover`` variants first estimate the owner's key from what crossed (``recover_key``:
second-order statistics of the crossed rows and inference probes against those of public
faces; a rotation is identifiable up to signs) and undo it (statistics) or apply it to the
candidates (model). Without a key they are the plain attacks.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from rl_mask.mask.defences.base import Defence
from rl_mask.protocol import ProtectedBatch, concat_protected
from rl_mask.server.models import FaceRecognizer

STATISTICS = ("abs", "energy")


@dataclass
class Gallery:
    """The attacker's candidate people: ``photos[c]`` ``[n, P, H, W]`` in [-1, 1], in an order
    that says nothing about who is private."""

    photos: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.photos)


@dataclass
class LinkageTarget:
    """What the linkage attacker holds: every crossed training row (labels, weights), the
    inputs of held-out faces' inference probes (they cross too), the trained model, and the public encoding.
    ``key_kind``: the owner's key construction if it uses one (public; the seed is not)."""

    defence: Defence  # the public view (no key)
    crossed: list[ProtectedBatch]
    eval_inputs: list[torch.Tensor]
    model: FaceRecognizer | None
    num_classes: int
    key_kind: str | None = None

    def rows(self) -> ProtectedBatch:
        return concat_protected([b for b in self.crossed if len(b)])


def statistic(encoded: torch.Tensor, kind: str) -> torch.Tensor:
    """``[N, D]`` sign-invariant statistic of ``[N, C, h, w]`` encoded faces (module doc)."""
    if kind == "abs":
        return encoded.abs().flatten(1)
    if kind == "energy":
        return encoded.pow(2).sum(1).sqrt().flatten(1)
    raise ValueError(f"statistic {kind!r} is not one of {STATISTICS}")


def label_fingerprints(rows: ProtectedBatch, num_classes: int, kind: str, inputs: torch.Tensor | None = None) -> torch.Tensor:
    """``[L, D]``: the mean statistic of the rows of each label (its dominant crossed label);
    NaN rows for labels that never crossed. ``inputs`` replaces ``rows.inputs`` (unkeyed)."""
    stats = statistic((rows.inputs if inputs is None else inputs).double(), kind)
    labels = rows.dominant_label
    out = torch.full((num_classes, stats.shape[1]), float("nan"), dtype=torch.float64)
    for label in range(num_classes):
        hit = labels == label
        if hit.any():
            out[label] = stats[hit].mean(0)
    return out


def candidate_fingerprints(encoded: list[torch.Tensor], kind: str) -> torch.Tensor:
    """``[N, D]``: the mean statistic of each candidate's encoded photos."""
    return torch.stack([statistic(e.double(), kind).mean(0) for e in encoded])


def match_scores(labels: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``[L, N]`` cosine similarity of centred fingerprints (each set minus its own mean, so
    that the common face and the mixing's overall scale drop out); -inf for unseen labels."""
    seen = ~torch.isnan(labels).any(1)
    a = labels - labels[seen].mean(0)
    b = candidates - candidates.mean(0)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    scores = a @ b.T
    scores[~seen] = float("-inf")
    return scores


def identification(scores: torch.Tensor, truth: torch.Tensor) -> dict:
    """Owner side: the fraction of private labels whose best-scoring candidate is their own
    person (``truth[l]``: candidate index of label l), with chance 1 / candidates."""
    hits = scores.argmax(1) == truth
    return {"identification": float(hits.float().mean()), "n": int(len(truth)), "chance": 1.0 / scores.shape[1]}


def second_moments(x: torch.Tensor, per_position: bool) -> torch.Tensor:
    """``E[v v^T]`` of the channel vectors of ``[N, C, h, w]``: ``[1, C, C]`` pooled over block
    positions, or ``[h * w, C, C]`` per position."""
    n, c, h, w = x.shape
    v = x.double().reshape(n, c, h * w)
    if per_position:
        return torch.einsum("nip,njp->pij", v, v) / n
    return (torch.einsum("nip,njp->ij", v, v) / (n * h * w))[None]


def third_moment_signs(x: torch.Tensor, basis: torch.Tensor, per_position: bool) -> torch.Tensor:
    """Sign of the third moment of ``x`` along each column of ``basis`` (the eigenvectors):
    what fixes each recovered axis' sign when the data are not symmetric (no sign flips)."""
    n, c, h, w = x.shape
    v = x.double().reshape(n, c, h * w)
    proj = torch.einsum("pij,nip->npj", basis, v) if per_position else torch.einsum("ij,nip->npj", basis[0], v)
    m3 = proj.pow(3).mean(0) if per_position else proj.pow(3).mean((0, 1))[None]
    return torch.sign(m3)


def recover_key(crossed: torch.Tensor, public_encoded: torch.Tensor, per_position: bool) -> torch.Tensor:
    """Estimate the owner's orthogonal key ``Q`` (crossed = Q x) from second moments:
    ``E[y y^T] = Q E[x x^T] Q^T``, so ``Q ~ U_y S U_x^T`` with eigenvectors sorted alike and
    signs S from third moments. ``[1 | h*w, C, C]``. Sign flips zero the off-diagonal moments
    of the training rows; k = 1 probes (without flips) keep them."""
    my = second_moments(crossed, per_position)
    mx = second_moments(public_encoded, per_position)
    _, uy = torch.linalg.eigh(my)
    _, ux = torch.linalg.eigh(mx)
    sy = third_moment_signs(crossed, uy, per_position)
    sx = third_moment_signs(public_encoded, ux, per_position)
    s = torch.where(sy * sx < 0, -1.0, 1.0).to(torch.float64)
    return uy @ (s[..., :, None] * ux.transpose(1, 2))


def apply_matrices(q: torch.Tensor, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """``q [1 | h*w, C, C]`` applied to the channel vector of every block of ``x [N, C, h, w]``."""
    n, c, h, w = x.shape
    m = q.to(torch.float64)
    if transpose:
        m = m.transpose(1, 2)
    v = x.double().reshape(n, c, h * w)
    out = torch.einsum("ij,njp->nip", m[0], v) if m.shape[0] == 1 else torch.einsum("pij,njp->nip", m, v)
    return out.reshape(n, c, h, w).to(x.dtype)


class LinkageAttack(abc.ABC):
    name = "linkage"
    kind = "linkage"

    def __init__(self, recover: bool = False):
        self.recover = recover
        if recover:
            self.name = f"{self.name}+recover"

    def estimated_key(self, target: LinkageTarget, public: torch.Tensor) -> torch.Tensor | None:
        """The recovered key (``+recover``, and the defence has one), else None."""
        if not self.recover or target.key_kind is None:
            return None
        crossed = torch.cat([target.rows().inputs, *target.eval_inputs])
        return recover_key(crossed, target.defence.encode_eval(public), target.key_kind == "positions")

    @abc.abstractmethod
    def link(self, target: LinkageTarget, gallery: Gallery, public: torch.Tensor) -> torch.Tensor:
        """``[num_classes, candidates]`` scores: higher = label more likely that candidate.
        ``public``: the attacker's own public faces (key recovery's reference)."""

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind}


class StatisticLinkage(LinkageAttack):
    def __init__(self, kind: str = "abs", recover: bool = False):
        if kind not in STATISTICS:
            raise ValueError(f"statistic {kind!r} is not one of {STATISTICS}")
        self.statistic = kind
        self.name = f"link-{kind}"
        super().__init__(recover)

    @torch.no_grad()
    def link(self, target: LinkageTarget, gallery: Gallery, public: torch.Tensor) -> torch.Tensor:
        rows = target.rows()
        key = self.estimated_key(target, public)
        inputs = None if key is None else apply_matrices(key, rows.inputs, transpose=True)
        labels = label_fingerprints(rows, target.num_classes, self.statistic, inputs)
        candidates = candidate_fingerprints([target.defence.encode_eval(p) for p in gallery.photos], self.statistic)
        return match_scores(labels, candidates)

    def describe(self) -> dict:
        return {**super().describe(), "statistic": self.statistic, "recover": self.recover}


class ModelLinkage(LinkageAttack):
    name = "link-model"

    @torch.no_grad()
    def link(self, target: LinkageTarget, gallery: Gallery, public: torch.Tensor) -> torch.Tensor:
        if target.model is None:
            raise ValueError("link-model needs the trained model")
        model = target.model.eval()
        device = next(model.parameters()).device
        key = self.estimated_key(target, public)
        out = []
        for photos in gallery.photos:
            encoded = target.defence.encode_eval(photos)
            if key is not None:
                encoded = apply_matrices(key, encoded)
            logits = model.head(model.embed(encoded.to(device)))
            out.append(torch.log_softmax(logits.double(), dim=1).mean(0).cpu())
        return torch.stack(out, dim=1)  # [classes, candidates]

    def describe(self) -> dict:
        return {**super().describe(), "recover": self.recover}


def build_linkage(name: str) -> LinkageAttack:
    base, _, rest = name.partition("+")
    recover = rest == "recover"
    if base == "link-model":
        return ModelLinkage(recover)
    if base in ("link-abs", "link-energy"):
        return StatisticLinkage(base[len("link-") :], recover)
    raise ValueError(f"unknown linkage attack {name!r}")

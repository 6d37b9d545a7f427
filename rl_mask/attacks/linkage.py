"""Identity linkage: given photos of candidate people, name the person behind each private label.

Protecting appearance is not protecting identity. The FR server holds every crossed row under
its label (hard labels: the dominant identity; soft labels: the column with the largest
weight), the trained model, and the public encoding. Two routes link a private label to one of
the candidates in a gallery of ordinary photos (held-out private faces that never crossed in
a training batch, plus public distractors; which candidate is which is the owner's truth):

- **statistics** (``link-abs``, ``link-energy``, ``link-sorted``): average a sign-invariant statistic of the
  crossed rows per label and compare it with the same statistic of each candidate's photos,
  encoded with the public mask. ``abs``: mean |coefficient| per kept channel and block
  position (sign flips do not touch it); ``energy``: the root energy of the kept channels per
  block position (also invariant under any orthogonal per-position key, ``rl_mask.owner.key``).
  ``sorted``: each row's magnitudes (scaled to unit RMS) sorted, the one statistic that no
  permutation of the coefficients (the ``scramble`` key) changes. The fingerprints are
  centred over their set (the average face is shared by everyone; what is left is the
  person) and matched by cosine similarity;
- **model** (``link-model``): encode each candidate's photos with the public encoding, run
  the trained model's classifier head, and ask which candidate it names each label for.

``+recover`` variants first estimate the owner's key from what crossed
(``rl_mask.attacks.key_recovery``) and undo it (statistics) or apply it to the candidates
(model). Without a key they are the plain attacks.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable

import torch

from rl_mask.attacks.key_recovery import KeyEstimate, key_reference, magnitudes, recover_key
from rl_mask.mask.defences.base import Defence
from rl_mask.protocol import ProtectedBatch, concat_protected
from rl_mask.server.models import FaceRecognizer

STATISTICS = ("abs", "energy", "sorted")


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
    ``key_kind``: the owner's key construction if it uses one (public; the seed is not);
    ``key_estimate``: the attacker's recovered key when the caller already has one (the
    benchmark recovers it once per row from every message), else estimated here."""

    defence: Defence  # the public view (no key)
    crossed: list[ProtectedBatch]
    eval_inputs: list[torch.Tensor]
    model: FaceRecognizer | None
    num_classes: int
    key_kind: str | None = None
    key_estimate: Callable[[], KeyEstimate] | None = None

    def rows(self) -> ProtectedBatch:
        return concat_protected([b for b in self.crossed if len(b)])


def statistic(encoded: torch.Tensor, kind: str) -> torch.Tensor:
    """``[N, D]`` sign-invariant statistic of ``[N, C, h, w]`` encoded faces (module doc)."""
    if kind == "abs":
        return encoded.abs().flatten(1)
    if kind == "energy":
        return encoded.pow(2).sum(1).sqrt().flatten(1)
    if kind == "sorted":  # blind to where a coefficient is: no permutation of them changes it
        return magnitudes(encoded).sort(dim=1, descending=True).values
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


def orientations(gallery: Gallery, key: KeyEstimate | None) -> list[list[torch.Tensor]]:
    """The candidates' photos as they are, and mirrored too where the recovered key cannot tell
    left from right (``KeyEstimate.mirror_ambiguous``): a score is the better of the two."""
    photos = list(gallery.photos)
    if key is None or not key.mirror_ambiguous:
        return [photos]
    return [photos, [p.flip(-1) for p in photos]]


def keyed_encoding(defence: Defence, photos: torch.Tensor, key: KeyEstimate) -> torch.Tensor:
    """The attacker's photos as the owner's k = 1 message would be with the estimated key: the
    key applied where the owner applies it (before the flips when they act on keyed
    coordinates, ``KeyEstimate.compare_keyed``)."""
    if key.compare_keyed:  # the owner removes its extra channels in the DCT basis, before its key
        return defence.flip_eval(key.apply(defence.mask.remove_extra(defence.transform(photos), defence.eval_extra_removed)))
    return key.apply(defence.encode_eval(photos))


class LinkageAttack(abc.ABC):
    name = "linkage"
    kind = "linkage"

    def __init__(self, recover: bool = False):
        self.recover = recover
        if recover:
            self.name = f"{self.name}+recover"

    def estimated_key(self, target: LinkageTarget, public: torch.Tensor) -> KeyEstimate | None:
        """The recovered key (``+recover``, and the defence has one), else None."""
        if not self.recover or target.key_kind is None:
            return None
        if target.key_estimate is not None:
            return target.key_estimate()
        rows = target.rows().inputs
        probes = torch.cat([rows[:0], *target.eval_inputs])
        reference = key_reference(target.defence, public, target.key_kind, training_rows=len(rows), probe_rows=len(probes))
        return recover_key(target.key_kind, torch.cat([rows, probes]), reference)

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
        keyed = key is not None and key.compare_keyed  # compare in the keyed basis: key the candidates
        inputs = None if key is None or keyed else key.undo(rows.inputs)
        labels = label_fingerprints(rows, target.num_classes, self.statistic, inputs)
        scores = []
        for photos in orientations(gallery, key):
            encoded = [keyed_encoding(target.defence, p, key) if keyed else target.defence.encode_eval(p) for p in photos]
            scores.append(match_scores(labels, candidate_fingerprints(encoded, self.statistic)))
        return torch.stack(scores).amax(0)

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
        scores = []
        for candidates in orientations(gallery, key):
            out = []
            for photos in candidates:
                encoded = target.defence.encode_eval(photos) if key is None else keyed_encoding(target.defence, photos, key)
                logits = model.head(model.embed(encoded.to(device)))
                out.append(torch.log_softmax(logits.double(), dim=1).mean(0).cpu())
            scores.append(torch.stack(out, dim=1))  # [classes, candidates]
        return torch.stack(scores).amax(0)

    def describe(self) -> dict:
        return {**super().describe(), "recover": self.recover}


def build_linkage(name: str) -> LinkageAttack:
    base, _, rest = name.partition("+")
    recover = rest == "recover"
    if base == "link-model":
        return ModelLinkage(recover)
    if base in ("link-abs", "link-energy", "link-sorted"):
        return StatisticLinkage(base[len("link-") :], recover)
    raise ValueError(f"unknown linkage attack {name!r}")

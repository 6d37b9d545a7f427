"""The standard face-recognition protocols on a trained run: LFW-style verification of pairs
and gallery/probe identification.

Verification reads the LFW ``pairs.txt`` format (a header ``FOLDS N`` then, per fold, N
same-person lines ``name n1 n2`` and N different-person lines ``name1 n1 name2 n2``; a
one-number header ``N`` is a single set, dealt to 10 folds in turn) and reports the 10-fold
accuracy (threshold chosen on the other nine folds), TAR at FAR 1e-2 and 1e-3, and a ROC
plot. Identification enrols one template per gallery identity (the mean of its unit
embeddings) and ranks them for every probe: top-1, top-5 and a CMC plot. Identities need not
have been in training: only the embedding is used, never the classifier head.

``verify`` and ``identify`` run both sides in one process for convenience: the owner encodes
(``OwnerEncoder``), only the ``ProtectedProbes`` message reaches the server
(``EmbeddingServer``), and the owner compares the embeddings that come back.
"""

from __future__ import annotations

import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rl_mask.checkpoint import atomic_write_bytes, atomic_write_text
from rl_mask.metrics import cmc_curve, kfold_verification, pair_scores, roc_curve, tar_at_far
from rl_mask.owner.data import IMAGE_SUFFIXES, FaceSet
from rl_mask.use.embed import EmbeddingServer
from rl_mask.use.encode import ImageEntry, OwnerEncoder, list_images, load_images
from rl_mask.use.files import InputError

FAR_TARGETS = (1e-2, 1e-3)
DEFAULT_FOLDS = 10
ONE_PROCESS_NOTE = "owner (encode) and server (embed) ran in this one process for convenience; only ProtectedProbes crossed between them (rl-mask encode / embed split them)"


@dataclass(frozen=True)
class PairList:
    """Parsed pairs: ``(name1, n1, name2, n2)`` per line, whether same person, and the fold."""

    pairs: list[tuple[str, int, str, int]]
    same: np.ndarray  # [M] bool
    fold: np.ndarray  # [M] int
    path: Path


def image_number(path: str | Path, identity: str) -> int | None:
    """The number LFW's pairs use for an image: ``NAME_0004.jpg`` -> 4, and ``4.pgm`` -> 4 (AT&T, Yale)."""
    stem = Path(path).stem
    m = re.fullmatch(re.escape(identity) + r"_(\d+)", stem)
    if m:
        return int(m.group(1))
    return int(stem) if stem.isdigit() else None


def read_pairs(path: str | Path) -> PairList:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pairs file {path} does not exist")
    lines = [(i + 1, line.split()) for i, line in enumerate(path.read_text().splitlines()) if line.strip()]
    if not lines:
        raise InputError(f"pairs file {path} is empty")
    number, header = lines[0]
    try:
        counts = [int(v) for v in header]
    except ValueError:
        raise InputError(f"pairs file {path} line {number}: the header must be 'FOLDS N' or 'N' (LFW pairs.txt format), got {' '.join(header)!r}") from None
    if len(counts) not in (1, 2) or min(counts) < 1:
        raise InputError(f"pairs file {path} line {number}: the header must be 'FOLDS N' or 'N' with positive numbers, got {' '.join(header)!r}")
    body = lines[1:]
    if not body:
        raise InputError(f"pairs file {path} has a header but no pairs")
    folds, per = (counts[0], counts[1]) if len(counts) == 2 else (1, counts[0])
    if len(body) != 2 * folds * per:
        raise InputError(f"pairs file {path}: the header {' '.join(header)} promises {2 * folds * per} pair lines, the file has {len(body)}")
    pairs, same = [], []
    for number, f in body:
        try:
            if len(f) == 3:
                pairs.append((f[0], int(f[1]), f[0], int(f[2])))
            elif len(f) == 4:
                pairs.append((f[0], int(f[1]), f[2], int(f[3])))
            else:
                raise ValueError
        except ValueError:
            raise InputError(f"pairs file {path} line {number}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {' '.join(f)!r}") from None
        same.append(len(f) == 3)
    index = np.arange(len(body))
    fold = index // (2 * per) if folds > 1 else index % DEFAULT_FOLDS
    return PairList(pairs, np.array(same, dtype=bool), fold, path)


def resolve_pairs(pairs: PairList, images: str | Path) -> tuple[list[ImageEntry], torch.Tensor]:
    """The distinct images the pairs name (under ``images/NAME/``) and each pair as two indices into them."""
    root = Path(images)
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist")
    folders: dict[str, dict[int, Path]] = {}
    entries: list[ImageEntry] = []
    where: dict[Path, int] = {}
    index = []
    for line, (a, na, b, nb) in enumerate(pairs.pairs):
        row = []
        for name, n in ((a, na), (b, nb)):
            if name not in folders:
                d = root / name
                files = [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES] if d.is_dir() else []
                folders[name] = {num: p for p in sorted(files) if (num := image_number(p, name)) is not None}
            p = folders[name].get(n)
            if p is None:
                raise InputError(f"pairs file {pairs.path} pair {line + 1}: no image {n} of {name} under {root / name} (looked for {name}_{n:04d}.* and {n}.*)")
            if p not in where:
                where[p] = len(entries)
                entries.append(ImageEntry(f"{name}/{p.name}", p))
            row.append(where[p])
        index.append(row)
    return entries, torch.tensor(index, dtype=torch.long)


def write_pairs(faces: FaceSet, path: str | Path, folds: int = DEFAULT_FOLDS, seed: int = 0) -> int:
    """LFW-format pairs over a face set (e.g. a run's held-out test split): per fold as many
    same-person as different-person pairs, as many as the set allows; returns the pair count."""
    labels = faces.labels.numpy()
    numbers = [image_number(p, faces.identities[lab]) for p, lab in zip(faces.paths, labels)]
    if None in numbers:
        bad = faces.paths[numbers.index(None)]
        raise InputError(f"image {bad} is not numbered as pairs files need (NAME_0001.* or 1.*)")
    i, j = np.triu_indices(len(labels), k=1)
    is_same = labels[i] == labels[j]
    per = min(int(is_same.sum()), int((~is_same).sum())) // folds
    if per < 1:
        raise InputError(f"{len(labels)} faces give too few same-person pairs for {folds} folds")
    rng = np.random.default_rng(seed)
    same = rng.permutation(np.flatnonzero(is_same))[: per * folds]
    diff = rng.permutation(np.flatnonzero(~is_same))[: per * folds]

    def line(k: int) -> str:
        a, b = faces.identities[labels[i[k]]], faces.identities[labels[j[k]]]
        if a == b:
            return f"{a}\t{numbers[i[k]]}\t{numbers[j[k]]}"
        return f"{a}\t{numbers[i[k]]}\t{b}\t{numbers[j[k]]}"

    out = [f"{folds}\t{per}"]
    for f in range(folds):
        out += [line(k) for k in same[f * per : (f + 1) * per]] + [line(k) for k in diff[f * per : (f + 1) * per]]
    atomic_write_text(path, "\n".join(out) + "\n")
    return 2 * per * folds


def enrolment_split(faces: FaceSet, gallery_per_identity: int) -> tuple[FaceSet, FaceSet]:
    """The first ``gallery_per_identity`` faces of each identity (folder order) as the gallery, the rest as probes."""
    seen: dict[int, int] = {}
    rank = []
    for label in faces.labels.tolist():
        seen[label] = seen.get(label, 0) + 1
        rank.append(seen[label])
    gallery = [i for i, r in enumerate(rank) if r <= gallery_per_identity]
    probes = [i for i, r in enumerate(rank) if r > gallery_per_identity]
    if not probes:
        raise InputError(f"no identity has more than {gallery_per_identity} faces: nothing left to probe with")
    return faces.subset(gallery), faces.subset(probes)


def _embed(run_dir: str | Path, entries: list[ImageEntry]) -> torch.Tensor:
    """Both sides in one process: the owner encodes, the server embeds only what crossed."""
    owner = OwnerEncoder.from_run(run_dir)
    probes = owner.encode(load_images(entries, owner.data))
    return EmbeddingServer(owner.run.fr_weights).embed(probes).embeddings


def verification_report(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> dict:
    k = kfold_verification(scores, same, fold)
    different = int((~same).sum())
    return {
        "accuracy": k["accuracy"],
        "accuracy_std": k["std"],
        "folds": len(k["fold_accuracy"]),
        "fold_accuracy": k["fold_accuracy"],
        "thresholds": k["thresholds"],
        **{f"tar_at_far_{far:g}": tar_at_far(scores, same, far) for far in FAR_TARGETS},
        "far_resolution": 1 / max(1, different),
        "pairs": int(len(same)),
        "same_pairs": int(same.sum()),
        "different_pairs": different,
    }


def _save_plot(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_roc(scores: np.ndarray, same: np.ndarray, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    far, tar, _ = roc_curve(scores, same)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(far, tar, lw=1.5)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="chance")
    ax.set(xlabel="false accept rate", ylabel="true accept rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    _save_plot(fig, path)


def plot_cmc(cmc: np.ndarray, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = np.arange(1, len(cmc) + 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(ranks, cmc, marker=".", lw=1.5)
    ax.plot(ranks, ranks / len(cmc), "k:", lw=0.8, label="chance")
    ax.set(xlabel="rank", ylabel="identification rate", title=title, ylim=(0, 1.01))
    ax.legend(loc="lower right")
    _save_plot(fig, path)


def verify(run_dir: str | Path, pairs_file: str | Path, images: str | Path, out_dir: str | Path | None = None) -> dict:
    """``rl-mask verify``: the LFW 10-fold protocol on a run's model; writes verify.json and roc.png to ``out_dir``."""
    pairs = read_pairs(pairs_file)
    entries, index = resolve_pairs(pairs, images)
    print(f"rl-mask: {ONE_PROCESS_NOTE}", file=sys.stderr)
    scores = pair_scores(_embed(run_dir, entries), index)
    report = {"run": str(Path(run_dir).resolve()), "pairs_file": str(pairs.path), "images": len(entries), **verification_report(scores, pairs.same, pairs.fold), "note": ONE_PROCESS_NOTE}
    if out_dir:
        out = Path(out_dir)
        plot_roc(scores, pairs.same, f"verification: {report['accuracy']:.3f} (10-fold)", out / "roc.png")
        atomic_write_text(out / "verify.json", json.dumps(report, indent=2))
    return report


def identification_report(gallery: torch.Tensor, gallery_ids: list[str], probes: torch.Tensor, probe_ids: list[str]) -> tuple[dict, np.ndarray]:
    """Rank the gallery's identity templates for every probe; ``(report, cmc)``."""
    names = sorted(set(gallery_ids))
    g = F.normalize(gallery.float(), dim=1)
    column = torch.tensor([names.index(i) for i in gallery_ids])
    templates = F.normalize(torch.zeros(len(names), g.shape[1]).index_add_(0, column, g), dim=1)
    truth = torch.tensor([names.index(i) for i in probe_ids])
    cmc = cmc_curve(F.normalize(probes.float(), dim=1) @ templates.T, truth)
    report = {"top1": float(cmc[0]), "top5": float(cmc[min(4, len(cmc) - 1)]), "gallery_identities": len(names), "gallery_images": len(gallery_ids), "probes": len(probe_ids), "chance_top1": 1 / len(names)}
    return report, cmc


def identify(run_dir: str | Path, gallery: str | Path, probes: str | Path, out_dir: str | Path | None = None) -> dict:
    """``rl-mask identify``: gallery/probe identification (one folder per person); writes identify.json and cmc.png to ``out_dir``."""
    g_entries, p_entries = list_images(gallery), list_images(probes)
    enrolled = {e.identity for e in g_entries}
    for e in p_entries:
        if e.identity not in enrolled:
            raise InputError(f"probe {e.path} is of identity {e.identity!r}, which has no images in the gallery {gallery}")
    shared = {e.path.resolve() for e in g_entries} & {e.path.resolve() for e in p_entries}
    if shared:
        raise InputError(f"image {sorted(shared)[0]} is both a gallery image and a probe")
    print(f"rl-mask: {ONE_PROCESS_NOTE}", file=sys.stderr)
    emb = _embed(run_dir, g_entries + p_entries)
    report, cmc = identification_report(emb[: len(g_entries)], [e.identity for e in g_entries], emb[len(g_entries) :], [e.identity for e in p_entries])
    report = {"run": str(Path(run_dir).resolve()), **report, "cmc": cmc.tolist(), "note": ONE_PROCESS_NOTE}
    if out_dir:
        out = Path(out_dir)
        plot_cmc(cmc, f"identification: top-1 {report['top1']:.3f}", out / "cmc.png")
        atomic_write_text(out / "identify.json", json.dumps(report, indent=2))
    return report

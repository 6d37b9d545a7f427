"""The data owner's side of inference: aligned face images -> ``ProtectedProbes``.

A run's owner encodes probes exactly as its held-out faces crossed during training
(``rl_mask.owner.messages.probe_set``): the run's mask, k = 1, through the same function, so
a change to that encoding reaches inference too. Images are loaded as the training faces
were (``rl_mask.owner.data.load_image``: centre-cropped to the run's aspect ratio, resized,
converted to its colour mode); images far from that size are refused rather than stretched.
Image names never go into what crosses.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from rl_mask.config import ConfigError, DataConfig
from rl_mask.owner.data import IMAGE_SUFFIXES, FaceDataError, _sort_key, load_image, to_float
from rl_mask.owner.messages import probe_set
from rl_mask.protocol import ProtectedProbes
from rl_mask.run_folder import RunFolder, read_run
from rl_mask.server.trainer import load_fr_model
from rl_mask.use.files import InputError, owner_file, save_owner_record, save_probes

#: An image is refused if its aspect ratio is off the run's by more than this factor (the
#: crop would cut the face) or if a side must grow more than ``MAX_UPSCALE`` times.
MAX_ASPECT_CHANGE = 1.25
MAX_UPSCALE = 2.0


@dataclass(frozen=True)
class ImageEntry:
    """One image to encode: its owner-side name (relative path) and where it is."""

    name: str
    path: Path

    @property
    def identity(self) -> str:
        """The folder the image sits in (one folder per person, as in the face sets)."""
        return self.path.parent.name


def list_images(source: str | Path) -> list[ImageEntry]:
    """A folder (every image under it, sorted; names relative to it) or a text file with one
    image path per line (relative to the file's folder unless absolute; names as written)."""
    source = Path(source)
    if source.is_dir():
        found = [Path(d) / f for d, _, names in os.walk(source, followlinks=True) for f in names if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        files = sorted(found, key=lambda p: (p.parent.as_posix(), _sort_key(p.name)))  # 2.pgm before 10.pgm, as the face sets
        entries = [ImageEntry(p.relative_to(source).as_posix(), p) for p in files]
        if not entries:
            raise InputError(f"image folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return entries
    if not source.is_file():
        raise InputError(f"{source} is neither an image folder nor a list file")
    lines = [line.strip() for line in source.read_text().splitlines()]
    entries = [ImageEntry(line, (source.parent / line) if not Path(line).is_absolute() else Path(line)) for line in lines if line and not line.startswith("#")]
    if not entries:
        raise InputError(f"image list {source} names no images")
    for i, e in enumerate(entries):
        if not e.path.is_file():
            raise InputError(f"image list {source}: entry {i + 1} ({e.name}) is not a file")
    return entries


def check_size(path: Path, data: DataConfig) -> None:
    """Refuse an image that the training loader's crop-and-resize would distort past use."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise FaceDataError(f"cannot read face image {path}: {exc}") from exc
    ratio = (w / h) / (data.width / data.height)
    if max(ratio, 1 / ratio) > MAX_ASPECT_CHANGE or data.width / w > MAX_UPSCALE or data.height / h > MAX_UPSCALE:
        raise FaceDataError(
            f"face image {path} is {w}x{h} (width x height); this run takes aligned face crops of {data.width}x{data.height} "
            f"(any size within {MAX_ASPECT_CHANGE}x of that aspect ratio and at least 1/{MAX_UPSCALE:g} of it, centre-cropped and resized as in training)"
        )


def load_images(entries: list[ImageEntry], data: DataConfig) -> torch.Tensor:
    """The images as the run's faces were loaded: float ``[N, P, H, W]`` in [-1, 1]."""
    arrays = []
    for e in entries:
        check_size(e.path, data)
        arrays.append(load_image(e.path, data.height, data.width, data.color))
    return to_float(torch.from_numpy(np.stack(arrays)))


class OwnerEncoder:
    """A run's data-owner side for inference: holds the run's encoding, reads faces."""

    def __init__(self, run: RunFolder):
        self.run = run
        self.defence = run.defence
        self.data = run.cfg.data
        expected = list(self.defence.input_shape(self.data.planes, self.data.height, self.data.width))
        _, meta = load_fr_model(run.fr_weights)
        if list(meta["input_shape"]) != expected or meta["input_kind"] != self.defence.input_kind:
            raise ConfigError(
                f"{run.fr_weights} takes {meta['input_kind']} {meta['input_shape']}, but this run's config encodes faces as {self.defence.input_kind} {expected}: the model is from another run"
            )
        if self.defence.input_kind == "pixel":
            print(f"rl-mask: warning: run {run.path} uses defence {self.defence.name!r}: its probes are plain pixels, the server sees the faces", file=sys.stderr)

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "OwnerEncoder":
        return cls(read_run(run_dir))

    def describe(self) -> dict:
        """The public description of the encoding (what a white-box attacker is assumed to know)."""
        d = self.data
        return {"defence": self.defence.describe(), "image_size": [d.height, d.width], "color": d.color, "input_kind": self.defence.input_kind}

    def encode(self, images: torch.Tensor) -> ProtectedProbes:
        """Faces ``[N, P, H, W]`` in [-1, 1] -> the message the server may see."""
        return probe_set(self.defence, images)

    def encode_files(self, source: str | Path) -> tuple[ProtectedProbes, list[ImageEntry]]:
        entries = list_images(source)
        return self.encode(load_images(entries, self.data)), entries


def encode_to_files(run_dir: str | Path, source: str | Path, out: str | Path) -> tuple[Path, Path, int]:
    """``rl-mask encode``: write ``out`` (crosses) and its owner record (stays); returns both paths and the row count."""
    owner = OwnerEncoder.from_run(run_dir)
    probes, entries = owner.encode_files(source)
    out = Path(out)
    record = owner_file(out)
    save_owner_record(record, [e.name for e in entries], str(owner.run.path.resolve()), owner.describe())
    save_probes(probes, out)
    return out, record, len(probes)

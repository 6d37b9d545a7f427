"""The door between the data owner and the FR server: the only messages that cross.

The *data owner* reads the private faces, augments, masks and mixes them; the *FR server*
(honest but curious) trains the FR network. The owner measures the network's utility on its
own side, with the weights the server hands back: no held-out face crosses to evaluate it. Everything below crosses, and so
is what an attacker at the server has (with the trained model); nothing else crosses: no
provenance (which faces were mixed), no raw faces, no statistics of raw faces, no paths.

Owner -> server
  ``TrainingSetup``   once per run: what the server needs to build the FR network (with
                      ``FRHyperparameters``: the server's part of the owner's ``FRConfig``).
  ``ProtectedBatch``  once per FR step: the protected inputs with their labels and weights.
  ``ProtectedProbes`` inference (``rl-mask encode``): the k = 1 encoding of faces to embed
                      (channel removal, the owner's key, evaluation sign flips; no mixing),
                      nothing else (no names, no labels: those stay with the owner).
Server -> owner
  ``StepReport``      the loss of a step.
  ``TrainedModel``    the FR network's weights (on request, e.g. every ``rl.eval_every`` FR
                      steps, and at the end: ``RUN_DIR/fr.pt``): the owner scores its own
                      validation and test encodings with them (``rl_mask.use.held_out``).
  ``ProbeEmbeddings`` the trained model's embedding of each probe, in the probes' order.

Every field is listed in the README's threat-model section; attacks (``rl_mask.attacks``)
may use every one of them.

Owner -> attacker in the loop (a measuring instrument standing where the server stands)
  ``AttackerSetup``   once per run: the public algorithm's parameters (``PublicMask``, the
                      policy's ``SettingsChoices``), the faces' shape and the attacker's own
                      hyperparameters; never the owner's ``Config`` (no data root, no key seed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from rl_mask.config import DPConfig, FRConfig, ModelConfig


@dataclass(frozen=True)
class ProtectedBatch:
    """One protected training batch, as it crosses.

    Row ``i`` of ``inputs`` mixes k faces with weights ``weights[i]`` (rows sum to 1);
    ``labels[i, j]`` is the private identity of the face in column j. Column 0 is the face
    drawn for row i itself, columns 1..k-1 its partners (other faces of the same batch): the
    mixing algorithm is public, so this layout is part of what crosses. Which faces the
    partners are (the provenance) does not cross.
    """

    inputs: torch.Tensor  # [B, C, h, w] float
    labels: torch.Tensor  # [B, k] long
    weights: torch.Tensor  # [B, k] float

    @property
    def k(self) -> int:
        return int(self.weights.shape[1])

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def soft_labels(self, num_classes: int) -> torch.Tensor:
        """The weighted sum of the one-hot labels of the mixed faces, ``[B, num_classes]``."""
        out = torch.zeros(self.labels.shape[0], num_classes, dtype=self.weights.dtype, device=self.weights.device)
        return out.scatter_add_(1, self.labels.clamp_min(0), self.weights)

    @property
    def dominant_label(self) -> torch.Tensor:
        """The identity of the largest-weight face of each row."""
        return self.labels.gather(1, self.weights.argmax(dim=1, keepdim=True)).squeeze(1)

    def to(self, device: torch.device | str) -> "ProtectedBatch":
        return ProtectedBatch(self.inputs.to(device), self.labels.to(device), self.weights.to(device))

    def as_arrays(self) -> dict[str, torch.Tensor]:
        """The fields by their message names (what ``export-masked`` writes unprefixed)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __reduce__(self):
        """How it travels (pickle: Ray's transport between owner and server): CPU tensors as
        numpy arrays, which pickle protocol 5 hands over as out-of-band buffers, so Ray copies
        the inputs into its object store once instead of pickling them (half the cost of a
        call that carries a batch: it is on the owner's critical path every env step)."""
        tensors = (self.inputs, self.labels, self.weights)
        if all(t.device.type == "cpu" and not t.requires_grad for t in tensors):
            return _protected_from_arrays, tuple(t.numpy() for t in tensors)
        return ProtectedBatch, tensors


def _protected_from_arrays(inputs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> ProtectedBatch:
    """A ``ProtectedBatch`` from the arrays it travelled as (copied only where they arrive
    read-only, as zero-copy reads from Ray's object store do)."""
    return ProtectedBatch(*(torch.from_numpy(np.require(a, requirements="W")) for a in (inputs, labels, weights)))


@dataclass(frozen=True)
class ProtectedProbes:
    """Faces to embed at inference, encoded as every held-out face is
    (``rl_mask.owner.messages.held_out_encoding``). Only the tensor crosses: which image each
    row is, and whose face, stays with the data owner."""

    inputs: torch.Tensor  # [N, C, h, w]

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass(frozen=True)
class ProbeEmbeddings:
    """The server's answer to ``ProtectedProbes``: one embedding per probe row, same order."""

    embeddings: torch.Tensor  # [N, D]

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])


@dataclass(frozen=True)
class FRHyperparameters:
    """The FR hyperparameters the server trains with: ``FRConfig`` less the owner's own fields
    (``augment``: how it prepares its private faces; ``eval_every`` / ``threads``: its own
    evaluation and ``train-fr`` loop). ``batch_size`` sets DP-SGD's sampling rate."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    device: str
    rows_per_step: int
    step_wait_ms: float
    precision: str
    channels_last: bool

    @classmethod
    def of(cls, fr: FRConfig) -> "FRHyperparameters":
        return cls(**{f.name: getattr(fr, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class TrainingSetup:
    """What the server is told once: the input tensor's shape and kind, how many private
    identities (the classifier's width) and training faces (DP-SGD's sampling rate), the
    planned FR steps, and the model / optimiser / DP hyperparameters."""

    input_shape: tuple[int, int, int]
    input_kind: str  # "freq" or "pixel"
    num_classes: int
    train_size: int
    total_steps: int
    private_training: bool
    model: ModelConfig
    fr: FRHyperparameters
    dp: DPConfig

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingSetup":
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        d["model"] = ModelConfig(**d["model"])
        d["fr"] = FRHyperparameters(**d["fr"])
        d["dp"] = DPConfig(**d["dp"])
        return cls(**d)


@dataclass(frozen=True)
class PublicMask:
    """The deployed mask's public parameters (``MaskConfig`` less the key seed and the
    owner-seeded evaluation flips; the key's construction is public): what
    ``HybridMask.from_config`` reads."""

    removed_channels: tuple[int, ...]
    weights: str
    alpha: float
    cap: float
    sign_flip: bool
    upsample: int
    key: str = "none"  # the key's construction (public, Kerckhoffs); its seed never crosses

    @classmethod
    def of(cls, mask) -> "PublicMask":
        return cls(tuple(int(c) for c in mask.removed_channels), mask.weights, mask.alpha, mask.cap, mask.sign_flip, mask.upsample, mask.key)


@dataclass(frozen=True)
class SettingsChoices:
    """The policy's choices for each per-batch knob (``rl_mask.mask.settings.SettingsSpace.from_config`` reads them)."""

    k_choices: tuple[int, ...]
    flip_choices: tuple[float, ...]
    extra_removed_choices: tuple[int, ...]
    alpha_choices: tuple[float, ...]
    label_choices: tuple[str, ...]

    @classmethod
    def of(cls, rl) -> "SettingsChoices":
        return cls(*(tuple(getattr(rl, f.name)) for f in fields(cls)))


@dataclass(frozen=True)
class AttackerSetup:
    """What the attacker in the loop is told once (``rl_mask.owner.messages.attacker_setup``):
    the public algorithm it simulates, the shape ``(P, H, W)`` of the faces, whether the env
    waits for it (``mode``: exact | sampled) and its own decoder's hyperparameters."""

    image_shape: tuple[int, int, int]
    mask: PublicMask
    settings: SettingsChoices
    mode: str
    batch_size: int
    lr: float
    train_steps: int
    warmup_steps: int
    rows: int
    widths: tuple[int, ...]
    seed: int
    recover: bool = True  # estimate the owner's key from what crossed and attack with it undone too

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AttackerSetup":
        d = dict(d)
        d["image_shape"] = tuple(d["image_shape"])
        d["mask"] = PublicMask(**{**d["mask"], "removed_channels": tuple(d["mask"]["removed_channels"])})
        d["settings"] = SettingsChoices(**{k: tuple(v) for k, v in d["settings"].items()})
        d["widths"] = tuple(d["widths"])
        return cls(**d)


@dataclass(frozen=True)
class StepReport:
    """The server's answer to a ``ProtectedBatch``."""

    loss: float
    fr_step: int
    loss_ema: float  # the server's moving average of the loss over every sender's batches


@dataclass(frozen=True)
class TrainedModel:
    """The server's answer to a weights request: the FR network as it stands after ``fr_step``
    steps. The network is what the attacker has anyway; handing it back lets the owner measure
    utility on held-out faces that never cross. ``file_content`` is ``RUN_DIR/fr.pt``."""

    state_dict: dict
    meta: dict  # what builds the network: input shape and kind, classes, model config
    fr_step: int

    def file_content(self) -> dict:
        return {"state_dict": self.state_dict, "meta": self.meta}


def pad_columns(t: torch.Tensor, k: int, value: float) -> torch.Tensor:
    """``[B, j]`` -> ``[B, k]``, the new columns filled with ``value`` (a batch of smaller k)."""
    return torch.cat([t, t.new_full((t.shape[0], k - t.shape[1]), value)], dim=1)


def concat_protected(batches: list[ProtectedBatch]) -> ProtectedBatch:
    """Several messages as one, rows in sending order; batches with fewer mixed faces than
    the largest k are padded with columns of weight 0 and label -1."""
    kept = [b for b in batches if len(b) > 0]
    if not kept:
        raise ValueError("no protected rows in the given messages")
    k = max(b.k for b in kept)
    return ProtectedBatch(
        torch.cat([b.inputs for b in kept]),
        torch.cat([pad_columns(b.labels, k, -1) for b in kept]),
        torch.cat([pad_columns(b.weights, k, 0.0) for b in kept]),
    )


#: The field names of each message, as the README documents them (tests keep both in step).
MESSAGE_FIELDS = {cls.__name__: tuple(f.name for f in fields(cls)) for cls in (TrainingSetup, ProtectedBatch, StepReport, TrainedModel, ProtectedProbes, ProbeEmbeddings)}

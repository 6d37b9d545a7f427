"""The one interface every defence has: how a training batch leaves the data owner.

A defence turns a batch of private faces into what the FR trainer (and any eavesdropper)
sees, with provenance, and says how inference images are encoded. Attacks and the
benchmark only talk to this interface.
"""

from __future__ import annotations

import abc

import torch

from rl_mask.mask.masking import MaskedBatch


class Defence(abc.ABC):
    name: str = "defence"
    #: "freq" (block-DCT channels) or "pixel": which input map the FR backbone uses.
    input_kind: str = "pixel"
    #: True for defences in the training procedure itself (DP-SGD): the FR trainer then
    #: clips and noises per-sample gradients (``rl_mask.server.private``).
    private_training: bool = False

    @property
    def signs_random(self) -> bool:
        """Whether every message this defence sends (training rows and k = 1 messages alike)
        has each coefficient's sign flipped with probability 0.5: then the signs carry nothing
        and an FR network loses nothing by reading magnitudes (``model.input_map=auto``)."""
        return False

    @abc.abstractmethod
    def input_shape(self, planes: int, height: int, width: int) -> tuple[int, int, int]:
        """``(channels, h, w)`` of the encoded tensor, as the backbone sees it after its input map."""

    @abc.abstractmethod
    def encode_train(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> MaskedBatch:
        """Protect a training batch ``images [B, P, H, W]`` in [-1, 1] with ``labels [B]``."""

    @abc.abstractmethod
    def encode_eval(self, images: torch.Tensor) -> torch.Tensor:
        """Encode held-out / inference faces (no mixing)."""

    @abc.abstractmethod
    def to_pixels(self, encoded: torch.Tensor) -> torch.Tensor:
        """What a person sees of an encoded tensor, as ``[B, P, H, W]`` images."""

    def public(self) -> "Defence":
        """The defence as an attacker can run it: every public parameter, no owner-held secret
        (``rl_mask.owner.key``). Attacks are fitted on this, never on the owner's own."""
        return self

    def describe(self) -> dict:
        """The defence's parameters (what a white-box attacker is assumed to know)."""
        return {"name": self.name}

    def simulation_params(self) -> dict:
        """What decides how this defence encodes the faces an attacker trains on (two defences
        with equal parameters here share a fitted attack): by default all it describes."""
        return self.describe()

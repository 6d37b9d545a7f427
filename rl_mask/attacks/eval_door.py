"""The probe door: held-out faces cross only as inference probes (``ProtectedProbes``, the
k = 1 encoding ``Defence.encode_eval``; validation and test are scored on the owner's side and
never sent). ``EvalMessageView`` presents that encoding as a defence whose "training batches"
are those messages, so that the white-box decoder trains on exactly what the door sends and
attacks it like any batch."""

from __future__ import annotations

import torch

from rl_mask.attacks.base import AttackTarget
from rl_mask.mask.defences.base import Defence
from rl_mask.mask.defences.hybrid import HybridDefence
from rl_mask.mask.masking import MaskedBatch
from rl_mask.protocol import ProtectedBatch

#: The fields of ``HybridDefence.describe`` its held-out encoding (``encode_eval``) depends on.
HELD_OUT_ENCODING = ("removed_channels", "upsample", "sign_flip", "key", "eval_flip", "eval_extra_removed")


class EvalMessageView(Defence):
    def __init__(self, defence: Defence):
        self.defence = defence
        self.name = f"{defence.name}@eval"
        self.input_kind = defence.input_kind

    def input_shape(self, planes: int, height: int, width: int) -> tuple[int, int, int]:
        return self.defence.input_shape(planes, height, width)

    def encode_train(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> MaskedBatch:
        n = images.shape[0]
        own = torch.arange(n)[:, None]
        return MaskedBatch.of(self.defence.encode_eval(images), labels[:, None], torch.ones(n, 1), own)

    def encode_eval(self, images: torch.Tensor) -> torch.Tensor:
        return self.defence.encode_eval(images)

    def to_pixels(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.defence.to_pixels(encoded)

    def describe(self) -> dict:
        return {**self.defence.describe(), "message": "evaluation (k = 1)"}

    def simulation_params(self) -> dict:
        """A hybrid defence's k = 1 held-out encoding reads the mask, the key, ``eval_flip`` and ``eval_extra_removed``,
        not how training rows are mixed: rows alike there share one door decoder."""
        if not isinstance(self.defence, HybridDefence):
            return self.describe()
        d = self.defence.describe()
        return {"message": "evaluation (k = 1)", **{k: d[k] for k in HELD_OUT_ENCODING if k in d}}


def eval_message_target(public_defence: Defence, inputs: torch.Tensor, labels: torch.Tensor, model, num_classes: int) -> AttackTarget:
    """k = 1 messages that crossed (inference probes: ``inputs``, with the private ``labels``
    only the scoring knows: a probe carries none, and the white-box decoder reads none) as one
    attack target: one row per face, the attacker simulating the public held-out encoding."""
    crossed = [ProtectedBatch(inputs, labels[:, None].clone(), torch.ones(len(labels), 1))]
    return AttackTarget(EvalMessageView(public_defence), crossed, model, num_classes)

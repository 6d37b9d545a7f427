"""The attacker in the loop: a white-box reconstruction attacker that trains while the policy does.

It stands where the FR server stands and gets exactly the boundary messages
(``ProtectedBatch``), one per env step, plus, under the white-box assumption, the public
parameters the batch was made with (the policy's ``MaskSettings`` for it: Kerckhoffs, the
masking algorithm and its knobs are not secret; only which faces were mixed is). For each
batch it

1. takes ``train_steps`` decoder steps on its own public faces protected with *those*
   settings (the decoder follows the policy as it moves), half the rows mixed as the batch
   was and half unmixed (k = 1 with the same channels), so one ``BlockUNet`` serves both
   attacks below (a sampled run gives it only some batches, each with the settings of the
   batches sent since the last: it learns from those too, as it would have seen them cross);
2. decodes every crossed row (the white-box reconstruction: the row's dominant face);
3. where labels and weights crossed (``labels='soft'``), k > 1 and no signs were flipped:
   the label-aware attack's correlation step finds each row's partners among the batch's
   faces by identity, unmixes the linear system and decodes each unmixed face;
4. where the owner keys its messages with a rotation (``channels``, ``positions``: the
   construction is public, the seed is not) and the batch was sent without flips: both
   attacks again on the rows with the key it has estimated from the batches so far undone
   (``whitebox+recover``, ``label-aware+recover``; ``rl_mask.attacks.online_key``), as the
   benchmark's ``+recover`` attacks do.

It returns the reconstructions; the data owner, who holds the originals, scores them with its
own judge (``rl_mask.owner.judge.privacy.batch_leak``). It never sees provenance or originals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rl_mask.attacks.decoder import BlockUNet, decode_encoded
from rl_mask.attacks.label_aware import correlation_assignment, partner_candidates
from rl_mask.attacks.online_key import OnlineKeyRecovery
from rl_mask.attacks.reconstruction import light_jitter
from rl_mask.attacks.unmix import unmix
from rl_mask.mask.augment import augment
from rl_mask.mask.masking import HybridMask
from rl_mask.mask.settings import MaskSettings, SettingsSpace
from rl_mask.protocol import AttackerSetup, ProtectedBatch


class OnlineAttacker:
    def __init__(
        self,
        public: torch.Tensor,
        mask: HybridMask,
        settings_space: list[MaskSettings],
        batch_size: int = 16,
        lr: float = 2e-3,
        train_steps: int = 1,
        warmup_steps: int = 100,
        seed: int = 0,
        device: str = "cpu",
        rows: int = 0,
        widths: tuple[int, int, int] = (64, 128, 192),
        key_kind: str = "none",
        recover: bool = True,
    ):
        self.public = public.float()
        self.mask = mask.public()  # never the owner's key
        self.space = list(settings_space)
        self.batch_size = min(batch_size, public.shape[0])
        self.train_steps = train_steps
        self.rows = rows  # rows attacked per batch (0: all); a random subset estimates the batch's leak
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # a seeded decoder, without touching the caller's global RNG
            torch.manual_seed(seed)
            self.decoder = BlockUNet(public.shape[1], tuple(widths)).to(self.device)
        # input scale from a random sample of the settings the policy may choose
        sample = torch.randperm(len(self.space), generator=self.generator)[:8].tolist()
        self.decoder.set_input_scale(torch.cat([self._pairs(self.space[i])[0] for i in sample]).to(self.device))
        self.opt = torch.optim.AdamW(self.decoder.parameters(), lr=lr, weight_decay=1e-4)
        # the owner's key, estimated from what crossed (None: no key, or one it cannot recover)
        self.key = OnlineKeyRecovery(key_kind) if recover and OnlineKeyRecovery.supported(key_kind) else None
        self.steps = 0
        self.batches = 0
        for _ in range(warmup_steps):
            self._train_step(self.space[int(torch.randint(len(self.space), (1,), generator=self.generator))])

    @classmethod
    def from_setup(cls, setup: AttackerSetup, public: torch.Tensor, device: str = "cpu") -> "OnlineAttacker":
        """The attacker of an ``rl-mask train`` run, from what the owner tells it: the deployed
        mask's public parameters, every setting the policy can choose, its own sizes."""
        if tuple(public.shape[1:]) != tuple(setup.image_shape):
            raise ValueError(f"attacker setup: public faces of shape {tuple(public.shape[1:])} do not match image_shape {tuple(setup.image_shape)}")
        return cls(
            public,
            HybridMask.from_config(setup.mask, setup.image_shape[0]),  # the public algorithm: never the owner's key
            SettingsSpace.from_config(setup.settings).all(),
            setup.batch_size,
            setup.lr,
            setup.train_steps,
            setup.warmup_steps,
            setup.seed,
            device,
            setup.rows,
            setup.widths,
            setup.mask.key,
            setup.recover,
        )

    def _pairs(self, settings: MaskSettings) -> tuple[torch.Tensor, torch.Tensor]:
        """Public faces protected with ``settings`` (half mixed, half unmixed) -> (view, target face)."""
        n = self.public.shape[0]
        idx = torch.randperm(n, generator=self.generator)[: self.batch_size]
        faces = light_jitter(augment(self.public[idx], self.generator), self.generator)
        half = max(2, self.batch_size // 2) if settings.k > 1 else self.batch_size
        k = min(settings.k, half)
        mixed = self.mask.apply(faces[:half], torch.arange(half), dataclasses.replace(settings, k=k), self.generator)
        views, targets = [self.mask.to_pixels(mixed.inputs)], [faces[:half][mixed.dominant_source]]
        if half < faces.shape[0]:
            single = dataclasses.replace(settings, k=1, flip=0.0)
            rest = faces[half:]
            views.append(self.mask.to_pixels(self.mask.apply(rest, torch.arange(len(rest)), single, self.generator).inputs))
            targets.append(rest)
        return torch.cat(views), torch.cat(targets)

    def _simulated(self, settings: MaskSettings, n: int) -> torch.Tensor:
        """``n`` of its public faces protected as a batch with ``settings`` is, without a key:
        what the key estimate compares the crossed rows with."""
        idx = torch.randint(self.public.shape[0], (n,), generator=self.generator)
        faces = augment(self.public[idx], self.generator)
        return self.mask.apply(faces, torch.arange(n), settings, self.generator).inputs

    def _train_step(self, settings: MaskSettings) -> float:
        self.decoder.train()
        view, target = self._pairs(settings)
        loss = F.l1_loss(self.decoder(view.to(self.device)), target.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps += 1
        return float(loss.detach())

    def _decode(self, encoded: torch.Tensor) -> torch.Tensor:
        self.decoder.eval()
        return decode_encoded(self.decoder, self.mask.to_pixels, encoded)

    def label_aware_applies(self, batch: ProtectedBatch, settings: MaskSettings) -> bool:
        return batch.k > 1 and settings.labels == "soft" and settings.flip == 0.0

    def observe(self, batch: ProtectedBatch, settings: MaskSettings, crossed_since: Sequence[MaskSettings] = ()) -> dict:
        """Learn from the batch's settings, then attack ``rows`` of the batch (a random subset, or
        all): ``{"rows": [n], "whitebox": [n, P, H, W]}`` and, where they apply,
        ``"label-aware"`` (each attacked row's own face, unmixed from the whole batch) and the
        ``+recover`` variants of both (the key estimate undone first).

        ``crossed_since``: the settings of the batches sent since the last one it was given
        (``rl.attacker_mode=sampled`` gives it only some). A server sees every batch cross, so
        the attacker learns from each of them first, as many steps as an exact run's would."""
        for past in (*crossed_since, settings):
            for _ in range(self.train_steps):
                self._train_step(past)
        self.batches += 1
        inputs = batch.inputs.detach().cpu().float()
        n = len(batch)
        rows = torch.randperm(n, generator=self.generator)[: self.rows].sort().values if 0 < self.rows < n else torch.arange(n)
        out = {"rows": rows, "whitebox": self._decode(inputs[rows])}
        unmixed = None
        if self.label_aware_applies(batch, settings):
            labels = batch.labels.cpu()
            x = inputs.reshape(n, -1).double()
            # an orthogonal key keeps every inner product: the assignment holds for the undone rows too
            assignment = correlation_assignment(x, labels, partner_candidates(labels))
            unmixed = unmix(inputs, batch.weights.cpu(), assignment)[rows]
            out["label-aware"] = self._decode(unmixed)
        if self.key is not None and self.key.applies(settings):
            self.key.hold(inputs, self._simulated(settings, n))
            out["whitebox+recover"] = self._decode(self.key.undo(inputs[rows]))
            if unmixed is not None:
                out["label-aware+recover"] = self._decode(self.key.undo(unmixed))
        return out

    def set_train_steps(self, steps: int) -> int:
        """Decoder steps per batch from now on (0 freezes the attacker, e.g. to score two policies
        against the same attacker); returns the previous value."""
        previous, self.train_steps = self.train_steps, int(steps)
        return previous

    def info(self) -> dict:
        return {"decoder_steps": self.steps, "batches_attacked": self.batches, "device": str(self.device), **(self.key.info() if self.key else {})}

"""Gymnasium env (data owner side): the policy picks k, the env protects a batch, the FR server learns.

Each ``step(action)``:
  1. k = ``k_choices[action]``;
  2. the next batch of private training faces (drawn and augmented beforehand by the same
     ``TrainingStream`` and defence object as ``train-fr``, so the observation can describe
     it) is encoded by the ``adaptive`` defence with that k;
  3. only its ``ProtectedBatch`` crosses to the shared FR server for one training step
     (the Ray FR actor, or a local ``FRService``), recorded as sent (``BoundaryRecorder``);
  4. reward = FR loss on that mixed batch - lambda * max(0, floor - validation accuracy),
     where validation accuracy is the FR server's latest identification accuracy on the k = 1
     validation encodings the owner sent (measured every ``rl.eval_every`` FR steps); the
     test split is never used here. See ``envs.reward``.

Observation (float32 vector, ``5 + len(k_choices) + 4`` entries):
  [0] FR training progress: FR steps done / planned, clipped to [0, 1]
  [1] episode progress: steps taken / horizon
  [2] recent FR loss (the FR service's moving average over every env runner's batches)
  [3] latest validation identification accuracy
  [4] validation accuracy - accuracy floor
  [5 : 5+n] previous action, one-hot (all zero after reset)
  [-4:] log(1 + mean energy) of the next batch's kept coefficients in four zig-zag bands
        (channels 0-5, 6-14, 15-27, 28-63); a band fully removed reads 0.

Episodes are truncated after ``rl.horizon`` steps (no terminal state). Each env instance
has its own seed (from the worker and vector index) and so its own batch order.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from envs.fr_client import FRClient
from envs.reward import reward_parts
from rl_mask.config import Config, from_dict
from rl_mask.owner.defences import build_defence
from rl_mask.owner.freq import CHANNELS_PER_PLANE
from rl_mask.owner.recorder import BoundaryRecorder
from rl_mask.owner.stream import TrainingStream, prepare_shard

BANDS = ((0, 6), (6, 15), (15, 28), (28, 64))


class HybridMaskingEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, env_config: dict | None = None):
        # RLlib passes an EnvContext: a dict with worker_index / vector_index attributes.
        worker = int(getattr(env_config, "worker_index", None) or (env_config or {}).get("worker_index", 0))
        vector = int(getattr(env_config, "vector_index", None) or (env_config or {}).get("vector_index", 0))
        env_config = dict(env_config or {})
        cfg = env_config.get("config")
        self.cfg: Config = cfg if isinstance(cfg, Config) else from_dict(cfg)
        self.cfg.validate()
        rl = self.cfg.rl
        self.k_choices = list(rl.k_choices)
        self.horizon = rl.horizon
        self.floor = rl.accuracy_floor
        self.lam = rl.utility_lambda
        self.total_fr_steps = int(env_config.get("total_fr_steps", rl.iterations * rl.train_batch_size))
        self.train_fr = bool(env_config.get("train_fr", True))
        self.fr = FRClient(env_config.get("fr_service"), env_config.get("fr_actors"), env_config.get("namespace"), env_config.get("fr_local"))
        self.base_seed = rl.seed + 10_007 * worker + 101 * vector
        run_dir = env_config.get("run_dir")
        self.recorder = BoundaryRecorder(run_dir, f"env-w{worker:03d}-v{vector:02d}", rl.record_masked_batches) if run_dir and self.train_fr else None

        # Each remote env runner (worker 1..R) holds only its shard of the private training
        # faces; the local one (worker 0: debug mode) and policy scoring hold them all.
        runners = rl.num_env_runners
        self.data = prepare_shard(self.cfg, worker - 1, runners) if 1 <= worker <= runners else prepare_shard(self.cfg, 0, 1)
        # The same defence object and batch path as train-fr; the policy's action sets k.
        self.defence = build_defence(self.cfg, "adaptive", k_choices=self.k_choices)
        kept = self.defence.mask.kept % CHANNELS_PER_PLANE
        self._band_index = [torch.nonzero((kept >= lo) & (kept < hi)).flatten() for lo, hi in BANDS]

        n = len(self.k_choices)
        self.action_space = gym.spaces.Discrete(n)
        low = np.array([0, 0, 0, 0, -1] + [0] * n + [0] * len(BANDS), dtype=np.float32)
        high = np.array([1, 1, 1e3, 1, 1] + [1] * n + [50] * len(BANDS), dtype=np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self._seed(self.base_seed)
        self._t = 0
        self._prev_action: int | None = None
        self._status = {"val_acc": 0.0, "fr_step": 0, "loss_ema": 0.0}

    def _seed(self, seed: int) -> None:
        self.stream = TrainingStream(self.cfg, self.defence, self.data, seed=seed)

    def _draw_batch(self) -> None:
        self._idx, self._images = self.stream.draw()

    def _band_energy(self) -> list[float]:
        energy = self.defence.encode_eval(self._images).pow(2).mean(dim=(0, 2, 3))
        return [float(torch.log1p(energy[i].mean())) if i.numel() else 0.0 for i in self._band_index]

    def _obs(self) -> np.ndarray:
        n = len(self.k_choices)
        onehot = [0.0] * n
        if self._prev_action is not None:
            onehot[self._prev_action] = 1.0
        acc = float(self._status["val_acc"])
        obs = [
            min(1.0, self._status["fr_step"] / max(1, self.total_fr_steps)),
            self._t / self.horizon,
            float(self._status["loss_ema"]),
            acc,
            acc - self.floor,
            *onehot,
            *self._band_energy(),
        ]
        return np.clip(np.asarray(obs, dtype=np.float32), self.observation_space.low, self.observation_space.high)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._seed(int(seed))
        self._t = 0
        self._prev_action = None
        self._status = self.fr.call("status")
        self._draw_batch()
        return self._obs(), {}

    def step(self, action):
        return self.receive(self.send(action))

    def send(self, action) -> tuple:
        """Protect the drawn batch with the action's k and send it (the door: only its
        ``ProtectedBatch`` crosses); draw the next batch while the server computes."""
        a = int(action)
        if not self.action_space.contains(a):
            raise ValueError(f"action {action!r} is not in 0..{len(self.k_choices) - 1}")
        k = self.k_choices[a]
        batch = self.stream.encode(self._idx, self._images, k=k)
        sent = batch.masked.protected()
        if self.train_fr:
            if self.recorder is not None:
                self.recorder.record(sent, batch.provenance().sources)
            handle = self.fr.submit("train_step", sent)
        else:
            handle = self.fr.submit("eval_loss", sent)
        self._draw_batch()
        return a, k, handle

    def receive(self, pending: tuple):
        """The step's answer from the server -> (obs, reward, terminated, truncated, info)."""
        a, k, handle = pending
        result = self.fr.result(handle)
        if not self.train_fr:
            result = {**self.fr.call("status"), "loss": result}
        loss = float(result["loss"])
        self._status = {key: result[key] for key in ("val_acc", "fr_step", "loss_ema")}
        parts = reward_parts(loss, self._status["val_acc"], self.floor, self.lam)
        self._t += 1
        self._prev_action = a
        info = {"k": k, "fr_loss": loss, "val_acc": self._status["val_acc"], "fr_step": self._status["fr_step"], **parts}
        return self._obs(), float(parts["reward"]), False, self._t >= self.horizon, info

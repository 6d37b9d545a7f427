"""Gymnasium env (data owner side): the policy sets the masking knobs, the env protects a
batch, the FR server learns from it and the attacker in the loop attacks it.

Each ``step(action)``:
  1. the action (``MultiDiscrete``: one index per knob of ``rl_mask.mask.settings``: k,
     sign-flip probability, extra removed channels, weight concentration, soft/hard labels)
     is decoded and validated into the batch's ``MaskSettings``;
  2. the next batch of private training faces (drawn and augmented beforehand by the same
     ``TrainingStream`` and defence object as ``train-fr``, so the observation can describe
     it) is protected with those settings;
  3. only its ``ProtectedBatch`` crosses: to the shared FR server for one training step
     (the Ray FR actor, or a local ``FRService``) and to the attacker in the loop
     (``rl_mask.attacks.online``: its own Ray actor, or local), which gets the settings too
     (white-box); the batch is recorded as sent (``BoundaryRecorder``, with its settings);
  4. the owner scores the attacker's reconstructions of the batch with its own judge (any of
     the row's k identities, strongest attack per row): the batch's *leak*. With
     ``rl.attacker_mode=sampled`` only a random ``rl.attacker_sample_rate`` of the batches go
     to the attacker (each with the settings of the batches sent since the last, so that it
     learns from every batch as an exact run's attacker does), and the env does not wait
     for them: it scores the attacks that have finished and reads every batch's leak at once
     from its per-setting estimate (``rl_mask.owner.judge.leak_estimate``); until the first
     attack is scored it waits for it; with ``rl.leak_reward=estimate`` (default) an exact
     run's judged leaks join that estimate too and the reward reads the setting's estimate
     (``leak_judged`` keeps the batch's own):
     a batch judged on 16 rows carries about 10 points of binomial noise, its setting's recent
     batches average it away;
  5. reward (``envs.reward``, ``rl.reward``): ``leak``: -leak_lambda * leak - utility
     penalty; ``paper``: FR loss on the batch - utility penalty; ``leak+paper``: both. The
     utility penalty is lambda * max(0, floor - validation accuracy): the env scores the FR
     network the server hands back (``TrainedModel``, fetched once every ``rl.eval_every``
     FR steps, once for all the sub-envs of a runner: ``envs.validation``) on its own k = 1
     encodings of the validation faces, which never cross (``rl_mask.use.held_out``); the
     test split is never used here.

Observation (float32 vector, ``7 + 2 * sum(nvec) + 4`` entries):
  [0] FR training progress: FR steps done / planned, clipped to [0, 1]
  [1] episode progress: steps taken / horizon
  [2] recent FR loss (the FR service's moving average over every env runner's batches)
  [3] latest validation identification accuracy (scored by the owner, see 5.)
  [4] validation accuracy - accuracy floor
  [5] the attacker's recent leak (moving average over this env's batches)
  [6] the attacker's leak on the previous batch
  [7 : 7+sum(nvec)] previous action, one-hot per knob (all zero after reset)
  [7+sum(nvec) : 7+2*sum(nvec)] the attacker's recent success per knob value: for each value
        of each knob, the moving average of the leak of the batches sent with it (0 until one
        is scored), so the policy can see which settings the attacker has learned to beat
  [-4:] log(1 + mean energy) of the next batch's kept coefficients in four zig-zag bands
        (channels 0-5, 6-14, 15-27, 28-63); a band fully removed reads 0.

Episodes are truncated after ``rl.horizon`` steps (no terminal state). Each env instance
has its own seed (from the worker and vector index) and so its own batch order.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from envs.reward import reward_parts
from envs.validation import ValidationScore
from envs.wiring import read_env_config
from rl_mask.checkpoint import CheckpointError, build_checked, load_checkpoint
from rl_mask.config import Config
from rl_mask.mask.freq import CHANNELS_PER_PLANE
from rl_mask.mask.settings import DIMENSIONS, SettingsSpace
from rl_mask.owner.defences import build_defence
from rl_mask.owner.judge.evaluator import EvaluationModel
from rl_mask.owner.judge.leak_estimate import LeakEstimate
from rl_mask.owner.judge.privacy import batch_leak
from rl_mask.owner.recorder import BoundaryRecorder
from rl_mask.owner.stream import TrainingStream, prepare_shard
from rl_mask.use.held_out import validation_set

BANDS = ((0, 6), (6, 15), (15, 28), (28, 64))
LEAK_EMA = 0.9
ATTACKS_IN_FLIGHT = 2  # per env, rl.attacker_mode=sampled


def load_judge(judge) -> EvaluationModel | None:
    """The owner's judge: a model, or the path of ``RUN_DIR/judge.pt`` (never unpickled)."""
    if judge is None or isinstance(judge, EvaluationModel):
        return judge
    state = load_checkpoint(judge, required=("state_dict", "planes", "num_classes", "pool"))
    sizes = (state["planes"], state["num_classes"], state["pool"])
    if not all(isinstance(v, int) and v >= 1 for v in sizes) or state["planes"] not in (1, 3):
        raise CheckpointError(f"checkpoint {judge}: planes, num_classes, pool = {sizes} are not the sizes of a judge")
    return build_checked(lambda: EvaluationModel(*sizes[:2], pool=sizes[2]), state["state_dict"], judge).eval()


class HybridMaskingEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, env_config: dict | None = None):
        # RLlib passes an EnvContext: a dict with worker_index / vector_index attributes.
        wiring, worker, vector = read_env_config(env_config)
        self.wiring = wiring
        self.cfg: Config = wiring.config
        rl = self.cfg.rl
        self.space = SettingsSpace.from_config(rl)
        self.horizon = rl.horizon
        self.floor = rl.accuracy_floor
        self.total_fr_steps = wiring.planned_fr_steps
        self.train_fr = wiring.train_fr
        self.fr = wiring.fr.client()
        self.attacker = None if wiring.attacker is None else wiring.attacker.client()
        self.judge = load_judge(wiring.judge)
        self.base_seed = rl.seed + 10_007 * worker + 101 * vector
        self.sampled = self.attacker is not None and rl.attacker_mode == "sampled"
        self.sample_rate = rl.attacker_sample_rate if self.sampled else 1.0
        self.leak_estimate = LeakEstimate()
        self._attack_rng = np.random.default_rng(self.base_seed + 4_243)
        self._attacks: list[tuple] = []  # sampled attacks in flight: (handle, settings, owner labels)
        self._crossed_since: list = []  # sampled: settings of the batches sent since the last one attacked
        run_dir = wiring.run_dir
        self.recorder = BoundaryRecorder(run_dir, f"env-w{worker:03d}-v{vector:02d}", rl.record_masked_batches) if run_dir and self.train_fr else None

        # Each remote env runner (worker 1..R) holds only its shard of the private training
        # faces; the local one (worker 0: debug mode) and policy scoring hold them all.
        runners = rl.num_env_runners
        self.data = prepare_shard(self.cfg, worker - 1, runners) if 1 <= worker <= runners else prepare_shard(self.cfg, 0, 1)
        # The same defence object and batch path as train-fr; the policy's action sets the knobs.
        self.defence = build_defence(self.cfg, "adaptive", k_choices=rl.k_choices)
        # The validation faces, encoded once and kept here: the FR network comes to them
        # (shared by the sub-envs of one runner: envs.inflight).
        self.validation = ValidationScore(self.fr, validation_set(self.defence, self.data), rl.eval_every)
        kept = self.defence.mask.kept % CHANNELS_PER_PLANE
        self._band_index = [torch.nonzero((kept >= lo) & (kept < hi)).flatten() for lo, hi in BANDS]

        self.nvec = self.space.nvec
        self.action_space = gym.spaces.MultiDiscrete(self.nvec)
        n = int(self.nvec.sum())
        low = np.array([0, 0, 0, 0, -1, 0, 0] + [0] * (2 * n) + [0] * len(BANDS), dtype=np.float32)
        high = np.array([1, 1, 1e3, 1, 1, 1, 1] + [1] * (2 * n) + [50] * len(BANDS), dtype=np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self._seed(self.base_seed)
        self._t = 0
        self._unsent = False  # whether the drawn batch is still to be sent
        self._prev_action: np.ndarray | None = None
        self._status = {"fr_step": 0, "loss_ema": 0.0}
        self._leak_ema = 0.0  # kept across episodes: the attacker keeps learning
        self._last_leak = 0.0
        self._leak_seen = False
        self._offsets = np.concatenate([[0], np.cumsum(self.nvec)[:-1]]).astype(np.int64)
        self._knob_leak = np.zeros(n, dtype=np.float32)  # per knob value; kept across episodes, like the EMA
        self._knob_seen = np.zeros(n, dtype=bool)
        self._log: list[dict] = []
        # The owner's full record (originals, provenance) of the first batches sent, when
        # asked (the benchmark attacks exactly what a deployed policy sent).
        self.keep_batches = wiring.keep_batches
        self.kept_batches: list = []

    def _seed(self, seed: int) -> None:
        self.stream = TrainingStream(self.cfg, self.defence, self.data, seed=seed)

    def _draw_batch(self) -> None:
        self._idx, self._images = self.stream.draw()
        # one block DCT per batch: the observation's band energies and the protection share it
        self._transformed = self.defence.transform(self._images)
        self._band = self._band_energy()  # here, while the server computes: not on the step's critical path
        self._unsent = True

    def _band_energy(self) -> list[float]:
        energy = self._transformed.pow(2).mean(dim=(0, 2, 3))
        return [float(torch.log1p(energy[i].mean())) if i.numel() else 0.0 for i in self._band_index]

    def _obs(self) -> np.ndarray:
        onehot = np.zeros(int(self.nvec.sum()), dtype=np.float32)
        if self._prev_action is not None:
            onehot[self._offsets + self._prev_action] = 1.0
        acc = self.validation.accuracy
        obs = [
            min(1.0, self._status["fr_step"] / max(1, self.total_fr_steps)),
            self._t / self.horizon,
            float(self._status["loss_ema"]),
            acc,
            acc - self.floor,
            self._leak_ema,
            self._last_leak,
            *onehot,
            *self._knob_leak,
            *self._band,
        ]
        return np.clip(np.asarray(obs, dtype=np.float32), self.observation_space.low, self.observation_space.high)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._seed(int(seed))
        self._t = 0
        self._prev_action = None
        self._status = self.fr.call("status")
        self.validation.update(int(self._status["fr_step"]))
        if seed is not None or not self._unsent:  # else the batch drawn after the last step opens this episode
            self._draw_batch()
        return self._obs(), {}

    def step(self, action):
        pending = self.send(action)
        self.draw_next()
        return self.receive(pending)

    def send(self, action) -> tuple:
        """Protect the drawn batch with the action's settings and send it (the door: only its
        ``ProtectedBatch`` crosses, to the FR server and to the attacker). ``draw_next`` then
        draws the next batch while they compute: apart, so that a runner sends every sub-env's
        batch before it draws any (an aggregated FR step starts only once they are all queued)."""
        if not self.action_space.contains(np.asarray(action, dtype=np.int64)):
            raise ValueError(f"action {action!r} is not in {self.action_space} (one index per knob: {', '.join(DIMENSIONS)})")
        a = np.asarray(action, dtype=np.int64).copy()
        settings = self.space.decode(a)
        batch = self.stream.encode(self._idx, self._images, settings=settings, transformed=self._transformed)
        sent = batch.masked.protected()
        self._unsent = False
        if self.train_fr:
            if self.recorder is not None:
                self.recorder.record(sent, batch.provenance())
            handle = self.fr.submit("train_step", sent)
        else:
            handle = self.fr.submit("eval_loss", sent)
        # sampled: the first batch always (the estimate's start), then a random sample, skipped
        # while this env has ATTACKS_IN_FLIGHT attacks unanswered (a busy attacker sets the pace)
        first = self.sampled and not self.leak_estimate.count and not self._attacks
        drawn = self.sampled and self._attack_rng.random() < self.sample_rate and len(self._attacks) < ATTACKS_IN_FLIGHT
        attacked = self.attacker is not None and (not self.sampled or first or drawn)
        attack = None
        if attacked:  # with the settings of the batches it was not given: it saw them cross too
            attack = self.attacker.submit("observe", sent, settings, self._crossed_since)
            self._crossed_since = []
        elif self.attacker is not None:
            self._crossed_since.append(settings)
        owner_labels = batch.masked.labels  # every mixed face's identity: the judge's key
        if self.sampled and attack is not None:
            self._attacks.append((attack, settings, owner_labels))
        if len(self.kept_batches) < self.keep_batches:
            self.kept_batches.append(batch)
        return a, settings, handle, attack, owner_labels

    def draw_next(self) -> None:
        """The owner's work while the server computes (between ``send`` and ``receive``): draw
        and transform the next batch, which the observation ``receive`` returns describes, and
        (sampled attacker) judge the attacks that have finished."""
        self._draw_batch()
        if self.sampled:
            self._score_finished_attacks(wait=False)

    def receive(self, pending: tuple):
        """The step's answers (FR server, attacker) -> (obs, reward, terminated, truncated, info)."""
        a, settings, handle, attack, owner_labels = pending
        result = self.fr.result(handle)
        if not self.train_fr:
            result = {**self.fr.call("status"), "loss": result}
        loss = float(result["loss"])
        self._status = {key: result[key] for key in ("fr_step", "loss_ema")}
        self.validation.update(int(self._status["fr_step"]))
        leak = {}
        if self.sampled:
            if not self.leak_estimate.count:  # the estimate's start: wait for the first attack
                self._score_finished_attacks(wait=True)
            if self.leak_estimate.count:
                leak = {"leak": self.leak_estimate.estimate(settings), "leak_attacked": float(attack is not None)}
        elif attack is not None:
            leak = self._judge(attack, owner_labels)
            if self.cfg.rl.leak_reward == "estimate":
                self.leak_estimate.add(settings, leak["leak"])
                leak = {**leak, "leak_judged": leak["leak"], "leak": self.leak_estimate.estimate(settings)}
        if leak:
            self._last_leak = leak["leak"]
            self._leak_ema = LEAK_EMA * self._leak_ema + (1 - LEAK_EMA) * leak["leak"] if self._leak_seen else leak["leak"]
            self._leak_seen = True
            self._note_knob_leak(a, leak["leak"])
        parts = reward_parts(loss, self.validation.accuracy, leak.get("leak", 0.0), self.cfg.rl)
        self._t += 1
        self._prev_action = a
        info = {**settings.as_dict(), "fr_loss": loss, "val_acc": self.validation.accuracy, "val_fr_step": self.validation.scored_step, "fr_step": self._status["fr_step"], **leak, **parts}
        self._log.append(info)
        return self._obs(), float(parts["reward"]), False, self._t >= self.horizon, info

    def _note_knob_leak(self, action: np.ndarray, leak: float) -> None:
        """Fold a batch's leak into the moving average of each knob value it was sent with."""
        idx = self._offsets + action
        seen = self._knob_seen[idx]
        self._knob_leak[idx] = np.where(seen, LEAK_EMA * self._knob_leak[idx] + (1 - LEAK_EMA) * leak, leak)
        self._knob_seen[idx] = True

    def _judge(self, attack, owner_labels) -> dict:
        """The owner's judge on the attacker's reconstructions of one batch."""
        recs = self.attacker.result(attack)
        rows = recs.pop("rows")
        return batch_leak(self.judge, recs, owner_labels[rows])

    def _score_finished_attacks(self, wait: bool) -> None:
        """Judge the sampled attacks that have finished (all, waiting, when ``wait``) into the estimate."""
        still = []
        for attack, settings, owner_labels in self._attacks:
            if wait or self.attacker.done(attack):
                self.leak_estimate.add(settings, self._judge(attack, owner_labels)["leak"])
            else:
                still.append((attack, settings, owner_labels))
        self._attacks = still

    def drain_log(self) -> list[dict]:
        """Per-step records (settings, leak, reward parts) since the last call (TensorBoard)."""
        log, self._log = self._log, []
        return log

"""One dataclass tree for every run, loaded from YAML and validated once at the edge.

Errors name the field (``mask.cap``), the value and the allowed range. Defaults run on a
laptop; a cluster run changes only the address and resources.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rl_mask.cpu_threads import WAIT_POLICIES

#: ``fr.precision``: float32 throughout, or bfloat16 autocast of the FR step.
FR_PRECISIONS = ("fp32", "bf16")
STRATEGIES = ("none", "mask", "fixed-k", "random-k", "mixup", "instahide", "dpsgd")
BENCHMARK_DEFENCES = ("none", "mask", "mixup", "instahide", "dpsgd", "fixed-k", "random-k", "best-fixed", "adaptive", "adaptive-paper")
#: Rows only run when asked for (adaptive-paper needs its own trained run; best-fixed trains a grid).
OPTIONAL_DEFENCES = ("best-fixed", "adaptive-paper")
BENCHMARK_ATTACKS = (
    "whitebox",
    "blackbox",
    "label-aware",
    "cross-batch",
    "mi-face",
    "gmi",
    "provenance",
    "whitebox+recover",
    "label-aware+recover",
    "whitebox-eval",
    "whitebox-eval+recover",
    "link-abs",
    "link-energy",
    "link-model",
    "link-sorted",
    "link-abs+recover",
    "link-energy+recover",
    "link-model+recover",
)
#: Attacks that use a field that does not cross: reported as "what-if" rows, never a defence's worst case.
WHAT_IF_ATTACKS = ("provenance",)
#: Identity-linkage attacks (rl_mask.attacks.linkage): the benchmark reports them apart from the
#: reconstruction attacks (their figure is an identification rate over a gallery, not a judge's leak).
LINKAGE_ATTACKS = ("link-abs", "link-energy", "link-model", "link-sorted", "link-abs+recover", "link-energy+recover", "link-model+recover")
#: The probe door: the white-box decoder on the test faces' k = 1 inference probes (scored like a reconstruction).
EVAL_DOOR_ATTACKS = ("whitebox-eval", "whitebox-eval+recover")
#: ``NAME+recover``: the attack ``NAME`` on messages the owner's key was first estimated from
#: everything that crossed and undone (``rl_mask.attacks.key_recovery``); without a key
#: it is ``NAME`` itself.
RECOVER_SUFFIX = "+recover"
#: Owner options a hybrid benchmark row may carry as suffixes, e.g. ``mask+key``,
#: ``fixed[k=4,flip=0.5]+key+evalflip``: the owner's key on every message (``+key``: one channel
#: mixing; ``+poskey``: one per block position; ``+scramble``: a permutation of every coefficient;
#: ``+dense``: rounds of permutations and group rotations of every coefficient),
#: sign flips on the k = 1 messages (probes, and the owner's own held-out encodings)
#: (``+evalflip``: probability ``EVAL_FLIP``; ``+evalflip=P``: probability P in (0, 0.5]).
OWNER_SUFFIXES = ("+key", "+poskey", "+scramble", "+dense", "+evalflip")
#: The suffixes that name a key construction (a row carries at most one).
KEY_SUFFIX_KINDS = {"+key": "channels", "+poskey": "positions", "+scramble": "scramble", "+dense": "dense"}
EVAL_FLIP = 0.5
_EVAL_FLIP_AT = re.compile(r"\+evalflip=([0-9.]+)$")
HYBRID_DEFENCES = ("mask", "fixed-k", "random-k", "adaptive")
KEY_KINDS = ("channels", "positions", "scramble", "dense")
#: Key kinds that leave no block position together: only the dense ``model.arch: mlp`` learns through them.
POSITIONLESS_KEYS = ("scramble", "dense")
WEIGHT_KINDS = ("dirichlet", "instahide")
COLORS = ("L", "RGB")
LABEL_MODES = ("soft", "hard")
#: best-fixed's default grid, one fixed setting of the policy's knobs each.
DEFAULT_FIXED_GRID = (
    "k=4,flip=0.5,extra_removed=9,alpha=1.0,labels=hard",
    "k=4,flip=0.0,extra_removed=0,alpha=1.0,labels=hard",
    "k=4,flip=0.5,extra_removed=0,alpha=1.0,labels=soft",
    "k=6,flip=0.5,extra_removed=4,alpha=4.0,labels=hard",
    "k=2,flip=0.5,extra_removed=4,alpha=0.5,labels=hard",
    "k=6,flip=0.0,extra_removed=9,alpha=4.0,labels=soft",
)
REWARDS = ("leak", "paper", "leak+paper")
ATTACKER_MODES = ("exact", "sampled")
LEAK_REWARDS = ("estimate", "batch")


class ConfigError(ValueError):
    """A config value that cannot run; the message starts with the field's dotted name."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is a number, not the string '1e-3'."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def default_data_root() -> str:
    """``$RL_MASK_DATA``, else the bundled AT&T faces in ``../shared`` (from the cwd or the repo)."""
    env = os.environ.get("RL_MASK_DATA")
    if env:
        return env
    here = Path(__file__).resolve().parent.parent
    for base in (Path.cwd(), here):
        for candidate in (base / "../shared/data/att_faces", base / "shared/data/att_faces"):
            if candidate.is_dir():
                return os.fspath(candidate.resolve())
    return os.fspath((here / "../shared/data/att_faces").resolve())


@dataclass
class DataConfig:
    root: str = ""  # empty: default_data_root()
    height: int = 112
    width: int = 96
    color: str = "L"
    num_private: int = 20
    train_per_identity: int = 6
    val_per_identity: int = 1  # validation faces per private identity: the policy's utility signal
    split_seed: int = 0
    cache: bool = True  # decode the folder once into a packed, memory-mapped file (rl_mask.owner.face_cache)
    cache_dir: str = ""  # empty: $RL_MASK_CACHE, else ~/.cache/rl-mask/faces

    @property
    def planes(self) -> int:
        return 3 if self.color == "RGB" else 1

    def resolved_root(self) -> str:
        return self.root or default_data_root()


#: ``mask.eval_flip``'s (and ``mask.eval_extra_removed``'s) "the k = 1 messages as the training rows are".
AS_TRAINED = -1.0
#: ``mask.key_seed``'s "draw a fresh secret" (a config never keeps it: see ``MaskConfig``).
FRESH_SECRET = -1


@dataclass
class MaskConfig:
    removed_channels: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    weights: str = "dirichlet"
    alpha: float = 1.0
    cap: float = 0.65
    sign_flip: bool = False
    upsample: int = 1
    # owner-held key (rl_mask.owner.key) on every message: none | channels | positions |
    # scramble (a permutation of every coefficient) | dense (rounds of permutations and group
    # rotations of every coefficient); both need model.arch mlp
    key: str = "channels"
    # The owner's secret: seeds the key and every random draw of what crosses (the messages'
    # sign flips, mixing partners and weights, augmentation), so nobody without it can replay
    # them. -1 (the default): a fresh one from the OS's entropy whenever a config is made
    # without one; a run keeps it only in its owner-only RUN_DIR/config.yaml (resume and
    # `rl-mask encode` read it there). A seed written into a shared config file is no secret.
    # (The benchmark's "+key" rows add benchmark.seed to it.)
    key_seed: int = -1
    # per-coefficient sign-flip probability of the k = 1 messages (validation and test sets,
    # inference probes); -1 (the default): as the training rows' (the largest flip probability
    # the defence trains under: the adaptive policy's rl.flip_choices, a fixed setting's flip,
    # 0.5 with mask.sign_flip), so that no message crosses less protected than they do and the
    # network knows the views; 0 sends them as channel removal (and key) alone
    eval_flip: float = AS_TRAINED
    # more channels the k = 1 messages zero beyond removed_channels; -1 (the default): as the
    # training rows' (what every one of them zeroes: a fixed setting's extra_removed, the least
    # of the adaptive policy's rl.extra_removed_choices), so that no message carries a channel
    # no training row carried and the network keeps every channel it learned from
    eval_extra_removed: int = -1

    def __post_init__(self):
        if self.key_seed == FRESH_SECRET:
            self.key_seed = secrets.randbelow(2**62)


@dataclass
class ModelConfig:
    # conv: the IR-ResNet over block positions (model.widths, model.depths); mlp: dense layers
    # over every coefficient (model.mlp_widths), the network the owner's scramble key needs
    arch: str = "conv"
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    depths: list[int] = field(default_factory=lambda: [1, 1, 1])
    embedding_dim: int = 128
    dropout: float = 0.2
    sample_norm: bool = True
    # What the backbone reads of each input coefficient: "identity" (the value), "abs" (its
    # magnitude: exactly what is left when every sign that crosses is random, so the network
    # need not learn that invariance from data), or "auto": "abs" for a defence whose every
    # message flips each sign with probability 0.5, else "identity" (``resolve_input_map``).
    input_map: str = "auto"
    mlp_widths: list[int] = field(default_factory=lambda: [512])  # hidden layers of arch mlp
    arc_scale: float = 16.0
    arc_margin: float = 0.2


@dataclass
class FRConfig:
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    eval_every: int = 100  # train-fr: FR steps between test scores (the owner scores the weights it gets back)
    augment: bool = True  # flip/shift/scale/rotate the private faces before they are encoded
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    # Aggregated FR steps (rl_mask.server.step_queue): the FR server trains one step on the
    # protected batches queued while it was busy, up to this many rows (0: one batch per step).
    # A GPU wants thousands (issue 19: 6k images/s at 64 rows, 87k at 4,096 on an H200).
    rows_per_step: int = 0
    step_wait_ms: float = 20.0  # how long a queued batch waits for rows_per_step rows before its step starts
    # Mixed precision of the FR step (forward and loss under autocast; the ArcFace head and the
    # loss stay float32). Issue 19, H200 at 4,096 rows: bf16 alone was slower than fp32 (68.8k
    # vs 77.3k images/s), bf16 with channels_last faster (91.9k). DP-SGD trains in fp32.
    precision: str = "fp32"  # fp32 | bf16
    # the network and its inputs in channels-last memory format: the same maths, 1.13x (64
    # rows) to 1.17x (128 rows) faster FR steps on 2 CPU cores in fp32
    channels_last: bool = True


@dataclass
class StrategyConfig:
    name: str = "fixed-k"
    k: int = 4
    k_choices: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6])

    def ks_used(self) -> list[int]:
        if self.name == "fixed-k":
            return [self.k]
        if self.name == "random-k":
            return list(self.k_choices)
        return [1]


@dataclass
class RLConfig:
    """The adaptive strategy: env, PPO and the Ray layout (used by ``rl-mask train``)."""

    # The policy's knobs, one action dimension each (rl_mask.mask.settings); one choice = fixed.
    k_choices: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6])
    flip_choices: list[float] = field(default_factory=lambda: [0.0, 0.5])  # per-coefficient sign-flip probability
    extra_removed_choices: list[int] = field(default_factory=lambda: [0, 4, 9])  # low channels zeroed beyond mask.removed_channels
    alpha_choices: list[float] = field(default_factory=lambda: [0.5, 4.0])  # Dirichlet concentration of the weights
    label_choices: list[str] = field(default_factory=lambda: ["soft", "hard"])  # what crosses: every label + weight, or the dominant one
    horizon: int = 8  # env steps (= FR steps) per episode
    # reward (envs.reward): "leak" = -leak_lambda * attacker's leak - utility penalty;
    # "paper" = FR loss on the mixed batch - utility penalty (arXiv:2403.10558); "leak+paper" = both.
    reward: str = "leak"
    leak_lambda: float = 10.0
    utility_lambda: float = 20.0  # utility penalty = lambda * max(0, floor - validation accuracy)
    accuracy_floor: float = 0.80
    # The attacker in the loop (rl_mask.attacks.online): its decoder trains on public faces
    # protected with each batch's settings, attacks the batch; the owner's judge scores it.
    # False: no attacker (only rl.reward='paper' needs none); it costs a decoder step, a decode
    # and a judge call per env step, and bounds the pipeline's speed unless it has its own device.
    attacker_in_loop: bool = True
    # exact: every batch is attacked and its own judged leak is its reward (the attacker is on the
    # env's critical path); sampled: a random attacker_sample_rate of the batches is attacked,
    # without waiting, and every batch's leak is read at once from a per-setting estimate of the
    # judged leaks (rl_mask.owner.judge.leak_estimate)
    attacker_mode: str = "exact"
    attacker_sample_rate: float = 0.25
    # the leak the reward reads: "estimate": its setting's estimate (rl_mask.owner.judge.leak_estimate),
    # which every judged batch joins (a batch judged on attacker_rows rows carries ~10 points of
    # noise that the estimate averages away); "batch": the batch's own judged leak (exact mode only)
    leak_reward: str = "estimate"
    attacker_train_steps: int = 1  # decoder steps per batch sent (sampled: also per batch it was not given, on that batch's settings)
    attacker_rows: int = 16  # rows of each batch attacked and judged (a random subset estimates the batch's leak; 0 = all)
    attacker_widths: list[int] = field(default_factory=lambda: [32, 64, 96])  # the online decoder's BlockUNet widths
    attacker_batch_size: int = 16
    attacker_lr: float = 2e-3
    attacker_warmup_steps: int = 100  # decoder steps on the policy's whole settings space before training starts
    # also attack each batch sent without flips with the owner's key estimated from what crossed
    # and undone (rotation keys: mask.key channels | positions), as the benchmark's +recover attacks do
    attacker_recover: bool = True
    attacker_num_gpus: float = -1.0  # -1: one GPU if the cluster has one, else CPU
    attacker_num_cpus: float = 0.0  # 0 never blocks placement on a small machine; set 1 where the head has no CPUs for actors
    # torch threads of the attacker's actor: its small decoder gains little from more (82 vs
    # 88 ms a step at 2 vs 1 here), and every extra thread fights the FR workers for the cores
    attacker_threads: int = 1
    fr_wait_policy: str = "PASSIVE"  # OMP_WAIT_POLICY of CPU FR actors: PASSIVE (cores shared with env runners), ACTIVE, "" (the driver's; rl_mask.cpu_threads)
    judge_steps: int = 150  # the owner's judge (scores the attacker): steps on the private training faces
    eval_every: int = 25  # FR steps between the owner's validation scores, one per env runner (it fetches the FR weights; no validation face crosses; envs.validation)
    iterations: int = 12  # PPO iterations
    train_batch_size: int = 128  # env steps per PPO iteration
    minibatch_size: int = 32
    num_epochs: int = 8
    lr: float = 3e-3
    gamma: float = 0.0  # the leak and the FR loss are the step's own; the utility penalty credits no step (README, issue 20)
    gae_lambda: float = 0.95
    entropy_coeff: float = 0.0
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    num_env_runners: int = 0
    max_inflight: int = 4  # protected batches each env runner keeps in flight (its sub-envs step together); 4 kept a CPU FR actor busier than 2 (README, issue 19)
    num_cpus_per_env_runner: float = 1.0
    num_learners: int = 0
    # torch threads of the PPO update in the driver (num_learners=0) while the env runners sample
    # elsewhere (num_env_runners > 0); restored after each iteration. Its minibatches are tiny:
    # on 2 cores beside the busy attacker an update took 1.33 s with 2 threads, 0.18 s with 1.
    learner_threads: int = 1
    sample_timeout_s: float = 600.0
    checkpoint_every: int = 4  # PPO iterations
    image_every: int = 4  # PPO iterations between TensorBoard images
    policy_eval_steps: int = 64  # env steps to score the trained policy vs uniform random
    fr_workers: int = 1  # data-parallel FR workers (Ray actors, one GPU each when present), one network
    fr_num_gpus: float = -1.0  # -1: one GPU if the cluster has one, else CPU; 0..1 fractional
    fr_num_cpus: float = 0.0  # 0 never blocks placement on a small machine
    fr_threads: int = 0  # torch threads per FR worker; 0: the node's cores / the CPU FR workers on it
    fr_max_restarts: int = 3
    fr_autosave_every: int = 50  # FR steps between the actor's own recovery saves
    record_masked_batches: int = 2  # first batches each env sends, kept as sent (RUN_DIR/boundary), for export-masked
    log_private_faces: bool = False  # TensorBoard's example faces: public ones (default) or, opted in, PRIVATE training faces
    log_original_faces: bool = False  # true: TensorBoard shows the example faces' originals beside the protected views
    env_runner_max_restarts: int = 1000  # RLlib's default: spot nodes come and go
    seed: int = 0


@dataclass
class DPConfig:
    """DP-SGD (strategy ``dpsgd``, Opacus): the noise multiplier is chosen so that ``fr.steps``
    steps of Poisson-sampled batches spend exactly ``target_epsilon`` at ``delta``."""

    target_epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0


@dataclass
class BenchmarkBudget:
    """Training and attack budgets of one ``rl-mask benchmark`` mode (the same for every defence)."""

    fr_steps: int = 600
    eval_model_steps: int = 400
    # protected training batches (as they left the data owner) attacked. A policy row's leak is
    # that of the settings these batches drew: with 2 of them (the quick budget until issue 20's
    # confirmation) the same policy measured 29% and 16% at two seeds; with 16, 19% and 18%
    attack_batches: int = 24
    context_batches: int = 60  # further batches of the run the cross-batch attack may use (not scored)
    decoder_steps: int = 2000
    decoder_batch_size: int = 16
    mi_steps: int = 300
    mi_restarts: int = 4
    gan_steps: int = 2500
    gmi_steps: int = 200
    gmi_restarts: int = 4
    grid_points: int = 6  # best-fixed: how many points of benchmark.fixed_grid are run


def _quick_budget() -> BenchmarkBudget:
    return BenchmarkBudget(
        fr_steps=300,
        eval_model_steps=150,
        attack_batches=16,
        context_batches=20,
        decoder_steps=500,
        decoder_batch_size=16,
        mi_steps=200,
        mi_restarts=2,
        gan_steps=800,
        gmi_steps=100,
        gmi_restarts=2,
        grid_points=3,
    )


@dataclass
class BenchmarkConfig:
    """``rl-mask benchmark``: which defences and attacks, and the budgets of both modes."""

    defences: list[str] = field(default_factory=lambda: [d for d in BENCHMARK_DEFENCES if d not in OPTIONAL_DEFENCES])
    # best-fixed: the grid of fixed settings of the policy's knobs (rl_mask.mask.settings) the
    # benchmark trains and attacks; the row is the best worst-attack leak among the points whose
    # identification accuracy is within best_fixed_tolerance of the adaptive row's (the first
    # budget.grid_points of the list are run).
    fixed_grid: list[str] = field(default_factory=lambda: list(DEFAULT_FIXED_GRID))
    best_fixed_tolerance: float = 0.02
    attacks: list[str] = field(default_factory=lambda: list(BENCHMARK_ATTACKS))
    # k distribution over rl.k_choices for the adaptive row when no --adaptive-run is given
    # (no learned policy then); empty = uniform.
    adaptive_k_probs: list[float] = field(default_factory=list)
    blackbox_k: int = 3  # the black-box attacker's guess of k
    decoder_gan_weight: float = 0.0  # > 0 adds the pix2pix conditional GAN loss to the decoders
    seed: int = 0
    seeds: int = 1  # repeats (FR training, attacks, judge) with derived seeds; >= 2 gives t-intervals
    # The judge's clean held-out acc@1 below which its leak figures are marked unreliable.
    judge_min_acc: float = 0.8
    full: BenchmarkBudget = field(default_factory=BenchmarkBudget)
    quick: BenchmarkBudget = field(default_factory=_quick_budget)


@dataclass
class SweepConfig:
    """``rl-mask sweep``: policy trials over the reward's trade-off and the fixed grid they are
    measured against, as one Ray Tune experiment (``trainers.sweep``)."""

    # one policy trial each (rl.leak_lambda). One by default: PPO standardises each batch's
    # advantages, so once the utility penalty is 0 (from the 3rd iteration on in every measured
    # run) lambda 1, 3, 10 and 30 train alike; more of them only add FR steps and give the policy
    # side a best-of-N pick (README, "lambda moves nothing").
    leak_lambdas: list[float] = field(default_factory=lambda: [10.0])
    # fixed settings drawn (seeded, without replacement) from the whole knob grid (the product of
    # the rl.*_choices); 0 = every setting of the grid
    grid_sample: int = 24
    grid_seed: int = 0
    # the attacks every trial is measured with (the benchmark's; the worst judged one over every
    # message is its leak); each with its key-recovery variant where one exists: a keyed setting
    # without flips is measured weak without it (15% -> 24% on AT&T)
    attacks: list[str] = field(
        default_factory=lambda: ["whitebox", "whitebox+recover", "label-aware", "label-aware+recover", "cross-batch", "whitebox-eval", "whitebox-eval+recover"]
    )
    trial_cpus: float = 1.0  # Ray resources of one trial (and its torch threads: at least 1)
    trial_gpus: float = 0.0
    max_concurrent: int = 0  # trials at once; 0 = as many as the resources allow
    # measure the picks again (each side's front, the grid point each front policy is compared
    # with) with fresh measurement seeds, so that no pick is reported on the figures it was
    # picked on (trainers.sweep)
    confirm: bool = True
    # measurement seeds of each policy trial (0: benchmark.seeds, as every grid point): the
    # trained policy deployed and attacked that many times (fresh FR network, draws, attackers,
    # judge each time) and averaged. The policy's leak moves by 4-5 points between measurements
    # of one policy (80 door probes); repeats narrow its interval over sweep seeds where more
    # sweep seeds would also redo the grid. The repeats' FR steps are reported apart.
    policy_seeds: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fr: FRConfig = field(default_factory=FRConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    dp: DPConfig = field(default_factory=DPConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "Config":
        validate(self)
        return self


def parse_settings(text: str) -> dict:
    """``"k=4,flip=0.5,extra_removed=9,alpha=1.0,labels=hard"`` -> the settings' fields (every
    field required, each checked for its type and range)."""
    fields_ = {"k": int, "flip": float, "extra_removed": int, "alpha": float, "labels": str}
    out: dict[str, Any] = {}
    for part in str(text).split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in fields_:
            raise ValueError(f"{text!r}: {part.strip()!r} is not one of {', '.join(f + '=...' for f in fields_)}")
        try:
            out[key] = fields_[key](value.strip())
        except ValueError:
            raise ValueError(f"{text!r}: {key}={value.strip()!r} is not a valid {fields_[key].__name__}") from None
    missing = [f for f in fields_ if f not in out]
    if missing:
        raise ValueError(f"{text!r}: missing {', '.join(missing)}")
    if out["k"] < 1 or not 0 <= out["flip"] <= 0.5 or out["extra_removed"] < 0 or out["alpha"] <= 0 or out["labels"] not in LABEL_MODES:
        raise ValueError(f"{text!r}: needs k >= 1, flip in [0, 0.5], extra_removed >= 0, alpha > 0, labels one of {LABEL_MODES}")
    return out


# ----------------------------------------------------------------------------- loading


def _check_type(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_check_type(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown field {where}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    fields_by_name = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            # a partial mapping overrides the field's own default (e.g. benchmark.quick's
            # budget), not the nested class's defaults
            factory = fields_by_name[key].default_factory
            if factory is not dataclasses.MISSING and isinstance(value, dict):
                value = _deep_merge(dataclasses.asdict(factory()), value)
            kwargs[key] = _build(tp, value, name)
        else:
            kwargs[key] = _check_type(value, tp, name)
    return cls(**kwargs)


def from_dict(data: dict | None, cls: type = Config) -> Any:
    return _build(cls, data or {}, "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, cls: type = Config) -> Any:
    """Load ``path`` (YAML), apply ``key.sub=value`` overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = parse_yaml(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
    for item in overrides or []:
        set_path(data, item)
    cfg = from_dict(data, cls)
    cfg.validate()
    return cfg


def set_path(data: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested dict."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like field.name=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {part} is not a section")
    try:
        node[parts[-1]] = parse_yaml(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"override {assignment!r}: {raw!r} is not a valid YAML value ({problem})") from None


def owner_seed(seed: int, cfg: "Config") -> int:
    """A random stream's seed mixed with the owner's secret: a run replays from its own
    config, while nobody with only the public seed (and the code) can."""
    return (seed * 1_000_003 + cfg.mask.key_seed) % 2**63


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


# ----------------------------------------------------------------------------- validation


#: Bounds on network sizes: a config (or a run file) cannot ask for unbounded memory.
MAX_WIDTH = 4096
MAX_DEPTH = 64
MAX_LAYERS = 8
#: ``model.input_map`` values; ``auto`` is resolved per defence before a network is built.
INPUT_MAPS = ("auto", "identity", "abs")
#: ``model.arch``: ``conv`` (the IR-ResNet, which reads neighbouring block positions together)
#: or ``mlp`` (dense layers with no notion of position: it learns as well under any secret
#: permutation of its input coefficients, the owner's ``scramble`` key).
MODEL_ARCHS = ("conv", "mlp")


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range: {allowed}")


def validate_data(d: DataConfig) -> None:
    _require(d.color in COLORS, "data.color", d.color, f"one of {COLORS}")
    for name in ("height", "width"):
        v = getattr(d, name)
        _require(v >= 8 and v % 8 == 0, f"data.{name}", v, "a multiple of 8 (block DCT), >= 8")
    _require(d.num_private >= 2, "data.num_private", d.num_private, ">= 2 identities")
    _require(d.train_per_identity >= 1, "data.train_per_identity", d.train_per_identity, ">= 1")
    _require(d.val_per_identity >= 0, "data.val_per_identity", d.val_per_identity, ">= 0")


def validate_mask(m: MaskConfig, ks: list[int]) -> None:
    _require(m.weights in WEIGHT_KINDS, "mask.weights", m.weights, f"one of {WEIGHT_KINDS}")
    bad = [c for c in m.removed_channels if not 0 <= c < 64]
    _require(not bad, "mask.removed_channels", m.removed_channels, "zig-zag indices in 0..63")
    _require(len(set(m.removed_channels)) < 64, "mask.removed_channels", m.removed_channels, "must keep at least one channel")
    _require(m.alpha > 0, "mask.alpha", m.alpha, "> 0")
    _require(m.upsample >= 1, "mask.upsample", m.upsample, ">= 1")
    _require(m.key in ("none",) + KEY_KINDS, "mask.key", m.key, f"one of {('none',) + KEY_KINDS}")
    _require(m.key_seed >= 0, "mask.key_seed", m.key_seed, f">= 0, or {FRESH_SECRET} (or left out) for a fresh secret")
    _require(m.eval_flip == AS_TRAINED or 0.0 <= m.eval_flip <= 0.5, "mask.eval_flip", m.eval_flip, f"a probability in [0, 0.5], or {AS_TRAINED} for as the training rows")
    mixing = [k for k in ks if k > 1]
    if mixing:
        k_min = min(mixing)  # cap > 1/k binds hardest at the smallest mixing k
        _require(
            1.0 / k_min < m.cap <= 1.0,
            "mask.cap",
            m.cap,
            f"(1/k, 1] for every k used (strategy.k, strategy.k_choices, rl.k_choices); smallest mixing k is {k_min}, so cap must be > {1.0 / k_min:.4f}",
        )


def _sizes(values: list[int], count: int, most: int) -> bool:
    """1 to ``count`` integers in 1..``most``: network sizes (also read back from run files) stay bounded."""
    return 1 <= len(values) <= count and all(isinstance(v, int) and 1 <= v <= most for v in values)


def validate_model(m: ModelConfig) -> None:
    _require(m.arch in MODEL_ARCHS, "model.arch", m.arch, f"one of {', '.join(MODEL_ARCHS)}")
    _require(_sizes(m.mlp_widths, MAX_LAYERS, MAX_WIDTH), "model.mlp_widths", m.mlp_widths, f"1 to {MAX_LAYERS} integers in 1..{MAX_WIDTH}")
    _require(_sizes(m.widths, MAX_LAYERS, MAX_WIDTH), "model.widths", m.widths, f"1 to {MAX_LAYERS} integers in 1..{MAX_WIDTH}")
    _require(len(m.depths) == len(m.widths), "model.depths", m.depths, f"one depth per width ({len(m.widths)})")
    _require(_sizes(m.depths, MAX_LAYERS, MAX_DEPTH), "model.depths", m.depths, f"integers in 1..{MAX_DEPTH}")
    _require(isinstance(m.embedding_dim, int) and 2 <= m.embedding_dim <= MAX_WIDTH, "model.embedding_dim", m.embedding_dim, f"an integer in 2..{MAX_WIDTH}")
    _require(0 <= m.dropout < 1, "model.dropout", m.dropout, "[0, 1)")
    _require(m.input_map in INPUT_MAPS, "model.input_map", m.input_map, f"one of {', '.join(INPUT_MAPS)}")
    _require(m.arc_scale > 0, "model.arc_scale", m.arc_scale, "> 0")
    _require(0 <= m.arc_margin < 1.5, "model.arc_margin", m.arc_margin, "[0, 1.5) radians")


def validate_fr(f: FRConfig) -> None:
    _require(f.steps >= 1, "fr.steps", f.steps, ">= 1")
    _require(f.batch_size >= 2, "fr.batch_size", f.batch_size, ">= 2")
    _require(f.lr > 0, "fr.lr", f.lr, "> 0")
    _require(f.weight_decay >= 0, "fr.weight_decay", f.weight_decay, ">= 0")
    _require(f.eval_every >= 1, "fr.eval_every", f.eval_every, ">= 1")
    _require(f.threads >= 0, "fr.threads", f.threads, ">= 0 (0 = torch default)")
    _require(f.rows_per_step == 0 or f.rows_per_step >= f.batch_size, "fr.rows_per_step", f.rows_per_step, f"0 (one batch per step) or >= fr.batch_size ({f.batch_size}): a batch is never split")
    _require(f.step_wait_ms >= 0, "fr.step_wait_ms", f.step_wait_ms, ">= 0")
    _require(f.precision in FR_PRECISIONS, "fr.precision", f.precision, f"one of {FR_PRECISIONS}")
    ok = f.device in ("auto", "cpu", "cuda") or (f.device.startswith("cuda:") and f.device[5:].isdigit())
    _require(ok, "fr.device", f.device, "auto, cpu, cuda or cuda:N")


def validate_k_choices(name: str, ks: list[int], batch_size: int) -> None:
    _require(len(ks) >= 1, name, ks, "at least one k")
    _require(len(set(ks)) == len(ks), name, ks, "no repeated k")
    for k in ks:
        _require(1 <= k <= batch_size, name, ks, f"every k in 1..batch size ({batch_size})")


def validate_strategy(s: StrategyConfig, batch_size: int) -> None:
    _require(s.name in STRATEGIES, "strategy.name", s.name, f"one of {STRATEGIES}")
    _require(1 <= s.k <= batch_size, "strategy.k", s.k, f"1..batch size ({batch_size}); k < 1 mixes nothing")
    validate_k_choices("strategy.k_choices", s.k_choices, batch_size)


def validate_rl(r: RLConfig, batch_size: int, rows_per_step: int = 0) -> None:
    validate_k_choices("rl.k_choices", r.k_choices, batch_size)
    for name in ("flip_choices", "extra_removed_choices", "alpha_choices", "label_choices"):
        values = getattr(r, name)
        _require(len(values) >= 1 and len(set(values)) == len(values), f"rl.{name}", values, "at least one choice, no repeats")
    _require(all(0 <= p <= 0.5 for p in r.flip_choices), "rl.flip_choices", r.flip_choices, "probabilities in [0, 0.5]")
    _require(all(n >= 0 for n in r.extra_removed_choices), "rl.extra_removed_choices", r.extra_removed_choices, "channel counts >= 0")
    _require(all(a > 0 for a in r.alpha_choices), "rl.alpha_choices", r.alpha_choices, "concentrations > 0")
    _require(all(m in LABEL_MODES for m in r.label_choices), "rl.label_choices", r.label_choices, f"each one of {LABEL_MODES}")
    sizes = [len(r.k_choices), len(r.flip_choices), len(r.extra_removed_choices), len(r.alpha_choices), len(r.label_choices)]
    _require(math.prod(sizes) >= 2, "rl.k_choices", r.k_choices, "the knobs (k, flip, extra_removed, alpha, label choices) together must give the policy at least two choices")
    _require(r.reward in REWARDS, "rl.reward", r.reward, f"one of {REWARDS}")
    _require(r.leak_lambda >= 0, "rl.leak_lambda", r.leak_lambda, ">= 0")
    _require(r.attacker_in_loop or r.reward == "paper", "rl.attacker_in_loop", r.attacker_in_loop, f"true: rl.reward={r.reward!r} scores the attacker's leak (only 'paper' runs without it)")
    _require(r.attacker_mode in ATTACKER_MODES, "rl.attacker_mode", r.attacker_mode, f"one of {ATTACKER_MODES}")
    _require(r.leak_reward in LEAK_REWARDS, "rl.leak_reward", r.leak_reward, f"one of {LEAK_REWARDS}")
    if r.attacker_mode == "sampled" and r.leak_reward == "batch":
        raise ConfigError("rl.leak_reward='batch' needs rl.attacker_mode='exact': a sampled run judges only some batches, the others have no leak of their own")
    _require(0 < r.attacker_sample_rate <= 1, "rl.attacker_sample_rate", r.attacker_sample_rate, "(0, 1]")
    _require(r.attacker_batch_size >= 2, "rl.attacker_batch_size", r.attacker_batch_size, ">= 2")
    _require(r.attacker_rows >= 0, "rl.attacker_rows", r.attacker_rows, ">= 0 (0 = every row)")
    _require(len(r.attacker_widths) == 3 and _sizes(r.attacker_widths, 3, MAX_WIDTH), "rl.attacker_widths", r.attacker_widths, f"three widths in 1..{MAX_WIDTH}")
    _require(r.judge_steps >= 1, "rl.judge_steps", r.judge_steps, ">= 1")
    _require(r.attacker_train_steps >= 0, "rl.attacker_train_steps", r.attacker_train_steps, ">= 0")
    _require(r.attacker_warmup_steps >= 0, "rl.attacker_warmup_steps", r.attacker_warmup_steps, ">= 0")
    _require(r.attacker_lr > 0, "rl.attacker_lr", r.attacker_lr, "> 0")
    _require(r.attacker_num_gpus == -1 or 0 <= r.attacker_num_gpus, "rl.attacker_num_gpus", r.attacker_num_gpus, "-1 (auto), or >= 0")
    _require(r.attacker_threads >= 1, "rl.attacker_threads", r.attacker_threads, ">= 1")
    _require(r.fr_wait_policy in WAIT_POLICIES, "rl.fr_wait_policy", r.fr_wait_policy, f"one of {WAIT_POLICIES}")
    _require(r.horizon >= 1, "rl.horizon", r.horizon, ">= 1")
    _require(r.utility_lambda >= 0, "rl.utility_lambda", r.utility_lambda, ">= 0")
    _require(0 <= r.accuracy_floor <= 1, "rl.accuracy_floor", r.accuracy_floor, "[0, 1]")
    for name in ("eval_every", "iterations", "train_batch_size", "minibatch_size", "num_epochs", "checkpoint_every", "image_every", "policy_eval_steps", "fr_autosave_every"):
        _require(getattr(r, name) >= 1, f"rl.{name}", getattr(r, name), ">= 1")
    _require(r.record_masked_batches >= 0, "rl.record_masked_batches", r.record_masked_batches, ">= 0")
    _require(r.minibatch_size <= r.train_batch_size, "rl.minibatch_size", r.minibatch_size, f"<= rl.train_batch_size ({r.train_batch_size})")
    _require(r.lr > 0, "rl.lr", r.lr, "> 0")
    _require(0 <= r.gamma <= 1, "rl.gamma", r.gamma, "[0, 1]")
    _require(0 <= r.gae_lambda <= 1, "rl.gae_lambda", r.gae_lambda, "[0, 1]")
    _require(r.entropy_coeff >= 0, "rl.entropy_coeff", r.entropy_coeff, ">= 0")
    _require(_sizes(r.hidden, MAX_LAYERS, MAX_WIDTH), "rl.hidden", r.hidden, f"1 to {MAX_LAYERS} layer sizes in 1..{MAX_WIDTH}")
    _require(r.num_env_runners >= 0, "rl.num_env_runners", r.num_env_runners, ">= 0 (0 = sample in the driver)")
    _require(r.max_inflight >= 1, "rl.max_inflight", r.max_inflight, ">= 1")
    _require(r.fr_workers >= 1, "rl.fr_workers", r.fr_workers, ">= 1")
    _require(r.fr_workers == 1 or rows_per_step == 0, "fr.rows_per_step", rows_per_step, f"0 with rl.fr_workers={r.fr_workers}: data-parallel workers must take the same steps, and an aggregated step depends on what each worker has queued")
    _require(batch_size % r.fr_workers == 0, "rl.fr_workers", r.fr_workers, f"a divisor of fr.batch_size ({batch_size}): each FR worker trains on an equal shard of every batch")
    _require(r.num_cpus_per_env_runner >= 0, "rl.num_cpus_per_env_runner", r.num_cpus_per_env_runner, ">= 0")
    _require(r.num_learners >= 0, "rl.num_learners", r.num_learners, ">= 0")
    _require(r.learner_threads >= 1, "rl.learner_threads", r.learner_threads, ">= 1")
    _require(r.sample_timeout_s > 0, "rl.sample_timeout_s", r.sample_timeout_s, "> 0")
    _require(r.fr_num_gpus == -1 or 0 <= r.fr_num_gpus, "rl.fr_num_gpus", r.fr_num_gpus, "-1 (auto), or >= 0 (fractions allowed)")
    _require(r.fr_num_cpus >= 0, "rl.fr_num_cpus", r.fr_num_cpus, ">= 0")
    _require(r.attacker_num_cpus >= 0, "rl.attacker_num_cpus", r.attacker_num_cpus, ">= 0")
    _require(r.fr_threads >= 0, "rl.fr_threads", r.fr_threads, ">= 0")
    _require(r.fr_max_restarts >= -1, "rl.fr_max_restarts", r.fr_max_restarts, ">= -1 (-1 = forever)")
    _require(r.env_runner_max_restarts >= 0, "rl.env_runner_max_restarts", r.env_runner_max_restarts, ">= 0")


def validate_dp(d: DPConfig) -> None:
    _require(d.target_epsilon > 0, "dp.target_epsilon", d.target_epsilon, "> 0")
    _require(0 < d.delta < 1, "dp.delta", d.delta, "(0, 1)")
    _require(d.max_grad_norm > 0, "dp.max_grad_norm", d.max_grad_norm, "> 0")


def split_defence_name(name: str) -> tuple[str, list[str]]:
    """``"fixed[k=4,flip=0.5]+key"`` -> ``("fixed[k=4,flip=0.5]", ["+key"])``: a benchmark row's
    base defence and its owner options (``OWNER_SUFFIXES``)."""
    suffixes: list[str] = []
    base = name
    while True:
        at = _EVAL_FLIP_AT.search(base)
        hit = at.group(0) if at else next((s for s in OWNER_SUFFIXES if base.endswith(s)), None)
        if hit is None:
            return base, suffixes[::-1]
        suffixes.append(hit)
        base = base[: -len(hit)]


def eval_flip_of(suffixes: list[str]) -> float:
    """The k = 1 messages' flip probability a row's owner options ask for (0: none)."""
    for s in suffixes:
        if s == "+evalflip":
            return EVAL_FLIP
        if s.startswith("+evalflip="):
            return float(s.split("=", 1)[1])
    return 0.0


def evalflip_suffix(flip: float) -> str:
    """The owner option for flip probability ``flip`` on the k = 1 messages (probes; the owner's own held-out encodings)."""
    return "" if flip <= 0 else "+evalflip" if flip == EVAL_FLIP else f"+evalflip={flip:g}"


def _known_defence(name: str) -> bool:
    base, suffixes = split_defence_name(name)
    flips = [s for s in suffixes if s.startswith("+evalflip")]
    try:
        flip = eval_flip_of(suffixes)
    except ValueError:
        return False
    if len(flips) > 1 or (flips and not 0 < flip <= EVAL_FLIP):
        return False
    if base.startswith("fixed[") and base.endswith("]"):
        try:
            parse_settings(base[len("fixed[") : -1])
        except ValueError:
            return False
        return True
    if suffixes and base not in HYBRID_DEFENCES:
        return False
    return base in BENCHMARK_DEFENCES and sum(s in KEY_SUFFIX_KINDS for s in suffixes) <= 1


def validate_benchmark(b: BenchmarkConfig, rl_k_choices: list[int]) -> None:
    for name, values, allowed in (("defences", b.defences, BENCHMARK_DEFENCES), ("attacks", b.attacks, BENCHMARK_ATTACKS)):
        _require(len(values) >= 1, f"benchmark.{name}", values, f"at least one of {allowed}")
        known = _known_defence if name == "defences" else allowed.__contains__
        bad = [v for v in values if not known(v)]
        _require(not bad, f"benchmark.{name}", values, f"each one of {allowed} ({bad[0] if bad else ''!s} is not)")
        _require(len(set(values)) == len(values), f"benchmark.{name}", values, "no repeats")
    probs = b.adaptive_k_probs
    if probs:
        _require(len(probs) == len(rl_k_choices), "benchmark.adaptive_k_probs", probs, f"one probability per rl.k_choices {rl_k_choices}, or empty for uniform")
        _require(all(p >= 0 for p in probs) and sum(probs) > 0, "benchmark.adaptive_k_probs", probs, "non-negative, not all zero")
    _require(b.blackbox_k >= 1, "benchmark.blackbox_k", b.blackbox_k, ">= 1")
    _require(len(b.fixed_grid) >= 1, "benchmark.fixed_grid", b.fixed_grid, "at least one setting")
    for item in b.fixed_grid:
        try:
            parse_settings(item)
        except ValueError as exc:
            raise ConfigError(f"benchmark.fixed_grid: {exc}") from None
    _require(0 <= b.best_fixed_tolerance <= 1, "benchmark.best_fixed_tolerance", b.best_fixed_tolerance, "[0, 1]")
    _require(b.seeds >= 1, "benchmark.seeds", b.seeds, ">= 1")
    _require(0 <= b.judge_min_acc <= 1, "benchmark.judge_min_acc", b.judge_min_acc, "[0, 1]")
    _require(b.decoder_gan_weight >= 0, "benchmark.decoder_gan_weight", b.decoder_gan_weight, ">= 0")
    for mode in ("full", "quick"):
        budget = getattr(b, mode)
        for f in dataclasses.fields(BenchmarkBudget):
            v = getattr(budget, f.name)
            _require(v >= 1, f"benchmark.{mode}.{f.name}", v, ">= 1")
        _require(budget.decoder_batch_size >= 2, f"benchmark.{mode}.decoder_batch_size", budget.decoder_batch_size, ">= 2")


def knob_grid_size(r: RLConfig) -> int:
    """Settings in the whole fixed grid: the product of the policy's knob choices."""
    return math.prod(len(c) for c in (r.k_choices, r.flip_choices, r.extra_removed_choices, r.alpha_choices, r.label_choices))


def validate_sweep(s: SweepConfig) -> None:
    _require(len(s.leak_lambdas) >= 1, "sweep.leak_lambdas", s.leak_lambdas, "at least one rl.leak_lambda")
    _require(all(x >= 0 for x in s.leak_lambdas) and len(set(s.leak_lambdas)) == len(s.leak_lambdas), "sweep.leak_lambdas", s.leak_lambdas, "values >= 0, no repeats")
    # a sample as large as the grid (knob_grid_size) is the whole grid; not an error, so that
    # narrowing the rl.*_choices for another command never trips over the sweep's default
    _require(s.grid_sample >= 0, "sweep.grid_sample", s.grid_sample, ">= 0 (0: the whole grid)")
    bad = [a for a in s.attacks if a not in BENCHMARK_ATTACKS]
    _require(not bad, "sweep.attacks", s.attacks, f"each one of {BENCHMARK_ATTACKS} ({bad[0] if bad else ''} is not)")
    judged = [a for a in s.attacks if a not in LINKAGE_ATTACKS + WHAT_IF_ATTACKS + EVAL_DOOR_ATTACKS]
    _require(len(judged) >= 1 and len(set(s.attacks)) == len(s.attacks), "sweep.attacks", s.attacks, "no repeats, and at least one judged reconstruction attack on the training batches (the leak axis of the front)")
    _require(s.trial_cpus >= 0, "sweep.trial_cpus", s.trial_cpus, ">= 0")
    _require(s.trial_gpus >= 0, "sweep.trial_gpus", s.trial_gpus, ">= 0")
    _require(s.max_concurrent >= 0, "sweep.max_concurrent", s.max_concurrent, ">= 0 (0: as the resources allow)")
    _require(s.policy_seeds >= 0, "sweep.policy_seeds", s.policy_seeds, ">= 0 (0: benchmark.seeds)")


def validate(cfg: Config) -> None:
    validate_data(cfg.data)
    validate_model(cfg.model)
    validate_fr(cfg.fr)
    validate_strategy(cfg.strategy, cfg.fr.batch_size)
    validate_rl(cfg.rl, cfg.fr.batch_size, cfg.fr.rows_per_step)
    validate_benchmark(cfg.benchmark, list(cfg.rl.k_choices))
    # best-fixed's grid points must be runnable when the row is asked for
    grid = [parse_settings(item) for item in cfg.benchmark.fixed_grid] if "best-fixed" in cfg.benchmark.defences else []
    validate_mask(cfg.mask, cfg.strategy.ks_used() + list(cfg.rl.k_choices) + [g["k"] for g in grid])
    left = 64 - len(set(cfg.mask.removed_channels))
    for item, g in zip(cfg.benchmark.fixed_grid, grid):
        _require(g["k"] <= cfg.fr.batch_size, "benchmark.fixed_grid", item, f"k <= fr.batch_size ({cfg.fr.batch_size})")
        _require(g["extra_removed"] < left, "benchmark.fixed_grid", item, f"extra_removed < {left} (the channels mask.removed_channels leaves)")
    _require(all(n < left for n in cfg.rl.extra_removed_choices), "rl.extra_removed_choices", cfg.rl.extra_removed_choices, f"each < {left}: mask.removed_channels leaves {left} channels per plane, at least one must stay")
    _require(cfg.mask.eval_extra_removed == AS_TRAINED or 0 <= cfg.mask.eval_extra_removed < left, "mask.eval_extra_removed", cfg.mask.eval_extra_removed, f"a channel count in 0..{left - 1}, or {int(AS_TRAINED)} for as the training rows")
    # a convolution reads neighbouring block positions together: through a scramble nothing is a
    # neighbour any more (README, "the scramble key")
    positionless = {s for s, kind in KEY_SUFFIX_KINDS.items() if kind in POSITIONLESS_KEYS}
    scrambled = cfg.mask.key in POSITIONLESS_KEYS or any(positionless & set(split_defence_name(d)[1]) for d in cfg.benchmark.defences)
    _require(not scrambled or cfg.model.arch == "mlp", "model.arch", cfg.model.arch, "mlp with the scramble or dense key (mask.key or a +scramble / +dense benchmark row)")
    validate_dp(cfg.dp)
    validate_sweep(cfg.sweep)

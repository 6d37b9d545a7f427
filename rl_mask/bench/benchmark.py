"""``rl-mask benchmark``: every defence trained on the same private faces with the same budget,
every attack run against each, scored by one independent evaluation model.

Order of work (all seeded; a rerun with the same config and thread count reproduces the
numbers):

1. load and split the faces; assert no private identity is in the attacker's public set;
2. train the evaluation model on the clean private training faces;
3. per defence: train the FR network (``train_fr``, run folder under ``OUT/runs/NAME``) and
   replay the first ``attack_batches`` protected training batches (what left the data owner);
   for ``adaptive`` / ``adaptive-paper`` with a trained policy run, *deploy* the policy
   (``trainers.deploy_policy``, handed in by the CLI: this package runs no Ray) on a fresh FR
   network with the same FR budget, and attack exactly the batches it sent; ``best-fixed``
   runs every point of a small grid of fixed settings of the policy's knobs and keeps the one
   with the lowest worst-attack leak at the adaptive row's utility (``pick_best_fixed``);
4. per attack: fit on the public faces (a fit is shared between defences that look the same
   to that attacker, e.g. one GAN for every GMI run), attack, score;
5. steps 2-4 are one seed (``run_seed``); with ``benchmark.seeds`` = N they run N times with
   derived seeds (``seed_config``) and every figure is aggregated into a mean and a 95%
   interval (``rl_mask.bench.aggregate``);
6. write ``results.json``, ``results.md``, ``pareto.png`` and ``examples.png``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from rl_mask.attacks import Attack, AttackTarget, build_attack
from rl_mask.attacks.eval_door import eval_message_target
from rl_mask.attacks.key_recovery import (
    ROTATION_KEYS,
    KeyEstimate,
    PermutationEstimate,
    SubspaceEstimate,
    key_reference,
    recover_key,
    scramble_recovery_score,
    settings_reference,
    subspace_recovery_score,
)
from rl_mask.attacks.linkage import Gallery, LinkageTarget, build_linkage, identification
from rl_mask.bench.aggregate import aggregate_seeds
from rl_mask.bench.front import best_at_utility
from rl_mask.bench.report import worst_case, write_report
from rl_mask.bench.runtime import estimate_runtime
from rl_mask.config import (
    AS_TRAINED,
    EVAL_DOOR_ATTACKS,
    KEY_SUFFIX_KINDS,
    LINKAGE_ATTACKS,
    RECOVER_SUFFIX,
    Config,
    ConfigError,
    eval_flip_of,
    evalflip_suffix,
    owner_seed,
    parse_settings,
    save_config,
    split_defence_name,
)
from rl_mask.mask.defences import Defence, HybridDefence
from rl_mask.mask.settings import MaskSettings
from rl_mask.owner.data import FaceDataError, FaceSplit
from rl_mask.owner.defences import EVAL_FLIP_SEED, build_defence, eval_extra_removed, hybrid_mask_from_config
from rl_mask.owner.judge import PrivacyJudge, ScoringKey, judge_report, scoring_key, train_evaluation_model
from rl_mask.owner.judge.evaluator import ARCHITECTURE as EVALUATOR_ARCHITECTURE
from rl_mask.owner.key import OwnerKey
from rl_mask.owner.messages import probe_set
from rl_mask.owner.stream import PrivateData, TrainingBatch, TrainingStream, prepare_data
from rl_mask.protocol import ProtectedBatch, ProtectedProbes
from rl_mask.reconstruction import Reconstruction
from rl_mask.run_folder import claim_out_dir
from rl_mask.server.models import FaceRecognizer
from rl_mask.server.trainer import load_fr_model
from rl_mask.train_fr import set_threads, train_fr
from rl_mask.use.held_out import final_test_set, score_model


class IdentityLeakError(FaceDataError):
    """A private identity is in the attacker's public auxiliary set."""


def check_identity_disjoint(split: FaceSplit) -> None:
    """The attacker's public faces must not show any private person (by folder name and path)."""
    private = set(split.private_train.identities) | set(split.private_test.identities)
    shared = private & set(split.public.identities)
    if shared:
        raise IdentityLeakError(f"private identities {sorted(shared)} are also in the public set")
    private_paths = set(split.private_train.paths) | set(split.private_test.paths)
    if private_paths & set(split.public.paths):
        raise IdentityLeakError("some private images are also in the public set")


@dataclass
class DefenceRun:
    """A trained defence: the model, its utility, and where it came from."""

    name: str
    defence: Defence
    model: FaceRecognizer
    utility: dict
    note: str = ""
    dp: dict | None = None
    run_dir: str | None = None
    seconds: float = 0.0
    replayed: bool = True
    #: the owner's record of the batches as sent (a deployed policy): attacked instead of a replay
    batches: list[TrainingBatch] | None = None
    extra: dict = field(default_factory=dict)


#: ``deploy(policy_run, cfg, data, out_dir, fr_steps, keep, seed, progress)`` -> an object with
#: ``defence``, ``fr_weights``, ``batches``, ``note``, ``action_distribution``, ``fr_steps``
#: (``trainers.deploy_policy.deploy_policy``; injected so that this package needs no Ray).
Deploy = Callable[..., object]
#: The rows a trained policy fills (``--adaptive-run`` / ``--adaptive-paper-run``).
POLICY_ROWS = ("adaptive", "adaptive-paper")
GRID_PREFIX = "fixed"
#: The utility figures every row reports.
UTILITY_FIELDS = ("identification_acc", "identification_top5", "verification_acc")


def grid_defence(cfg: Config, text: str) -> HybridDefence:
    """One best-fixed grid point: the deployed mask with one fixed setting of the policy's knobs."""
    settings = MaskSettings(**parse_settings(text))
    return HybridDefence(f"{GRID_PREFIX}[{text}]", hybrid_mask_from_config(cfg), [settings.k], settings_pool=[settings], eval_extra_removed=eval_extra_removed(cfg, GRID_PREFIX, [settings]))


def deployed_owner_suffixes(cfg: Config, setting_flip: float) -> str:
    """The row suffixes that give a fixed setting (training flip ``setting_flip``) the owner
    options a run of ``cfg`` deploys: its key, and flipped k = 1 messages (so that a fixed
    setting and a policy run of the same config are measured alike)."""
    key = next((s for s, kind in KEY_SUFFIX_KINDS.items() if kind == cfg.mask.key), "")
    flip = setting_flip if cfg.mask.eval_flip == AS_TRAINED else cfg.mask.eval_flip
    return key + evalflip_suffix(flip)


def with_owner_options(defence: Defence, suffixes: list[str], cfg: Config) -> Defence:
    """The row's owner options on a hybrid defence: the owner's key on every message (its seed:
    ``mask.key_seed`` + ``benchmark.seed``, so seeds draw new keys) and/or sign flips on the
    k = 1 messages, probes and the owner's held-out encodings (``+evalflip``: p 0.5, ``+evalflip=P``: p P)."""
    if not suffixes:
        return defence
    if not isinstance(defence, HybridDefence):
        raise ConfigError(f"{defence.name}: the owner options {suffixes} need a frequency-domain (hybrid) defence")
    kind = next((KEY_SUFFIX_KINDS[s] for s in suffixes if s in KEY_SUFFIX_KINDS), None)
    key = None if kind is None else OwnerKey(cfg.mask.key_seed + cfg.benchmark.seed, kind)
    out = defence.with_owner_options(key, eval_flip=eval_flip_of(suffixes), eval_seed=owner_seed(cfg.benchmark.seed + EVAL_FLIP_SEED, cfg))
    out.name = defence.name + "".join(suffixes)
    return out


def train_defence(
    name: str,
    cfg: Config,
    data: PrivateData,
    out: Path,
    policy_run: str | None,
    progress: bool,
    deploy: Deploy | None = None,
    keep: int = 0,
) -> DefenceRun:
    started = time.perf_counter()
    run_dir = out / "runs" / name.replace("/", "_")
    if name in POLICY_ROWS and policy_run:
        if deploy is None:
            raise ConfigError(f"the {name} row's policy run {policy_run} needs the deploy step (rl-mask benchmark hands it in)")
        dep = deploy(policy_run, cfg, data, run_dir, cfg.fr.steps, keep, cfg.benchmark.seed, progress)
        model, _ = load_fr_model(dep.fr_weights)
        utility = score_model(model, final_test_set(dep.defence, data))  # on the owner's side, as every row
        utility = {k: utility[k] for k in UTILITY_FIELDS}
        extra = {"fr_steps": dep.fr_steps, "action_distribution": dep.action_distribution}
        return DefenceRun(name, dep.defence, model, utility, note=dep.note, run_dir=str(run_dir), seconds=time.perf_counter() - started, replayed=False, batches=dep.batches, extra=extra)
    if name == "adaptive-paper":
        raise ConfigError("the adaptive-paper row needs --adaptive-paper-run RUN_DIR (an rl-mask train run with rl.reward=paper)")
    note = ""
    full_name = name
    name, suffixes = split_defence_name(name)
    if name == "adaptive":
        ks = list(cfg.rl.k_choices)
        probs = list(cfg.benchmark.adaptive_k_probs) or [1.0] * len(ks)
        defence = build_defence(cfg, "adaptive", probs, ks)
        note = (
            "no --adaptive-run given: no learned policy; the FR network is trained here with k drawn from "
            f"benchmark.adaptive_k_probs over rl.k_choices {dict(zip(ks, defence.probs))}"
            + (" (uniform: the same distribution as random-k)" if not cfg.benchmark.adaptive_k_probs else "")
        )
    elif name.startswith(f"{GRID_PREFIX}["):
        defence = grid_defence(cfg, name[len(GRID_PREFIX) + 1 : -1])
        note = "a best-fixed grid point: one fixed setting of the policy's knobs for every batch"
    else:
        defence = build_defence(cfg, name)
    defence = with_owner_options(defence, suffixes, cfg)
    summary = train_fr(cfg, run_dir, defence=defence, progress=progress, data=data)
    model, _ = load_fr_model(run_dir / "fr.pt")
    utility = {k: summary[k] for k in UTILITY_FIELDS}
    return DefenceRun(full_name, defence, model, utility, note=note, dp=summary.get("dp"), run_dir=str(run_dir), seconds=time.perf_counter() - started, extra={"fr_steps": summary["fr_steps"], "input_map": summary["input_map"]})


def pick_best_fixed(rows: list[dict], reference: dict | None, tolerance: float) -> dict:
    """The best-fixed row: among the grid rows whose identification accuracy is at least the
    reference row's (the adaptive row) minus ``tolerance``, the lowest worst-attack leak; if
    none is that accurate, the most accurate grid row (the note says so)."""
    grid = [r for r in rows if r["name"].startswith(f"{GRID_PREFIX}[")]
    if not grid:
        raise ValueError("best-fixed needs grid rows")
    acc = lambda r: r["utility"]["identification_acc"]  # noqa: E731
    leak = lambda r: worst_case(r)[1]["acc1"]  # noqa: E731
    if reference is None:
        best, _ = best_at_utility(grid, acc, leak, target=0.0, tolerance=0.0)
        why = "no adaptive row to match: the lowest worst-attack leak of the grid"
    else:
        best, matched = best_at_utility(grid, acc, leak, target=acc(reference), tolerance=tolerance)
        if matched:
            why = f"the lowest worst-attack leak among grid points within {100 * tolerance:.0f} points of the adaptive row's identification accuracy ({100 * acc(reference):.1f}%)"
        else:
            why = f"no grid point came within {100 * tolerance:.0f} points of the adaptive row's accuracy: the most accurate one"
    return {**copy.deepcopy(best), "name": "best-fixed", "note": f"= {best['name']}: {why}", "best_fixed_of": best["name"]}


def attacked_batches(cfg: Config, run: DefenceRun, data: PrivateData, batches: int, context: int = 0) -> tuple[AttackTarget, ScoringKey, list[torch.Tensor]]:
    """The first ``batches`` protected training batches (a replay of what the FR run trained
    on, or what a deployed policy sent): the attack target (exactly the messages that crossed,
    and the next ``context`` messages, unscored, for across-batch attacks), the owner's scoring
    key, and the provenance that did NOT cross (only for what-if attacks)."""
    if run.batches is not None:  # a deployed policy: exactly the batches it sent
        sent = run.batches[: batches + context]
    else:
        stream = TrainingStream(cfg, run.defence, data)
        sent = [stream.next() for _ in range(batches + context)]
    drawn = [b for b in sent[:batches] if b.masked.inputs.shape[0] > 0]
    later = [b.masked for b in sent[batches:] if b.masked.inputs.shape[0] > 0]
    # Each batch's settings are public parameters: the white-box attacker is granted them.
    target = AttackTarget(
        run.defence.public(),  # attacks run the public algorithm, never the owner's key
        [b.masked.protected() for b in drawn],
        run.model,
        data.num_classes,
        settings=[b.masked.settings for b in drawn],
        context=[m.protected() for m in later],
        context_settings=[m.settings for m in later],
    )
    return target, scoring_key(drawn), [b.masked.sources for b in drawn]


def mean_face_baseline(public: torch.Tensor, judge: PrivacyJudge, target: AttackTarget, key: ScoringKey) -> dict:
    """The do-nothing attacker: the mean public face for every protected sample."""
    n = target.num_rows
    rec = Reconstruction(public.mean(0, keepdim=True).expand(n, -1, -1, -1).contiguous(), target.joined().dominant_label, "reconstruction", rows=torch.arange(n))
    return judge.score(rec, key)


def linkage_gallery(data: PrivateData, seed: int) -> tuple[Gallery, torch.Tensor]:
    """The candidates of the linkage attacks (owner side: it knows who is who): every private
    identity's held-out test faces (never in a training batch) and as many faces of every
    public identity (distractors), in a seeded random order. Returns the gallery and
    ``truth[label]``, the candidate index of each private label."""
    per = min(int((data.test_labels == label).sum()) for label in range(data.num_classes))
    public = data.split.public
    faces, labels = public.float_images(), public.labels
    photos = [data.test_images[data.test_labels == label][:per] for label in range(data.num_classes)]
    photos += [faces[labels == label][:per] for label in labels.unique().tolist()]
    order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(seed))
    return Gallery([photos[i] for i in order.tolist()]), torch.argsort(order)[: data.num_classes]


@dataclass
class ProbeMessages:
    """The held-out faces that can cross: validation and test are scored on the owner's side
    and never sent, but an owner who embeds its held-out faces through the server (``rl-mask
    encode`` / ``embed``) sends them as ``ProtectedProbes``. The benchmark assumes it embeds
    every one (the most that can cross), encoded once: every attack on the row (the probe
    door, key recovery, linkage) holds these very messages (their flips are drawn afresh at
    each encoding, so encoding again would make others)."""

    validation: ProtectedProbes
    test: ProtectedProbes

    @classmethod
    def of(cls, run: DefenceRun, data: PrivateData) -> "ProbeMessages":
        return cls(probe_set(run.defence, data.val_images), probe_set(run.defence, data.test_images))

    def inputs(self) -> torch.Tensor:
        """Every probe's message in sending order: the validation faces', then the test faces'."""
        return torch.cat([self.validation.inputs, self.test.inputs])


def eval_door_target(run: DefenceRun, data: PrivateData, messages: ProbeMessages) -> tuple[AttackTarget, ScoringKey]:
    """The probe door as an attack target: every probe that crossed (the validation faces'
    and the test faces', exactly as the owner sent them), attacked as k = 1 rows; the
    attacker simulates the public held-out encoding (``EvalMessageView``). Which identity
    each probe is stays with the owner: the labels serve only the judge's scoring (its
    evaluation model trains on the private training faces alone, so no probe is one it saw)."""
    labels = torch.cat([data.val_labels, data.test_labels])
    target = eval_message_target(run.defence.public(), messages.inputs(), labels, run.model, data.num_classes)
    return target, ScoringKey.single(labels, torch.cat([data.val_images, data.test_images]))


def linkage_target(run: DefenceRun, data: PrivateData, target: AttackTarget, messages: ProbeMessages, key_undone: KeyUndo) -> LinkageTarget:
    """What the linkage attacker holds: every training row the attacks see (scored and
    context), the validation faces' probes, the trained model, the public encoding and the
    key's construction (public; its seed is not), and the key it recovered from all of them."""
    key = key_undone.key
    rows = target.crossed + list(target.context or [])
    return LinkageTarget(target.defence, rows, [messages.validation.inputs], run.model, data.num_classes, key_kind=None if key is None else key.kind, key_estimate=key_undone.estimate)


class KeyUndo:
    """``NAME+recover``: a target with the owner's key estimated and undone.

    The key's construction is public, its seed is not: the attacker estimates the key from
    the messages the server holds (the training rows, scored and context, and the held-out
    faces' probes; for a rotation with every message's settings public, those sent without
    flips: ``moments``) against public encodings of its own faces
    (``rl_mask.attacks.key_recovery``), once per row, and undoes it on every crossed input of a
    target. Without a key a target is returned as it is."""

    def __init__(self, run: DefenceRun, target: AttackTarget, public: torch.Tensor, messages: ProbeMessages):
        self.key = getattr(getattr(run.defence, "mask", None), "key", None)
        self.target, self.public, self.messages = target, public, messages
        self._estimate: KeyEstimate | None = None

    def training_rows(self) -> torch.Tensor:
        return torch.cat([b.inputs for b in self.target.crossed + list(self.target.context or [])])

    def held(self) -> torch.Tensor:
        return torch.cat([self.training_rows(), self.messages.inputs()])

    def estimate(self) -> KeyEstimate:
        if self._estimate is None:
            held, reference = self.moments()
            self._estimate = recover_key(self.key.kind, held, reference)
        return self._estimate

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The held rows the estimate reads and the attacker's reference for them. Where every
        message's settings are public (a hybrid defence's), a rotation is read from the
        messages sent without flips, each against its own settings (``settings_reference``);
        otherwise from every row against the defence's public settings in proportion."""
        t = self.target
        probes = self.messages.inputs()
        settings = list(t.settings or []) + list(t.context_settings or [])
        batches = t.crossed + list(t.context or [])
        if self.key.kind in ROTATION_KEYS and len(settings) == len(batches) and all(s is not None for s in settings):
            matched = settings_reference(t.defence, self.public, batches, settings, probes)
            if matched is not None:
                return matched
        training = self.training_rows()
        reference = key_reference(t.defence, self.public, self.key.kind, training_rows=len(training), probe_rows=len(probes))
        return torch.cat([training, probes]), reference

    def score(self) -> dict | None:
        """Owner side, for a ``scramble`` or ``dense`` key it has recovered: how much of it was recovered."""
        shape = tuple(self.target.crossed[0].inputs.shape[1:])
        if isinstance(self._estimate, PermutationEstimate):
            return scramble_recovery_score(self._estimate, self.key.scramble(*shape)[0], shape)
        if isinstance(self._estimate, SubspaceEstimate):
            return subspace_recovery_score(self._estimate, self.key.apply, shape)
        return None

    def __call__(self, attacked: AttackTarget) -> AttackTarget:
        if self.key is None:
            return attacked
        key = self.estimate()

        def undo(b: ProtectedBatch) -> ProtectedBatch:
            return ProtectedBatch(key.undo(b.inputs), b.labels, b.weights)

        return dataclasses.replace(attacked, crossed=[undo(b) for b in attacked.crossed], context=[undo(b) for b in attacked.context] if attacked.context else attacked.context)


#: Distance between the seeds of consecutive benchmark repeats.
SEED_STRIDE = 1000
#: The judge's seed relative to ``benchmark.seed`` (another seed than the FR network's).
JUDGE_SEED_OFFSET = 1234


def seed_config(cfg: Config, index: int) -> Config:
    """Seed ``index`` of a multi-seed benchmark: FR training (and the replayed batches), the
    attacks and the judge all move together; index 0 is the config as given. The face split
    (``data.split_seed``) stays fixed, so the spread is that of training, not of the split."""
    out = copy.deepcopy(cfg)
    out.fr.seed = cfg.fr.seed + SEED_STRIDE * index
    out.benchmark.seed = cfg.benchmark.seed + SEED_STRIDE * index
    return out


def defence_rows(bench, budget, policies: dict[str, str]) -> list[str]:
    """The rows to train, in order: ``best-fixed`` expands to its grid points (the row itself
    is picked from them afterwards), a policy row given a run is added if not listed."""
    rows = []
    for name in list(bench.defences) + [p for p in POLICY_ROWS if p in policies and p not in bench.defences]:
        if name == "best-fixed":
            rows += [f"{GRID_PREFIX}[{text}]" for text in bench.fixed_grid[: budget.grid_points]]
        else:
            rows.append(name)
    return rows


def run_seed(run_cfg: Config, data: PrivateData, out: Path, budget, policies: dict[str, str], progress: bool, deploy: Deploy | None = None) -> tuple[dict, list[dict]]:
    """One repeat of the benchmark under ``run_cfg``'s seeds: train the judge and every defence,
    run every attack, score. Returns ``(figures, examples)``; ``figures`` holds the judge's
    quality, the do-nothing baseline, one row per defence and the timings."""
    bench = run_cfg.benchmark
    public = data.split.public.float_images()
    image_shape = tuple(public.shape[1:])
    timings: dict[str, float] = {}

    t = time.perf_counter()
    judge_model = train_evaluation_model(data.train_images, data.train_labels, data.num_classes, budget.eval_model_steps, seed=bench.seed + JUDGE_SEED_OFFSET, progress=progress)
    judge = PrivacyJudge.for_private_data(judge_model, data)
    judge_quality = vars(judge_report(judge_model, data.train_images, data.train_labels, data.test_images, data.test_labels))
    timings["evaluation_model"] = time.perf_counter() - t

    fitted: dict[str, Attack] = {}  # by fit_key: one fit serves every defence that looks alike to the attack
    defences: list[dict] = []
    examples: list[dict] = []
    baseline: dict | None = None
    linkage_names = [a for a in bench.attacks if a in LINKAGE_ATTACKS]
    door_names = [a for a in bench.attacks if a in EVAL_DOOR_ATTACKS]
    batch_names = [a for a in bench.attacks if a not in LINKAGE_ATTACKS + EVAL_DOOR_ATTACKS]
    gallery, truth = linkage_gallery(data, bench.seed) if linkage_names else (None, None)
    outer = tqdm(defence_rows(bench, budget, policies), desc="benchmark (defences)", disable=not progress, dynamic_ncols=True)
    for name in outer:
        outer.set_postfix(defence=name)
        context = budget.context_batches if "cross-batch" in bench.attacks or linkage_names else 0
        run = train_defence(name, run_cfg, data, out, policies.get(name), progress, deploy=deploy, keep=budget.attack_batches + context)
        timings[f"train/{name}"] = run.seconds
        target, scoring, leaked_sources = attacked_batches(run_cfg, run, data, budget.attack_batches, context)
        # the do-nothing attacker on these very rows (its any-of-k floor grows with k): each
        # cell's reference, and the table's reference row (the first defence's)
        reference = mean_face_baseline(public, judge, target, scoring)
        baseline = baseline or reference
        messages = ProbeMessages.of(run, data)
        key_undone = KeyUndo(run, target, public, messages)
        cells: dict[str, dict] = {}
        recs: dict[str, Reconstruction] = {}
        for attack_name in batch_names:
            base_name = attack_name.removesuffix(RECOVER_SUFFIX)
            attack = build_attack(base_name, bench, budget)
            fit_id = attack.fit_key(target.defence, image_shape)
            if fit_id not in fitted:
                t = time.perf_counter()
                fitted[fit_id] = attack.fit(public, target.defence, progress=progress)
                timings[f"fit/{attack_name}/{name}"] = time.perf_counter() - t
            attack = fitted[fit_id]
            t = time.perf_counter()
            # A what-if attack gets a field that does not cross, explicitly and only here.
            attacked = key_undone(target) if attack_name != base_name else target
            rec = attack.attack(attacked, progress=progress, leaked_sources=leaked_sources) if attack.what_if else attack.attack(attacked, progress=progress)
            timings[f"attack/{attack_name}/{name}"] = time.perf_counter() - t
            cells[attack_name] = {**judge.score(rec, scoring), "reference_acc1": reference["acc1"], "attack": {**attack.describe(), "name": attack_name}, "what_if": attack.what_if}
            recs[attack_name] = rec
        for attack_name in door_names:  # whitebox-eval: the white-box decoder on every probe (validation and test faces)
            door, door_key = eval_door_target(run, data, messages)
            attack = build_attack("whitebox", bench, budget)
            fit_id = attack.fit_key(door.defence, image_shape)
            if fit_id not in fitted:
                t = time.perf_counter()
                fitted[fit_id] = attack.fit(public, door.defence, progress=progress)
                timings[f"fit/{attack_name}/{name}"] = time.perf_counter() - t
            rec = fitted[fit_id].attack(key_undone(door) if attack_name.endswith(RECOVER_SUFFIX) else door)
            door_reference = mean_face_baseline(public, judge, door, door_key)["acc1"]
            cells[attack_name] = {**judge.score(rec, door_key), "reference_acc1": door_reference, "attack": {**fitted[fit_id].describe(), "name": attack_name}, "what_if": False}
            recs[attack_name] = rec
        linkage: dict[str, dict] = {}
        if linkage_names:
            held = linkage_target(run, data, target, messages, key_undone)
            for attack_name in linkage_names:
                t = time.perf_counter()
                link = build_linkage(attack_name)
                linkage[attack_name] = {**identification(link.link(held, gallery, public), truth), "rows": len(held.rows()), "attack": link.describe()}
                timings[f"attack/{attack_name}/{name}"] = time.perf_counter() - t
        defences.append(
            {
                "name": name,
                "defence": run.defence.describe(),
                "utility": run.utility,
                "dp": run.dp,
                "note": run.note,
                "run_dir": run.run_dir,
                "replayed_batches": run.replayed,
                "attacked_samples": target.num_rows,
                # each attacked batch's settings (public): a policy row's leak is that of these draws
                "attacked_settings": [dataclasses.asdict(x) for x in target.settings] if target.settings and all(x is not None for x in target.settings) else None,
                "attacks": cells,
                **({"linkage": linkage} if linkage_names else {}),
                **({"key_recovery": recovered} if (recovered := key_undone.score()) else {}),
                **run.extra,
            }
        )
        examples.append({"name": name, "view": run.defence.to_pixels(target.crossed[0].inputs[:1]), "original": scoring.dominant_originals()[:1], "label": int(scoring.dominant_labels[0]), "recs": recs})
    if "best-fixed" in bench.defences:
        reference = next((d for d in defences if d["name"] == "adaptive"), None)
        defences.append(pick_best_fixed(defences, reference, bench.best_fixed_tolerance))
        chosen = defences[-1]["best_fixed_of"]
        examples.append({**next(e for e in examples if e["name"] == chosen), "name": "best-fixed"})
    figures = {
        "seed": {"fr": run_cfg.fr.seed, "benchmark": bench.seed, "judge": bench.seed + JUDGE_SEED_OFFSET},
        "evaluation_model": {**judge_quality, "knn_reference": judge.knn_reference},
        "baseline_mean_public_face": baseline,
        "defences": defences,
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    return figures, examples


def run_benchmark(
    cfg: Config,
    out_dir: str | Path,
    quick: bool = False,
    adaptive_run: str | None = None,
    progress: bool = True,
    adaptive_paper_run: str | None = None,
    deploy: Deploy | None = None,
) -> dict:
    """Run the benchmark into ``out_dir`` (``benchmark.seeds`` repeats, aggregated); returns the
    results dict (also ``results.json``)."""
    started = time.perf_counter()
    bench = cfg.benchmark
    budget = bench.quick if quick else bench.full
    policies = {name: run for name, run in zip(POLICY_ROWS, (adaptive_run, adaptive_paper_run)) if run}
    if "adaptive-paper" in bench.defences and "adaptive-paper" not in policies:
        raise ConfigError("benchmark.defences lists adaptive-paper: give its run with --adaptive-paper-run RUN_DIR")
    run_cfg = copy.deepcopy(cfg)
    run_cfg.fr.steps = budget.fr_steps
    # Every row is what its name says: the owner's key and the k = 1 messages' flips come
    # from the row's suffixes (+key, +poskey, +evalflip), not from mask.key / mask.eval_flip (a
    # policy row deploys its run's own mask, secret and all).
    run_cfg.mask.key, run_cfg.mask.eval_flip = "none", 0.0
    run_cfg.validate()
    data = prepare_data(run_cfg)  # bad faces fail before anything is written
    check_identity_disjoint(data.split)
    out = claim_out_dir(out_dir)  # a new or empty folder: no earlier results are overwritten
    save_config(run_cfg, out / "config.yaml")
    set_threads(run_cfg.fr.threads)

    per_seed: list[dict] = []
    examples: list[dict] = []
    for i in range(bench.seeds):
        seed_out = out if bench.seeds == 1 else out / f"seed{i}"  # run folders: OUT/runs/NAME or OUT/seedI/runs/NAME
        figures, seed_examples = run_seed(seed_config(run_cfg, i), data, seed_out, budget, policies, progress, deploy)
        per_seed.append(figures)
        examples = examples or seed_examples
    results = {
        "mode": "quick" if quick else "full",
        "budget": vars(budget),
        "seed": bench.seed,
        "seeds": bench.seeds,
        "torch_threads": torch.get_num_threads(),
        "data": {
            "root": run_cfg.data.resolved_root(),
            "private_identities": data.num_classes,
            "private_train_images": len(data.train_labels),
            "private_test_images": len(data.test_labels),
            "public_identities": data.split.public.num_classes,
            "public_images": len(data.split.public),
            "chance_acc1": 1.0 / data.num_classes,
        },
        "adaptive_run": adaptive_run,
        "adaptive_paper_run": adaptive_paper_run,
        **aggregate_seeds(per_seed, len(data.test_labels), bench.judge_min_acc),
        "per_seed": per_seed,
    }
    results["evaluation_model"]["architecture"] = EVALUATOR_ARCHITECTURE
    results["runtime_estimate"] = estimate_runtime(per_seed[0]["timings_seconds"], vars(budget), {"quick": vars(bench.quick), "full": vars(bench.full)})
    results["wall_seconds"] = round(time.perf_counter() - started, 2)
    write_report(results, out, examples)
    return results

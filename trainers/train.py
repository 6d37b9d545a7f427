"""``rl-mask train``: the adaptive strategy, PPO env runners + the shared FR actor, one run folder.

The loop is ours (not Tune's) so that debug mode is a plain ``algo.train()`` loop in one
process and every TensorBoard tag is explicit. Per iteration it logs PPO's figures and
ours, and every ``rl.checkpoint_every`` iterations writes a checkpoint that holds the
algorithm (policy, optimizer, counters) and the FR actor's state together.

Run folder::

    RUN_DIR/config.yaml  summary.json  fr.pt  policy.pt  judge.pt (the owner's leak judge)
    RUN_DIR/tb/                       TensorBoard events
    RUN_DIR/boundary/                 the first batches each env sent, as sent (export-masked)
    RUN_DIR/checkpoints/iter_NNNNNN/  algo/ (RLlib), fr_state.pt, state.json
    RUN_DIR/checkpoints/latest        name of the newest complete checkpoint
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import ray
from tqdm.auto import tqdm

from envs.fr_client import FRClient
from rl_mask.checkpoint import atomic_write_text, save_checkpoint
from rl_mask.config import Config, ConfigError, save_config
from rl_mask.cpu_threads import torch_threads
from rl_mask.mask.settings import SettingsSpace
from rl_mask.owner.defences import build_defence
from rl_mask.owner.judge.evaluator import input_pool, train_evaluation_model
from rl_mask.owner.messages import training_setup
from rl_mask.owner.recorder import boundary_dir
from rl_mask.owner.stream import PrivateData, prepare_data
from rl_mask.run_folder import RUN_DIR_MODE, autosave_path, check_out_dir, claim_out_dir
from rl_mask.use.held_out import final_test_set, score_trained
from trainers.checkpoint_safety import verified_copy
from trainers.checkpoints import holds_run, write_checkpoint
from trainers.fr_progress import progress_path
from trainers.local_ray import LocalRay
from trainers.policy_eval import score_policy
from trainers.ppo import build_ppo_config, total_fr_steps
from trainers.resume_point import ResumePoint, resume_point
from trainers.runtime import LocalRuntime, RayRuntime, Runtime
from trainers.shutdown import GracefulStop
from trainers.tensorboard import RunWriter, examples_tag, fr_scalars, masked_examples, owner_scalars, ppo_scalars

NAMESPACE = "rl-mask"
#: What an attempt of ``rl-mask train`` writes before its first checkpoint (``--auto-resume`` starts over on it).
ATTEMPT_FILES = frozenset({"config.yaml", "judge.pt", "tb", "boundary", "checkpoints"})


# ----------------------------------------------------------------------------- ray


def init_ray(address: str | None, while_starting: Callable[[], object] = lambda: None) -> LocalRay | None:
    """Connect to Ray: the cluster at ``address`` (or ``$RAY_ADDRESS``), else a local Ray started
    for this run outside the driver's process group (``trainers.local_ray``), returned so that
    the run stops it. None when joining a cluster or a Ray this process already runs.
    ``while_starting`` runs (once, in any case) while a local head comes up: seconds that
    are mostly the head's own process starting."""
    kwargs = {"namespace": NAMESPACE, "log_to_driver": True}
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized() or address:
        while_starting()
        if not ray.is_initialized():
            ray.init(address=address, **kwargs)
        return None
    if "RAY_AUTH_MODE" not in os.environ:  # Ray read it at import; the head would refuse this driver
        raise ConfigError("set RAY_AUTH_MODE=token (or disabled) before Ray is imported, as the rl-mask command does, so that this driver and the local Ray it starts agree")
    local = LocalRay(wait=False)
    try:
        while_starting()
        local.wait_started()
        ray.init(address=local.address, **kwargs)
    except BaseException:
        local.stop()
        raise
    return local


def train_judge(cfg: Config, data: PrivateData, path: Path) -> Path:
    """The owner's judge of the attacker in the loop (``RUN_DIR/judge.pt``), trained once per
    run on the clean private training faces; a resumed run keeps the one it had."""
    if not path.exists():
        model = train_evaluation_model(data.train_images, data.train_labels, data.num_classes, cfg.rl.judge_steps, seed=cfg.rl.seed + 1234)
        state = {"state_dict": model.state_dict(), "planes": data.train_images.shape[1], "num_classes": data.num_classes, "pool": input_pool(*data.train_images.shape[2:])}
        save_checkpoint(state, path)
    return path


def drain_env_logs(algo) -> list[dict]:
    """Every env's per-step records (settings, leak, reward terms) since the last call."""

    def drain(runner) -> list[dict]:
        env = getattr(runner, "env", None)
        if env is None:
            return []
        return [r for sub in env.unwrapped.envs for r in sub.unwrapped.drain_log()]

    try:
        logs = algo.env_runner_group.foreach_env_runner(drain, local_env_runner=True)
    except Exception as exc:  # a runner being restarted: its records are lost, not the run
        print(f"rl-mask: warning: could not read the env runners' logs this iteration ({exc})", flush=True)
        return []
    return [r for log in logs for r in log]


# ----------------------------------------------------------------------------- main loop


def train(
    cfg: Config,
    out_dir: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
    retry: bool = False,
    debug: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    after_iteration: Callable[[int, float], None] | None = None,
) -> dict:
    """Run (or resume) adaptive training; returns the summary (also ``RUN_DIR/summary.json``).

    ``retry`` (``--auto-resume`` without a checkpoint yet): ``out_dir`` may hold what an attempt of
    this run wrote before it was killed (``ATTEMPT_FILES``); otherwise a fresh run needs a new or
    empty folder. ``debug``: the FR server and the attacker live in this process
    (``LocalRuntime``), else in Ray actors (``RayRuntime``). ``stop_after`` ends the loop after
    that many iterations of this call (tests of resume). ``after_iteration(iteration, seconds)``
    runs after each PPO iteration, while env runners and FR workers wait (the throughput
    benchmark times the plain FR loop there, so both see the same machine speed).
    """
    host = LocalRuntime if debug else RayRuntime
    # Everything that can be wrong with the inputs fails here, before any Ray resource is taken.
    run_dir = Path(out_dir).resolve()
    point = check_run_folder(run_dir, resume, retry)
    host.check(cfg)
    cfg, data = open_run(cfg, run_dir, point, retry)
    rl = cfg.rl
    prior = point.state if point else {"iteration": 0, "env_steps": 0, "wall_seconds": 0.0}
    t0 = time.perf_counter()
    # The data owner's side: the defence, and the messages the FR server gets before training.
    defence = build_defence(cfg, "adaptive", k_choices=rl.k_choices)
    setup = training_setup(cfg, defence, data, total_fr_steps(cfg))
    judge_path = str(run_dir / "judge.pt") if rl.attacker_in_loop else None
    public = data.split.public.float_images()  # the attacker's own faces (no private identity); TensorBoard's examples
    local_ray = init_ray(address, while_starting=lambda: judge_path and train_judge(cfg, data, Path(judge_path)))
    # After ray.init, which installs its own SIGTERM handler: ours stops Ray cleanly.
    stop = GracefulStop().__enter__()
    runtime = None
    algo = None
    writer = None
    try:
        runtime = host.start(cfg, setup, public, run_dir=run_dir, namespace=NAMESPACE)
        send_resume_state(runtime.fr, point)
        algo = build_ppo_config(runtime.wiring(cfg, judge=judge_path, run_dir=run_dir, total_fr_steps=total_fr_steps(cfg))).build_algo()
        if point:  # from a private, checked copy: RLlib never reads the run folder itself
            with verified_copy(point.path / "algo") as safe_copy:
                algo.restore_from_path(str(safe_copy))
        # Drop events a killed run wrote after its last checkpoint (TensorBoard purges >= purge_step),
        # or, on a fresh start, those of an attempt killed before its first checkpoint.
        writer = RunWriter(run_dir / "tb", purge_step=prior["env_steps"] + 1 if point else (1 if (run_dir / "tb").exists() else None))
        loop = RunLoop(cfg, data, public, run_dir, algo, runtime, writer, prior, point, t0)
        end_iter = rl.iterations if stop_after is None else min(rl.iterations, algo.iteration + stop_after)
        loop.run(end_iter, stop, progress, after_iteration)
        finished = algo.iteration >= rl.iterations
        wall = prior["wall_seconds"] + time.perf_counter() - t0
        return finalize(cfg, defence, data, run_dir, algo, runtime.fr, runtime.attacker, judge_path, loop.env_steps, wall, finished, writer, loop.iteration_seconds)
    except KeyboardInterrupt as exc:
        raise stop.interrupted(exc) from None
    finally:
        try:
            if writer is not None:
                writer.close()
            if algo is not None:
                algo.stop()
            if runtime is not None:
                runtime.close()
        finally:
            if local_ray is not None:
                ray.shutdown()
                local_ray.stop()
            stop.__exit__(None, None, None)


def check_run_folder(run_dir: Path, resume: bool, retry: bool) -> ResumePoint | None:
    """The checkpoint a resume starts from; refuses a folder that cannot take this run."""
    point = resume_point(run_dir) if resume else None
    if resume and point is None:
        raise ConfigError(f"--resume {run_dir}: no complete checkpoint under checkpoints/")
    if not resume and holds_run(run_dir):
        raise ConfigError(f"--out {run_dir} already holds a run; pass --resume {run_dir} to continue it, or another --out")
    if not resume:  # before anything is loaded: a used folder or a file fails in one line
        check_out_dir(run_dir, ATTEMPT_FILES if retry else frozenset())
    return point


def open_run(cfg: Config, run_dir: Path, point: ResumePoint | None, retry: bool) -> tuple[Config, PrivateData]:
    """Load the faces, claim the run folder and write the config that runs; returns both."""
    # The data root is resolved here, once: env runners and the FR actor get this absolute
    # path in the config, not whatever their own environment would resolve.
    cfg = copy.deepcopy(cfg)
    cfg.data.root = os.path.abspath(cfg.data.resolved_root())
    data = prepare_data(cfg)  # the faces load and split as configured
    if point:
        os.chmod(run_dir, RUN_DIR_MODE)  # owner-only, also for a run folder written before this rule
    else:
        claim_out_dir(run_dir, ATTEMPT_FILES if retry else frozenset())
    save_config(cfg, run_dir / "config.yaml")
    # A resumed run restarts from its checkpoint: an autosave written after it is out of step.
    autosave_path(run_dir).unlink(missing_ok=True)
    progress_path(run_dir).unlink(missing_ok=True)
    if retry and not point:  # left by an attempt of this run killed before its first checkpoint
        shutil.rmtree(boundary_dir(run_dir), ignore_errors=True)
    return cfg, data


def send_resume_state(fr: FRClient, point: ResumePoint | None) -> None:
    """Every FR worker gets the checkpoint's FR state on resume (any of them may have to hand
    its state on); a fresh run asks each for its status. Either fails fast if an actor cannot start."""
    for target in fr.targets:
        if point:
            FRClient(target).call("set_state", point.fr_state)
        else:
            FRClient(target).call("status")


class RunLoop:
    """PPO iterations with their TensorBoard records and checkpoints (``train``'s loop)."""

    def __init__(self, cfg: Config, data: PrivateData, public, run_dir: Path, algo, runtime: Runtime, writer: RunWriter, prior: dict, point: ResumePoint | None, t0: float):
        rl = cfg.rl
        self.rl, self.run_dir, self.algo, self.runtime, self.writer = rl, run_dir, algo, runtime, writer
        self.prior, self.t0 = prior, t0
        self.space = SettingsSpace.from_config(rl)
        shown = (data.train_images, data.train_labels) if rl.log_private_faces else (public, data.split.public.labels)
        self.examples = masked_examples(cfg, *shown, rl.k_choices, originals=rl.log_original_faces)
        self.examples_name = examples_tag(rl.log_private_faces, rl.log_original_faces)
        self.env_steps = prior["env_steps"]
        self.iteration_seconds: list[float] = []
        self.lost = int(point.fr_state.get("steps_lost_to_restarts", 0)) if point else 0  # reported already

    def run(self, end_iter: int, stop: GracefulStop, progress: bool, after_iteration: Callable[[int, float], None] | None) -> None:
        print(f"TensorBoard: tensorboard --logdir {self.run_dir / 'tb'}", flush=True)
        start_iter = self.algo.iteration
        bar = tqdm(range(start_iter, end_iter), desc="train (PPO iterations)", disable=not progress, dynamic_ncols=True, initial=0)
        for it in bar:
            saved = False
            with stop.deferred():  # a first SIGTERM/SIGINT waits for this iteration and its checkpoint
                t_iter = time.perf_counter()
                # the driver only learns while remote env runners sample (rl.learner_threads)
                with torch_threads(self.rl.learner_threads if self.rl.num_env_runners > 0 else None):
                    result = self.algo.train()
                self.iteration_seconds.append(time.perf_counter() - t_iter)
                if after_iteration is not None:
                    after_iteration(it + 1, self.iteration_seconds[-1])
                self.runtime.heal()
                ours = self.log(it, result, first=it == start_iter)
                if "mask/k_mean" in ours and "fr/loss" in ours:
                    bar.set_postfix(k=f"{ours['mask/k_mean']:.2f}", leak=f"{ours.get('mask/leak', float('nan')):.2f}", loss=f"{ours['fr/loss']:.2f}", acc=f"{ours['fr/val_identification_acc']:.2f}")
                if (it + 1) % self.rl.checkpoint_every == 0 or it + 1 == end_iter or stop.requested is not None:
                    self.save(it + 1)
                    saved = True
            if stop.requested is not None:
                if not saved:  # the signal came after the checkpoint decision
                    self.save(it + 1)
                print(f"rl-mask: stopped after iteration {it + 1}; checkpoint {(self.run_dir / 'checkpoints' / 'latest').read_text()} written, continue with --resume {self.run_dir}", flush=True)
                stop.stop_if_requested()

    def log(self, it: int, result: dict, first: bool) -> dict:
        """One iteration's TensorBoard records (PPO's, the FR server's, the owner's); returns ours."""
        rl, writer = self.rl, self.writer
        runners = result.get("env_runners") or {}
        if "num_env_steps_sampled_lifetime" not in runners:  # no sample within rl.sample_timeout_s
            print(f"rl-mask: warning: iteration {it + 1} returned no env-runner results (sampling took over rl.sample_timeout_s={rl.sample_timeout_s:g} s?)", flush=True)
        self.env_steps = env_steps = int(runners.get("num_env_steps_sampled_lifetime", self.env_steps))
        fr = self.runtime.fr
        owner_records = drain_env_logs(self.algo)
        writer.scalars(ppo_scalars(result), env_steps)
        ours = {**fr_scalars(fr.call("drain_log")), **owner_scalars(owner_records, self.space)}
        writer.scalars(ours, env_steps)
        writer.k_histogram([r["k"] for r in owner_records], env_steps)
        now_lost = int(fr.call("info").get("steps_lost_to_restarts", 0))
        writer.scalars({"fr/steps_lost_to_restarts": float(now_lost)}, env_steps)
        if now_lost > self.lost:
            print(f"rl-mask: warning: the FR actor restarted and lost {now_lost - self.lost} FR step(s) ({now_lost} in this run)", flush=True)
        self.lost = now_lost
        if (it + 1) % rl.image_every == 0 or first:
            writer.images(self.examples_name, self.examples, env_steps)
        return ours

    def save(self, iteration: int) -> None:
        state = {"iteration": iteration, "env_steps": self.env_steps, "wall_seconds": self.prior["wall_seconds"] + time.perf_counter() - self.t0}
        state["fr_steps"] = int(self.runtime.fr.call("status")["fr_step"])
        write_checkpoint(self.run_dir, self.algo, self.runtime.fr, state)


def finalize(cfg: Config, defence, data: PrivateData, run_dir: Path, algo, fr: FRClient, attacker: FRClient | None, judge_path: str | None, env_steps: int, wall: float, finished: bool, writer: RunWriter, iteration_seconds: list[float]) -> dict:
    rl = cfg.rl
    trained = fr.call("trained_model")
    metrics = score_trained(trained, final_test_set(defence, data))  # the test split: used only here, on the owner's side
    info = fr.call("info")
    module = algo.get_module()
    runner_nodes = algo.env_runner_group.foreach_env_runner(lambda runner: ray.get_runtime_context().get_node_id(), local_env_runner=False)
    in_loop = attacker is not None
    scores = score_policy(cfg, fr, module, rl.policy_eval_steps, seed=rl.seed + 12345, attacker=attacker.target if in_loop else None, judge=judge_path)
    save_checkpoint(trained.file_content(), run_dir / "fr.pt")
    save_checkpoint(
        {"state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()}, "choices": SettingsSpace.from_config(rl).choices, "k_choices": list(rl.k_choices), "hidden": list(rl.hidden)},
        run_dir / "policy.pt",
    )
    writer.scalars({"final/identification_acc": metrics["identification_acc"], "final/verification_acc": metrics["verification_acc"]}, env_steps)
    summary = {
        "finished": finished,
        "identification_acc": metrics["identification_acc"],
        "identification_top5": metrics["identification_top5"],
        "verification_acc": metrics["verification_acc"],
        "accuracy_floor": rl.accuracy_floor,
        "floor_held": metrics["identification_acc"] >= rl.accuracy_floor,
        "reward": rl.reward,
        "k_choices": list(rl.k_choices),
        "action_distribution": scores["action_distribution"],
        "k_distribution": scores["k_distribution"],
        "k_entropy": scores["k_entropy"],
        "k_entropy_uniform": scores["k_entropy_uniform"],
        "policy_vs_uniform": {k: scores[k] for k in ("policy", "uniform", "reward_gain_over_uniform")},
        "attacker": attacker.call("info") if in_loop else None,
        "iterations": algo.iteration,
        "env_steps": env_steps,
        "fr_steps": info["fr_step"],
        "fr_device": info["device"],
        "fr_images_trained": info["images_trained"],
        "fr_images_per_s": info["images_trained"] / max(info["train_seconds"], 1e-9),
        "wall_seconds": round(wall, 2),
        "env_steps_per_s": env_steps / max(wall, 1e-9),
        "num_env_runners": rl.num_env_runners,
        "max_inflight": rl.max_inflight,
        "fr_workers": rl.fr_workers,
        "env_runner_nodes": sorted(set(runner_nodes)),
        "fr_host": "driver process (debug)" if info["pid"] == os.getpid() else "ray actor",
        "fr_actor_node": info["node_id"],
        "fr_actor_restarted": info["restarted"],
        "fr_restored_from": info["restored_from"],
        "fr_restored_step": info["restored_step"],
        "fr_steps_lost_to_restarts": info.get("steps_lost_to_restarts", 0),
        "iteration_seconds": [round(t, 3) for t in iteration_seconds],
        "fr_images_per_iteration": rl.train_batch_size * cfg.fr.batch_size,
        "tensorboard": str(run_dir / "tb"),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary

"""FR images/s through the adaptive pipeline vs a plain FR training loop, same data, same machine.

The plain loop does the same FR work in one process: draw a batch, augment, mask and mix with
a random k, one FR step. The pipeline is ``rl-mask train`` (PPO sampling, Ray calls to the FR
workers, PPO updates): FR images per PPO iteration / the iteration's time. The machine's speed
drifts by 20% and more within minutes (a shared VM), so a chunk of the plain loop (as many FR
steps as an iteration) runs right after every PPO iteration, while the env runners and FR
workers wait, and each iteration is compared with the plain chunks on either side of it. The
first iteration is warm-up; with the attacker in the loop, its backlog is worked off before
each plain chunk (``drain_attacker``). ``attacker=False`` (the default here) runs the FR path alone
(``rl.reward=paper``, no attacker in the loop); ``True`` adds the attacker and its judge
(``rl.reward=leak``), which the plain loop does not do.

    python benchmarks/pipeline.py [--runners 0,1,2] [--out benchmarks/results/pipeline.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported, as the rl-mask command does

from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import TrainingStream, prepare_data
from rl_mask.server.service import FRService
from rl_mask.server.trainer import resolve_device
from trainers.train import train


class PlainLoop:
    """The FR work of the pipeline without the pipeline: the one batch path (draw, augment,
    mask and mix, ``TrainingStream``), one FR step (``FRService``) on as many batches as
    ``fr.rows_per_step`` takes (one without it): the same rows per step as the pipeline."""

    def __init__(self, cfg: Config, warmup: int = 10):
        self.batch_size = cfg.fr.batch_size
        self.per_step = max(1, cfg.fr.rows_per_step // cfg.fr.batch_size)
        data = prepare_data(cfg)
        defence = build_defence(cfg, "random-k")
        self.stream = TrainingStream(cfg, defence, data, seed=0)
        self.service = FRService(training_setup(cfg, defence, data, total_steps=100_000), resolve_device(cfg.fr.device))
        self.run(warmup)

    def run(self, batches: int) -> float:
        """FR images/s over ``batches`` batches (in steps of ``per_step`` batches)."""
        started = time.perf_counter()
        for _ in range(max(1, batches // self.per_step)):
            self.service.train_messages([self.stream.next().masked.protected() for _ in range(self.per_step)])
        return max(1, batches // self.per_step) * self.per_step * self.batch_size / (time.perf_counter() - started)


def drain_attacker() -> float:
    """Wait until the attacker in the loop has done what it was given, so that the plain chunk
    after an iteration runs on idle cores (the attacker takes its calls one at a time, in order:
    its ``status`` answers after the last queued attack). Before this, the attacker worked off
    its backlog while the plain chunk ran, which slowed the chunk by a quarter and flattered the
    pipeline's fraction. Returns the seconds waited (not counted in either rate)."""
    import ray

    names = [(a["name"], a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("attacker-")]
    started = time.perf_counter()
    ray.get([ray.get_actor(name, namespace=ns).status.remote() for name, ns in names])
    return time.perf_counter() - started


def pipeline(cfg: Config, runners: int, iterations: int, plain: PlainLoop, fr_workers: int = 1, max_inflight: int | None = None, attacker: bool = False) -> dict:
    cfg.rl.num_env_runners = runners
    cfg.rl.iterations = iterations
    cfg.rl.checkpoint_every = iterations
    cfg.rl.fr_workers = fr_workers
    cfg.rl.attacker_in_loop = attacker
    cfg.rl.reward = "leak" if attacker else "paper"
    cfg.rl.max_inflight = max_inflight if max_inflight is not None else (1 if runners == 0 else cfg.rl.max_inflight)
    cfg.validate()
    plain_rates: list[float] = []
    drained: list[float] = []

    def plain_chunk(iteration: int, seconds: float) -> None:
        if attacker and runners:
            drained.append(drain_attacker())
        plain_rates.append(plain.run(cfg.rl.train_batch_size))

    with tempfile.TemporaryDirectory() as tmp:
        s = train(cfg, Path(tmp) / "run", progress=False, debug=runners == 0, after_iteration=plain_chunk)
    rates = [s["fr_images_per_iteration"] / t for t in s["iteration_seconds"]]
    # iteration i (from 1: 0 is warm-up) against the plain chunks just before and after it
    fractions = [rates[i] / statistics.mean(plain_rates[i - 1 : i + 1]) for i in range(1, len(rates))]
    return {
        "num_env_runners": runners,
        "fr_workers": fr_workers,
        "max_inflight": cfg.rl.max_inflight,
        "attacker_in_loop": attacker,
        "attacker_mode": cfg.rl.attacker_mode if attacker else None,
        "attacker_sample_rate": cfg.rl.attacker_sample_rate if attacker and cfg.rl.attacker_mode == "sampled" else None,
        "rows_per_step": cfg.fr.rows_per_step,
        "iterations": iterations,
        "iteration_seconds": s["iteration_seconds"],
        "fr_images_per_iteration": s["fr_images_per_iteration"],
        "images_per_s": statistics.median(rates[1:] or rates),
        "plain_images_per_s": [round(r, 1) for r in plain_rates],
        "fraction_per_iteration": [round(f, 3) for f in fractions],
        "fraction_of_plain": statistics.median(fractions) if fractions else None,
        "fr_workers_busy_images_per_s": s["fr_images_per_s"],
        # a sampled attacker skips batches while it is busy: how many it attacked (training and
        # the policy's final scoring) against the env steps of training
        "batches_attacked": (s["attacker"] or {}).get("batches_attacked"),
        "attacker_drain_seconds": [round(d, 2) for d in drained] or None,
        "env_steps": s["env_steps"],
        "wall_seconds_incl_startup": s["wall_seconds"],
    }


def feed_back_to_back(actor, messages: list, rows: int, per_step: int, seconds: float, one_call_per_step: bool = False) -> float:
    """FR images/s of an FR actor fed ``messages`` of ``rows`` rows (cycled) for ``seconds``, ``per_step`` of them
    a step and two steps' worth queued at all times: one ``train_step`` call per message (the
    run's path, through the step queue), or with ``one_call_per_step`` one ``train_messages``
    call per step (then ``messages`` must be the batches themselves: Ray does not resolve
    references inside a list)."""
    import ray

    sent, pending, started = 0, [], time.perf_counter()
    while time.perf_counter() - started < seconds:
        step = [messages[(sent + i) % len(messages)] for i in range(per_step)]
        pending.append([actor.train_messages.remote(step)] if one_call_per_step else [actor.train_step.remote(m) for m in step])
        sent += per_step
        if len(pending) >= 2:
            ray.get(pending.pop(0))
    for calls in pending:
        ray.get(calls)
    return sent * rows / (time.perf_counter() - started)


def actor_alone(cfg: Config, plain: PlainLoop, rounds: int = 3, seconds: float = 8.0) -> dict:
    """The pipeline's ceiling: the FR actor of a run (``create_fr_actor``: its process, its
    threads and their waits, the step queue) with nothing else running, fed protected batches
    back to back by the driver (two steps' worth queued at all times), each round against a
    plain chunk. What the Ray actor costs before any env runner, attacker or PPO work."""
    import ray

    from trainers.fr_actor import create_fr_actor
    from trainers.train import NAMESPACE, init_ray

    cfg.rl.num_env_runners = max(1, cfg.rl.num_env_runners)
    cfg.validate()
    per_step = plain.per_step
    messages = [plain.stream.next().masked.protected() for _ in range(8 * per_step)]
    local = init_ray(None)
    rates, plain_rates = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            setup = training_setup(cfg, plain.stream.defence, plain.stream.data, total_steps=100_000)
            actor = create_fr_actor(cfg, setup, tmp, "fr-alone", NAMESPACE)
            refs = [ray.put(m) for m in messages]

            feed_back_to_back(actor, refs, plain.batch_size, per_step, seconds / 2)  # warm-up: the actor's first steps (allocations, thread pools) run slow
            for _ in range(rounds):
                plain_rates.append(plain.run(cfg.rl.train_batch_size))
                rates.append(feed_back_to_back(actor, refs, plain.batch_size, per_step, seconds))
            plain_rates.append(plain.run(cfg.rl.train_batch_size))
            info = ray.get(actor.info.remote())
    finally:
        ray.shutdown()
        if local is not None:
            local.stop()
    fractions = [r / statistics.mean(plain_rates[i : i + 2]) for i, r in enumerate(rates)]
    return {
        "images_per_s": statistics.median(rates),
        "images_per_s_per_round": [round(r, 1) for r in rates],
        "plain_images_per_s": [round(r, 1) for r in plain_rates],
        "fraction_per_round": [round(f, 3) for f in fractions],
        "fraction_of_plain": statistics.median(fractions),
        "busy_images_per_s": info["images_trained"] / max(1e-9, info["train_seconds"]),
        "threads": info["threads"],
        "wait_policy": cfg.rl.fr_wait_policy or "libgomp default",
    }


def write_result(out: dict, path: str | Path) -> None:
    """A benchmark's JSON to ``path`` (its folder made), and the same on stdout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=2, default=float)
    path.write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--runners", default="0,1,2", help="env runner counts to run (0 = debug mode)")
    args = parser.parse_args()
    cfg = Config().validate()
    plain = PlainLoop(cfg)
    results = []
    for runners in [int(r) for r in args.runners.split(",")]:
        r = pipeline(Config(), runners, args.iterations, plain)
        results.append(r)
        print(json.dumps({k: r[k] for k in ("num_env_runners", "images_per_s", "fraction_per_iteration", "fraction_of_plain")}), flush=True)
    out = {
        "benchmark": "pipeline",
        "machine": platform.processor() or platform.machine(),
        "cpus": torch.get_num_threads(),
        "fr_batch_size": cfg.fr.batch_size,
        "pipeline": results,
        "target_fraction_cpu": 0.85,
    }
    write_result(out, args.out)


if __name__ == "__main__":
    main()

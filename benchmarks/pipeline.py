"""FR images/s through the adaptive pipeline vs a plain FR training loop, same data, same machine.

The plain loop does the same work in one process: draw a batch, augment, mask and mix with a
random k, one FR step. The pipeline is ``rl-mask train`` (PPO sampling, Ray calls to the FR
actor, PPO updates): steady-state throughput = FR images per PPO iteration / median
iteration time (the first iteration is warm-up). Runs debug mode (0 env runners: env, learner
and FR network in one process), then 1 and 2 env runners (FR network in its Ray actor). Target: >= 0.85 of the plain loop on CPU in debug mode.
Plain-loop runs are interleaved with the pipelines (see ``main``).

    python benchmarks/pipeline.py [--out benchmarks/results/pipeline.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rl_mask.config import Config
from rl_mask.owner.data import BatchSampler, augment
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import prepare_data
from rl_mask.server.trainer import resolve_device, trainer_for
from trainers.train import train


def plain_loop(cfg: Config, steps: int) -> dict:
    data = prepare_data(cfg)
    defence = build_defence(cfg, "random-k")
    trainer = trainer_for(training_setup(cfg, defence, data, total_steps=steps), resolve_device(cfg.fr.device))
    sampler = BatchSampler(len(data.train_labels), cfg.fr.batch_size, seed=0)
    g = torch.Generator().manual_seed(0)

    def step():
        idx = sampler.next()
        batch = defence.encode_train(augment(data.train_images[idx], g), data.train_labels[idx], g)
        trainer.train_step(batch.protected())

    for _ in range(10):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t
    return {"steps": steps, "seconds": seconds, "images_per_s": steps * cfg.fr.batch_size / seconds}


def pipeline(cfg: Config, runners: int, iterations: int, fr_workers: int = 1, max_inflight: int | None = None) -> dict:
    cfg.rl.num_env_runners = runners
    cfg.rl.iterations = iterations
    cfg.rl.checkpoint_every = iterations
    cfg.rl.fr_workers = fr_workers
    cfg.rl.max_inflight = max_inflight if max_inflight is not None else (1 if runners == 0 else cfg.rl.max_inflight)
    with tempfile.TemporaryDirectory() as tmp:
        s = train(cfg, Path(tmp) / "run", progress=False, debug=runners == 0)
    steady = s["iteration_seconds"][1:] or s["iteration_seconds"]
    per_iter = statistics.median(steady)
    return {
        "num_env_runners": runners,
        "fr_workers": fr_workers,
        "max_inflight": cfg.rl.max_inflight,
        "iterations": iterations,
        "iteration_seconds": s["iteration_seconds"],
        "fr_images_per_iteration": s["fr_images_per_iteration"],
        "images_per_s": s["fr_images_per_iteration"] / per_iter,
        "fr_actor_busy_images_per_s": s["fr_images_per_s"],
        "wall_seconds_incl_startup": s["wall_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--runners", default="0,1,2", help="env runner counts to run (0 = debug mode)")
    args = parser.parse_args()
    cfg = Config().validate()
    steps_per_iter = cfg.rl.train_batch_size
    # The machine's speed drifts over minutes (shared VM): plain-loop runs are interleaved with
    # the pipelines, and each pipeline is compared with the mean of the plain runs on either side.
    plains = [plain_loop(cfg, steps_per_iter * 2)]
    results = []
    for runners in [int(r) for r in args.runners.split(",")]:
        r = pipeline(Config().validate(), runners, args.iterations)
        plains.append(plain_loop(cfg, steps_per_iter * 2))
        around = [plains[-2]["images_per_s"], plains[-1]["images_per_s"]]
        r["plain_images_per_s_around"] = around
        r["fraction_of_plain"] = r["images_per_s"] / statistics.mean(around)
        results.append(r)
        print(json.dumps({k: r[k] for k in ("num_env_runners", "images_per_s", "plain_images_per_s_around", "fraction_of_plain")}), flush=True)
    out = {
        "benchmark": "pipeline",
        "machine": platform.processor() or platform.machine(),
        "cpus": torch.get_num_threads(),
        "fr_batch_size": cfg.fr.batch_size,
        "plain_loop_runs": plains,
        "pipeline": results,
        "target_fraction_debug": 0.85,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Which thread runs the FR actor's steps: the queue's own stepper vs whichever pool thread took the call.

Why ``rl_mask.server.step_queue`` runs every step on one thread of its own. torch's CPU kernels
run in an OpenMP team per calling thread; an FR actor that takes concurrent calls (the step
queue aggregates the batches every env runner has in flight) runs each call on one of Ray's
pool threads. Three FR actors of a run's kind (``FRActor``, the run's wait policy and threads)
are fed the same protected AT&T batches back to back by the driver, two steps' worth queued,
and compared with the plain in-process loop (``pipeline.PlainLoop``) in alternating rounds:

- ``main_thread``: one call per step (``train_messages`` on both messages), ``max_concurrency=1``:
  every step on the actor's main thread (no aggregation across callers possible);
- ``pool_threads``: the same calls to an actor with the run's concurrency: every step on
  whichever pool thread took it (what the step queue did before its stepper);
- ``stepper``: the run's path, one ``train_step`` per message through the step queue.

    python benchmarks/step_thread.py [--rounds 4] [--seconds 8] [--out benchmarks/results/step_thread.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("RAY_AUTH_MODE", "token")  # before Ray is imported, as the rl-mask command does

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import PlainLoop, feed_back_to_back, write_result  # noqa: E402

from rl_mask.config import Config  # noqa: E402
from rl_mask.cpu_threads import runtime_env  # noqa: E402
from rl_mask.owner.messages import training_setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/step_thread.json")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0, help="feeding time per actor per round")
    parser.add_argument("--rows-per-step", type=int, default=128)
    args = parser.parse_args()

    import ray

    from trainers.fr_actor import FRActor, fr_concurrency
    from trainers.train import init_ray

    cfg = Config()
    cfg.fr.rows_per_step = args.rows_per_step
    cfg.rl.num_env_runners, cfg.rl.fr_num_gpus = 1, 0.0
    cfg.validate()
    plain = PlainLoop(cfg)
    per_step = plain.per_step
    messages = [plain.stream.next().masked.protected() for _ in range(8 * per_step)]
    setup = training_setup(cfg, plain.stream.defence, plain.stream.data, total_steps=100_000).to_dict()
    local = init_ray(None)
    rates: dict[str, list[float]] = {"plain": [], "main_thread": [], "pool_threads": [], "stepper": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:

            def actor(concurrency: int):
                return FRActor.options(max_concurrency=concurrency, **runtime_env(cfg.rl.fr_wait_policy)).remote(setup, tmp, 0, cfg.rl.fr_threads)

            actors = {"main_thread": actor(1), "pool_threads": actor(fr_concurrency(cfg)), "stepper": actor(fr_concurrency(cfg))}

            def feed(name: str, seconds: float) -> float:
                # by value, as env runners send them; the stepper through the step queue
                return feed_back_to_back(actors[name], messages, plain.batch_size, per_step, seconds, one_call_per_step=name != "stepper")

            for name in actors:  # warm-up: an actor's first steps run slow
                feed(name, args.seconds / 2)
            for r in range(args.rounds):
                rates["plain"].append(plain.run(cfg.rl.train_batch_size))
                for name in actors:
                    rates[name].append(feed(name, args.seconds))
                print(json.dumps({"round": r, **{k: round(v[-1], 1) for k, v in rates.items()}}), flush=True)
            threads = ray.get(actors["stepper"].info.remote())["threads"]
    finally:
        ray.shutdown()
        if local is not None:
            local.stop()
    plain_median = statistics.median(rates["plain"])
    out = {
        "benchmark": "step_thread",
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "fr_threads": threads,
        "fr_wait_policy": cfg.rl.fr_wait_policy or "libgomp default",
        "rows_per_step": args.rows_per_step,
        "images_per_s": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "median_images_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "median_fraction_of_plain": {k: round(statistics.median(v) / plain_median, 3) for k, v in rates.items() if k != "plain"},
    }
    write_result(out, args.out)


if __name__ == "__main__":
    main()

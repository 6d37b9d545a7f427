"""How much a sampled attacker in the loop loses by learning only from the batches it attacks.

With ``rl.attacker_mode=sampled`` the owner has only a sample of the batches attacked and
judged. The attacker stands where the server stands and sees every batch cross, so it learns
(one decoder step per ``rl.attacker_train_steps``) from the settings of each of them
(``OnlineAttacker.observe(..., crossed_since)``). Before, it learned only from the batches it
was given. Here two attackers with the same warm-up follow the same sampled run: the same
batches, the same settings (uniform random over the whole space), the same sampled batches.
One learns from every batch that crossed, the other only from the sampled ones. Then both
are frozen, and each is judged exactly on the same held-out batches (another seed): the mean
leak per batch, with a 95% t-interval over the batches, and their paired difference. Repeated
over ``--seeds``. Writes JSON.

    python benchmarks/sampled_learning.py [--steps 400] [--eval-steps 96] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampled_leak import loop_config, loop_parts, run  # noqa: E402

from rl_mask.attacks.online import OnlineAttacker  # noqa: E402
from rl_mask.bench.stats import t_interval  # noqa: E402
from rl_mask.owner.messages import attacker_setup  # noqa: E402


class LearnsOnlyWhenAttacked(OnlineAttacker):
    """The sampled attacker as it was before: the settings of the batches it was not given are dropped."""

    def observe(self, batch, settings, crossed_since=()):
        return super().observe(batch, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=400, help="env steps of the sampled run the attackers learn from")
    parser.add_argument("--eval-steps", type=int, default=96, help="held-out batches each frozen attacker is judged on")
    parser.add_argument("--sample-rate", type=float, default=0.25)
    parser.add_argument("--warmup", type=int, default=50, help="decoder steps before the run (debug mode's)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--out", default="benchmarks/results/sampled_learning.json")
    args = parser.parse_args()
    cfg = loop_config(args)
    cfg.rl.attacker_mode, cfg.rl.attacker_sample_rate, cfg.rl.leak_reward = "sampled", args.sample_rate, "estimate"
    cfg.validate()
    exact_cfg = copy.deepcopy(cfg)
    exact_cfg.rl.attacker_mode, exact_cfg.rl.leak_reward = "exact", "batch"
    data, service, judge = loop_parts(cfg)
    public = data.split.public.float_images()
    per_seed = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        started = time.perf_counter()
        setup = dataclasses.replace(attacker_setup(cfg), seed=1000 + seed)
        leaks = {}
        for name, kind in (("learns_from_every_batch", OnlineAttacker), ("learns_only_when_attacked", LearnsOnlyWhenAttacked)):
            attacker = kind.from_setup(setup, public)
            infos, _ = run(cfg, service, attacker, judge, args.steps, seed)
            attacked = int(sum(i.get("leak_attacked", 0.0) for i in infos))
            steps = attacker.info()["decoder_steps"]
            attacker.set_train_steps(0)
            held, _ = run(exact_cfg, service, attacker, judge, args.eval_steps, 10_000 + seed)
            leaks[name] = (np.array([i["leak"] for i in held]), steps, attacked)
        every, only = leaks["learns_from_every_batch"][0], leaks["learns_only_when_attacked"][0]
        row = {"seed": seed, "batches_attacked": leaks["learns_from_every_batch"][2], "seconds": round(time.perf_counter() - started, 1)}
        for name, (leak, steps, _) in leaks.items():
            row[name] = {"decoder_steps": steps, "held_out_leak": float(leak.mean()), "interval": t_interval(leak)}
        row["difference_every_minus_only"] = {"mean": float((every - only).mean()), "interval": t_interval(every - only)}
        per_seed.append(row)
        print(json.dumps(row), flush=True)
    diffs = np.array([r["difference_every_minus_only"]["mean"] for r in per_seed])
    out = {
        "benchmark": "sampled_learning",
        "machine": platform.processor() or platform.machine(),
        "steps": args.steps,
        "eval_steps": args.eval_steps,
        "sample_rate": args.sample_rate,
        "warmup": args.warmup,
        "attacker_rows": cfg.rl.attacker_rows,
        "overrides": args.set,
        "per_seed": per_seed,
        "mean_difference_over_seeds": float(diffs.mean()),
        "interval_over_seeds": t_interval(diffs) if len(diffs) > 1 else None,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

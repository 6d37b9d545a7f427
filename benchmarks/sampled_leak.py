"""The sampled attacker's leak reward against the exact per-batch leak, on a fixed policy.

``rl.attacker_mode=sampled`` reads every batch's leak from a per-setting estimate of the
batches the attacker sampled (``rl_mask.owner.judge.leak_estimate``) instead of attacking and
judging every batch. Here both modes run the same fixed policy (uniform random over the whole
settings space, the same seed, so the same actions and the same batches) against one attacker
trained beforehand and then frozen (both see the same attacker), on a frozen FR state, and
the sampled leak of each batch is compared with the exact judged leak of that very batch:
bias (mean of sampled - exact), noise (their standard deviation), mean absolute error, and,
for scale, the exact leak's own spread across batches. Writes JSON.

    python benchmarks/sampled_leak.py [--steps 256] [--sample-rate 0.25] [--out benchmarks/results/sampled_leak.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from envs.fr_client import Endpoint
from envs.hybrid_masking import HybridMaskingEnv
from envs.wiring import EnvWiring
from rl_mask.attacks.online import OnlineAttacker
from rl_mask.config import Config, load_config
from rl_mask.mask.settings import mean_by_knob
from rl_mask.owner.defences import build_defence
from rl_mask.owner.judge.evaluator import EvaluationModel, train_evaluation_model
from rl_mask.owner.messages import attacker_setup, training_setup
from rl_mask.owner.stream import PrivateData, prepare_data
from rl_mask.server.service import FRService


def run(cfg: Config, service: FRService, attacker: OnlineAttacker, judge, steps: int, seed: int) -> tuple[list[dict], float]:
    env = HybridMaskingEnv(EnvWiring(cfg, Endpoint(service=service), Endpoint(service=attacker), judge=judge, train_fr=False, total_fr_steps=100).env_config())
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    started = time.perf_counter()
    infos = [env.step(np.array([rng.integers(n) for n in env.nvec]))[4] for _ in range(steps)]
    return infos, time.perf_counter() - started


def loop_config(args: argparse.Namespace) -> Config:
    """The config of the env loop: ``--set`` overrides, the FR network on CPU, ``--warmup``."""
    torch.set_num_threads(args.threads)
    cfg = load_config(None, args.set)
    cfg.fr.device = "cpu"
    cfg.rl.attacker_warmup_steps = args.warmup
    return cfg


def loop_parts(cfg: Config) -> tuple[PrivateData, FRService, EvaluationModel]:
    """The faces, a frozen FR service (``train_fr=False`` envs only score on it) and the owner's judge."""
    data = prepare_data(cfg)
    defence = build_defence(cfg, "adaptive", k_choices=cfg.rl.k_choices)
    service = FRService(training_setup(cfg, defence, data, total_steps=100), "cpu")
    judge = train_evaluation_model(data.train_images, data.train_labels, data.num_classes, cfg.rl.judge_steps, seed=cfg.rl.seed + 1234)
    return data, service, judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--sample-rate", type=float, default=0.25)
    parser.add_argument("--warmup", type=int, default=300, help="attacker decoder steps before it is frozen")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override, e.g. rl.attacker_widths=[64,128,192]")
    parser.add_argument("--out", default="benchmarks/results/sampled_leak.json")
    args = parser.parse_args()
    cfg = loop_config(args)
    cfg.rl.attacker_train_steps = 0  # frozen: both modes face the same attacker
    cfg.rl.leak_reward = "batch"  # exact: each batch's own judged leak
    cfg.validate()
    data, service, judge = loop_parts(cfg)
    attacker = OnlineAttacker.from_setup(attacker_setup(cfg), data.split.public.float_images())
    sampled_cfg = copy.deepcopy(cfg)
    sampled_cfg.rl.attacker_mode, sampled_cfg.rl.attacker_sample_rate, sampled_cfg.rl.leak_reward = "sampled", args.sample_rate, "estimate"
    exact, exact_s = run(cfg, service, attacker, judge, args.steps, args.seed)
    sampled, sampled_s = run(sampled_cfg, service, attacker, judge, args.steps, args.seed)
    assert [i["k"] for i in exact] == [i["k"] for i in sampled]  # the same actions
    e = np.array([i["leak"] for i in exact])
    s = np.array([i["leak"] for i in sampled])
    err = s - e
    half = args.steps // 2  # the estimate's second half: after it has seen more of the space
    out = {
        "benchmark": "sampled_leak",
        "machine": platform.processor() or platform.machine(),
        "policy": "uniform random over the settings space (fixed), same seed in both modes",
        "distinct_settings_used": len(set(tuple(sorted((k, v) for k, v in i.items() if k in ("k", "flip", "extra_removed", "alpha", "labels"))) for i in exact)),
        "steps": args.steps,
        "sample_rate": args.sample_rate,
        "attacked_batches": int(sum(i["leak_attacked"] for i in sampled)),
        "attacker_rows": cfg.rl.attacker_rows,
        "attacker_warmup_steps": args.warmup,
        "overrides": args.set,
        "exact_leak_mean": float(e.mean()),
        "exact_leak_std_across_batches": float(e.std()),
        "sampled_leak_mean": float(s.mean()),
        "bias": float(err.mean()),
        "noise_std": float(err.std()),
        "mean_abs_error": float(np.abs(err).mean()),
        "bias_second_half": float(err[half:].mean()),
        "mean_abs_error_second_half": float(np.abs(err[half:]).mean()),
        "correlation": float(np.corrcoef(e, s)[0, 1]) if e.std() > 0 and s.std() > 0 else None,
        # what the attacker in the loop rewards, per knob value (the policy learns these)
        "exact_leak_by_knob": mean_by_knob(exact, "leak"),
        "env_seconds_exact": exact_s,
        "env_seconds_sampled": sampled_s,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Which k = 1 view a network trained under given channel removals identifies: the door's
encoding against the training rows'.

For each case (a set of ``rl.extra_removed_choices``), a fresh FR network is trained through
the adaptive env (local FR service, no Ray, no attacker: the paper's reward, actions drawn
uniformly over the case's settings) for ``--steps`` FR steps, then scored on the owner's
held-out faces (validation and test) as k = 1 views with 0, 4 and 9 more channels removed (the
key and the k = 1 flips as the config's defence makes them). A network trained on one removal
identifies best the view with that removal, so a door that sends the channels training
removed (``mask.eval_extra_removed=0``, the rule before 2026-12-01) measures a setting on a
view it never trained on. Prints a table, writes JSON.

    python benchmarks/door_views.py --config configs/yale.yaml --set "rl.k_choices=[2,3]" --set "rl.flip_choices=[0.0]" \\
        --set "rl.alpha_choices=[0.5]" --set "rl.label_choices=[soft]" --out benchmarks/results/door_views_yale.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from envs.fr_client import Endpoint
from envs.hybrid_masking import HybridMaskingEnv
from envs.wiring import EnvWiring
from rl_mask.config import load_config
from rl_mask.owner.defences import build_defence, hybrid_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import prepare_data
from rl_mask.server.service import FRService
from rl_mask.use.held_out import HeldOutSet, score_trained

VIEWS = (0, 4, 9)


def train_case(cfg, data, extra: list[int], steps: int, seed: int) -> FRService:
    cfg = copy.deepcopy(cfg)
    cfg.rl.extra_removed_choices = extra
    cfg.rl.reward, cfg.rl.attacker_in_loop = "paper", False
    cfg.validate()
    defence = build_defence(cfg, "adaptive", k_choices=cfg.rl.k_choices)
    service = FRService(training_setup(cfg, defence, data, total_steps=steps), device="cpu")
    env = HybridMaskingEnv(EnvWiring(cfg, Endpoint(service=service), total_fr_steps=steps).env_config(worker_index=0))
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in tqdm(range(steps), desc=f"extra removed {extra}", leave=False):
        _, _, _, truncated, _ = env.step(env.action_space.sample())
        if truncated:
            env.reset()
    return service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], help="config override, as for rl-mask")
    parser.add_argument("--cases", default="0;4;9;0,4,9", help="';'-separated rl.extra_removed_choices to train under")
    parser.add_argument("--steps", type=int, default=576, help="FR steps per case (576: rl-mask train --debug's)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/door_views.json")
    args = parser.parse_args()
    cfg = load_config(args.config, args.set)
    torch.manual_seed(args.seed)
    data = prepare_data(cfg)
    faces = torch.cat([data.val_images, data.test_images])
    labels = torch.cat([data.val_labels, data.test_labels])
    rows = []
    for case in args.cases.split(";"):
        extra = [int(e) for e in case.split(",")]
        t0 = time.perf_counter()
        trained = train_case(cfg, data, extra, args.steps, args.seed).trained_model()
        scores = {}
        for view in VIEWS:  # the owner's k = 1 encoding with ``view`` more channels removed
            door = hybrid_defence(cfg, "adaptive", cfg.rl.k_choices)
            door.eval_extra_removed = view
            scores[str(view)] = float(score_trained(trained, HeldOutSet("held-out", door.encode_eval(faces), labels))["identification_acc"])
        rows.append({"trained_extra_removed": extra, "identification_by_view": scores, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"trained on extra removed {extra}: " + ", ".join(f"view {v}: {100 * a:.1f}%" for v, a in scores.items()), flush=True)
    knobs = {name: getattr(cfg.rl, name) for name in ("k_choices", "flip_choices", "alpha_choices", "label_choices")}
    out = {"benchmark": "door_views", "data_root": cfg.data.resolved_root(), "held_out_faces": len(labels), "steps": args.steps, "seed": args.seed, "other_knobs": knobs, "eval_flip": hybrid_defence(cfg, "adaptive", cfg.rl.k_choices).eval_flip, "cases": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

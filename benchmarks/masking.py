"""Time HybridMask (k=4, batch 256) against one FR training step on the same batch.

Medians of repeats, written as JSON. Target: masking <= 5% of the FR step on CPU.

    python benchmarks/masking.py [--out benchmarks/results/masking.json] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from rl_mask.config import Config
from rl_mask.owner.data import load_split
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import prepare_data
from rl_mask.server.trainer import trainer_for


def interleaved_seconds(fns: list, repeats: int, warmup: int = 3) -> list[list[float]]:
    """Times of each function, run in turn every repeat, so both see the same machine state."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/masking.json")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()

    cfg = Config()
    cfg.fr.batch_size = args.batch
    cfg.strategy.name, cfg.strategy.k = "fixed-k", args.k
    cfg.validate()
    data = prepare_data(cfg)
    # 256 faces: the 140 private training faces and public ones (timing only, no training on them)
    faces = torch.cat([data.train_images, load_split(cfg.data).public.float_images()])[: args.batch]
    labels = torch.arange(args.batch) % data.num_classes
    defence = build_defence(cfg)
    trainer = trainer_for(training_setup(cfg, defence, data), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    batch = defence.encode_train(faces, labels, g)

    mask_all, step_all = interleaved_seconds([lambda: defence.encode_train(faces, labels, g), lambda: trainer.train_step(batch.protected())], args.repeats)
    mask_s, step_s = statistics.median(mask_all), statistics.median(step_all)
    result = {
        "benchmark": "masking",
        "k": args.k,
        "batch": args.batch,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "mask_median_s": mask_s,
        "fr_step_median_s": step_s,
        "mask_fraction_of_fr_step": mask_s / step_s,
        "target_fraction": 0.05,
        "meets_target": mask_s / step_s <= 0.05,
        "mask_all_s": mask_all,
        "fr_step_all_s": step_all,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_all_s")}, indent=2))


if __name__ == "__main__":
    main()

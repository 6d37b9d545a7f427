"""Is there a per-batch utility signal the policy could be credited with? Measured on a sweep's grid.

The adaptive reward's utility term reads the owner's validation accuracy, which every batch
shares, so no single batch is credited with what its settings cost the FR network (README,
sweep section). A candidate per-batch signal the owner could compute: how well a batch's
gradient aligns with the gradient of the owner's validation loss (both on the FR network the
server hands back; the first-order change of the validation loss a step on the batch makes).
It is only worth a reward term if it ranks settings as the benchmark's measured utility does.

Here: an FR network trains on batches of uniformly random settings; at three points of its
training, each grid setting of a finished ``rl-mask sweep`` gets ``--batches`` fresh batches;
their mean cosine to the validation gradient (and, as a second candidate, their mean FR loss)
is set against the setting's measured identification accuracy in the sweep (Spearman), and
per knob value. Writes JSON.

    python benchmarks/utility_signal.py runs/sweep [--batches 4] [--out benchmarks/results/utility_signal.json]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from rl_mask.config import load_config, parse_settings
from rl_mask.mask.settings import MaskSettings, SettingsSpace, mean_by_knob
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import TrainingStream, prepare_shard
from rl_mask.server.trainer import trainer_for
from rl_mask.use.held_out import validation_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep", type=Path, help="a finished rl-mask sweep folder (its config.yaml and results.json)")
    parser.add_argument("--batches", type=int, default=4, help="batches per grid setting at each checkpoint")
    parser.add_argument("--checkpoints", default="40,120,250", help="FR steps at which the signal is read")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/utility_signal.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.sweep / "config.yaml", [])
    results = json.loads((args.sweep / "results.json").read_text())
    grid = [(MaskSettings(**parse_settings(t["setting"])), t["utility"]) for t in results["trials"] if t["kind"] == "fixed"]
    defence = build_defence(cfg, "adaptive", k_choices=cfg.rl.k_choices)
    data = prepare_shard(cfg, 0, 1)
    stream = TrainingStream(cfg, defence, data, seed=0)
    trainer = trainer_for(training_setup(cfg, defence, data, total_steps=max(map(int, args.checkpoints.split(",")))), torch.device("cpu"))
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    val = validation_set(defence, data)
    every = SettingsSpace.from_config(cfg.rl).all()
    rng = random.Random(0)

    def gradient(inputs, labels, weights) -> tuple[torch.Tensor, float]:
        trainer.model.eval()  # no BatchNorm statistics move
        trainer.model.zero_grad(set_to_none=True)
        loss = trainer.loss_module(inputs, labels, weights).mean()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in params]), float(loss.detach())

    out = {"sweep": str(args.sweep), "grid_settings": len(grid), "batches_per_setting": args.batches, "checkpoints": []}
    for stop in map(int, args.checkpoints.split(",")):
        while trainer.step < stop:
            idx, images = stream.draw()
            trainer.train_step(stream.encode(idx, images, settings=rng.choice(every)).masked.protected())
        g_val, val_loss = gradient(val.inputs, val.labels[:, None], torch.ones(len(val), 1))
        rows = []
        for settings, utility in grid:
            cos, loss = [], []
            for _ in range(args.batches):
                idx, images = stream.draw()
                b = stream.encode(idx, images, settings=settings).masked.protected()
                g, batch_loss = gradient(b.inputs, b.labels, b.weights)
                cos.append(float(torch.nn.functional.cosine_similarity(g, g_val, dim=0)))
                loss.append(batch_loss)
            rows.append({**settings.as_dict(), "utility": utility, "cosine": float(np.mean(cos)), "cosine_sd": float(np.std(cos)), "fr_loss": float(np.mean(loss))})
        u = [r["utility"] for r in rows]
        point = {
            "fr_step": stop,
            "validation_loss": val_loss,
            "spearman_cosine_utility": float(spearmanr([r["cosine"] for r in rows], u)[0]),
            "spearman_neg_loss_utility": float(spearmanr([-r["fr_loss"] for r in rows], u)[0]),
            "by_knob": {name: mean_by_knob(rows, name) for name in ("cosine", "utility")},
            "settings": rows,
        }
        out["checkpoints"].append(point)
        print(f"FR step {stop}: Spearman(cosine, utility) {point['spearman_cosine_utility']:.2f}, Spearman(-FR loss, utility) {point['spearman_neg_loss_utility']:.2f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

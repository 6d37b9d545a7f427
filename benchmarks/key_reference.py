"""How close key recovery comes to a rotation key, with the reference it reads the crossed rows
against: k = 1 encodings of the attacker's public faces (the benchmark's before 2026-11-30)
or its faces put through the held rows' own public settings (``key_reference`` with counts).

For each setting (no flips: flips zero the moments both read) and draw: 8 batches of 64 keyed
training rows plus every probe (validation and test faces, k = 1), as the benchmark holds
them; the figure is the mean |cos| between each true key axis and its estimate (1: exact up to
signs; a random rotation about 0.1). Owner side: only the owner can score an estimate.

    python benchmarks/key_reference.py --draws 3 --out benchmarks/results/key_reference_att.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from rl_mask.attacks.key_recovery import key_reference, recover_rotation
from rl_mask.bench.benchmark import grid_defence
from rl_mask.config import load_config
from rl_mask.mask.augment import augment
from rl_mask.owner.stream import prepare_data

SETTINGS = [
    "k=3,flip=0.0,extra_removed=0,alpha=4.0,labels=hard",
    "k=2,flip=0.0,extra_removed=4,alpha=4.0,labels=hard",
    "k=5,flip=0.0,extra_removed=0,alpha=4.0,labels=soft",
    "k=2,flip=0.0,extra_removed=9,alpha=0.5,labels=hard",
    "k=6,flip=0.0,extra_removed=4,alpha=0.5,labels=soft",
]


def alignment(true_q: torch.Tensor, estimate: torch.Tensor) -> float:
    return float((true_q.double().T @ estimate[0].double()).diagonal().abs().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/key_reference_att.json")
    args = ap.parse_args()
    cfg = load_config(args.config, ["mask.key=channels"])
    data = prepare_data(cfg)
    public = data.split.public.float_images()
    rows = []
    for text in SETTINGS:
        for draw in range(args.draws):
            defence = grid_defence(cfg, text)
            generator = torch.Generator().manual_seed(1000 + draw)
            batches = []
            for _ in range(args.batches):
                idx = torch.randint(len(data.train_images), (cfg.fr.batch_size,), generator=generator)
                batches.append(defence.encode_train(augment(data.train_images[idx], generator), data.train_labels[idx], generator).protected().inputs)
            training = torch.cat(batches)
            probes = torch.cat([defence.encode_eval(data.val_images), defence.encode_eval(data.test_images)])
            held = torch.cat([training, probes])
            _, c, h, w = held.shape
            true_q = defence.mask.key.matrices(c, h, w)[0]
            public_view = defence.public()
            k1 = recover_rotation(held, key_reference(public_view, public, "channels", seed=draw), per_position=False)
            matched = recover_rotation(held, key_reference(public_view, public, "channels", seed=draw, training_rows=len(training), probe_rows=len(probes)), per_position=False)
            rows.append({"setting": text, "draw": draw, "k1_reference": alignment(true_q, k1), "matched_reference": alignment(true_q, matched)})
            print(f"{text}  draw {draw}: k = 1 reference {rows[-1]['k1_reference']:.3f}, matched {rows[-1]['matched_reference']:.3f}", flush=True)
    table = []
    for text in SETTINGS:
        mine = [r for r in rows if r["setting"] == text]
        table.append({"setting": text, **{f"{k}_mean": statistics.fmean(r[k] for r in mine) for k in ("k1_reference", "matched_reference")}})
    print("\n| setting | k = 1 reference | matched reference |\n|---|---|---|")
    for t in table:
        print(f"| {t['setting']} | {t['k1_reference_mean']:.2f} | {t['matched_reference_mean']:.2f} |")
    out = {
        "benchmark": "key_reference",
        "data": cfg.data.resolved_root(),
        "key": "channels",
        "batches": args.batches,
        "rows_per_batch": cfg.fr.batch_size,
        "draws": rows,
        "means": table,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""How close key recovery comes to a rotation key (``channels``), three ways: as before
2026-11-30 (the crossed rows read against k = 1 encodings of the attacker's public faces, the
axes' signs from third moments), with the reference matched to the held rows' public settings
(``key_reference`` with counts) but third-moment signs, and today's (matched reference, signs
from the mean face: ``rl_mask.attacks.key_recovery.recover_rotation``).

For each setting (no flips: flips zero the moments all three read) and draw: 8 batches of 64
keyed training rows plus every probe (validation and test faces, k = 1), as the benchmark holds
them. Figures, owner side (only the owner can score an estimate): the error of the rows with
the estimate undone, ``||undo(y) - x|| / ||x||`` (leaving the key on: about 1.4; 0: exact), and
the mean |cos| between each true key axis and its estimate (blind to the axes' signs).

    python benchmarks/key_reference.py --draws 3 --out benchmarks/results/key_reference_att.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from rl_mask.attacks.key_recovery import RotationEstimate, key_reference, recover_rotation, rotation_alignment
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


METHODS = ("before", "matched_third_moment_signs", "today")


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
            k1 = key_reference(public_view, public, "channels", seed=draw)
            matched = key_reference(public_view, public, "channels", seed=draw, training_rows=len(training), probe_rows=len(probes))
            truth = defence.mask.key.invert(held)
            row = {"setting": text, "draw": draw, "keyed_error": float((held - truth).norm() / truth.norm())}
            for name, q in zip(METHODS, (recover_rotation(held, k1, False, signs="third"), recover_rotation(held, matched, False, signs="third"), recover_rotation(held, matched, False))):
                row[f"{name}_error"] = float((RotationEstimate(q).undo(held) - truth).norm() / truth.norm())
                row[f"{name}_alignment"] = rotation_alignment(true_q, q)
            rows.append(row)
            print(f"{text}  draw {draw}: " + ", ".join(f"{m} error {row[m + '_error']:.2f} |cos| {row[m + '_alignment']:.2f}" for m in METHODS), flush=True)
    table = []
    for text in SETTINGS:
        mine = [r for r in rows if r["setting"] == text]
        table.append({"setting": text, **{k: statistics.fmean(r[k] for r in mine) for k in mine[0] if k not in ("setting", "draw")}})
    print("\n| setting | key left on | before: error (abs cos) | matched reference, third-moment signs | today: matched, mean-face signs |\n|---|---|---|---|---|")
    for t in table:
        cells = " | ".join(f"{t[m + '_error']:.2f} ({t[m + '_alignment']:.2f})" for m in METHODS)
        print(f"| {t['setting']} | {t['keyed_error']:.2f} | {cells} |")
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

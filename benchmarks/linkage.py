"""Identity linkage through the statistics route, without training an FR network (seconds per
setting): for each defence setting, with and without the owner's key, draw the training
batches a run sends (the benchmark's attacked + context batches), then link private labels to
a gallery (held-out private faces + public distractors) from sign-invariant statistics, and
again after key recovery. ``link-abs+truekey`` is a what-if bound on any key recovery: the
statistics route with the owner's key itself (candidates keyed as the owner keys a message).
The model route needs a trained network: ``rl-mask benchmark``.

    python benchmarks/linkage.py --out benchmarks/results/linkage-att [--config configs/yale.yaml] [--seeds 3] [--options "+dense+evalflip"]

Writes ``linkage.json`` and ``linkage.md`` (mean over seeds with a 95% t-interval; each seed
redraws the batches, the key and the eval flips; the face split is fixed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from rl_mask.attacks.key_recovery import KeyEstimate
from rl_mask.attacks.linkage import LinkageTarget, build_linkage, identification
from rl_mask.bench.benchmark import grid_defence, linkage_gallery, seed_config, with_owner_options
from rl_mask.bench.stats import aggregate
from rl_mask.checkpoint import atomic_write_text
from rl_mask.config import load_config, split_defence_name
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import probe_set
from rl_mask.owner.stream import TrainingStream, prepare_data

SETTINGS = {
    "mask": None,
    "k4 flip0.5 soft": "k=4,flip=0.5,extra_removed=0,alpha=1.0,labels=soft",
    "k4 flip0.5 hard": "k=4,flip=0.5,extra_removed=0,alpha=1.0,labels=hard",
    "k2 flip0.5 hard": "k=2,flip=0.5,extra_removed=0,alpha=1.0,labels=hard",
}
OPTIONS = ("", "+key", "+poskey", "+key+evalflip", "+poskey+evalflip", "+scramble+evalflip", "+dense+evalflip")
ATTACKS = ("link-abs", "link-energy", "link-sorted", "link-abs+recover", "link-energy+recover")
TRUE_KEY = "link-abs+truekey"


class TrueKey(KeyEstimate):
    """What-if: the attacker holds the owner's key (candidates keyed before the flips, as the owner keys a message)."""

    compare_keyed = True

    def __init__(self, key):
        self.key = key

    def undo(self, keyed: torch.Tensor) -> torch.Tensor:
        return self.key.invert(keyed)

    def apply(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.key.apply(encoded)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config")
    p.add_argument("--data")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batches", type=int, default=22, help="training batches the server holds (quick: 2 attacked + 20 context)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    p.add_argument("--options", default=",".join(OPTIONS), help="comma-separated owner options per row, of: " + ", ".join(repr(o) for o in OPTIONS))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    settings = {name: SETTINGS[name] for name in args.settings.split(",")}
    options_list = [split_defence_name("row" + o)[1] for o in args.options.split(",")]
    torch.set_num_threads(1)
    cfg = load_config(args.config, [f"data.root={args.data}"] if args.data else [])
    # every row is what its options say (as in rl-mask benchmark): no key, no flips unless asked
    cfg.mask.key, cfg.mask.eval_flip = "none", 0.0
    data = prepare_data(cfg)
    public = data.split.public.float_images()
    rows: dict[str, list[dict]] = {}
    for seed in range(args.seeds):
        scfg = seed_config(cfg, seed)
        gallery, truth = linkage_gallery(data, scfg.benchmark.seed)
        for setting, text in settings.items():
            base = build_defence(scfg, "mask") if text is None else grid_defence(scfg, text)
            for options in options_list:
                defence = with_owner_options(base, options, scfg)
                stream = TrainingStream(scfg, defence, data)
                crossed = [stream.next().masked.protected() for _ in range(args.batches)]
                key = defence.mask.key
                target = LinkageTarget(defence.public(), crossed, [probe_set(defence, data.val_images).inputs], None, data.num_classes, None if key is None else key.kind)
                cell = {a: identification(build_linkage(a).link(target, gallery, public), truth)["identification"] for a in ATTACKS}
                owner_key = TrueKey(key) if key is not None else None
                target.key_estimate = None if owner_key is None else (lambda k=owner_key: k)
                cell[TRUE_KEY] = identification(build_linkage("link-abs+recover").link(target, gallery, public), truth)["identification"]
                name = setting + "".join(options)
                rows.setdefault(name, []).append({**cell, "rows": sum(len(b) for b in crossed)})
                print(seed, name, {a: round(v, 3) for a, v in cell.items()}, flush=True)
    n = data.num_classes
    chance = 1.0 / len(gallery)
    columns = (*ATTACKS, TRUE_KEY)
    table = {name: aggregate(cells, {a: n for a in columns}) for name, cells in rows.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"data": cfg.data.resolved_root(), "private_identities": n, "candidates": len(gallery), "chance": chance, "seeds": args.seeds, "batches": args.batches, "attacks": list(columns), "rows": table}
    atomic_write_text(out / "linkage.json", json.dumps(result, indent=2))
    lines = [
        "# Identity linkage, statistics route (no FR training)",
        "",
        f"{cfg.data.resolved_root()}: {n} private labels, gallery of {len(gallery)} candidates (held-out private faces + public "
        f"distractors), chance {100 * chance:.1f}%. The server holds {args.batches} training batches ({next(iter(table.values()))['rows']:.0f} rows) and the "
        f"validation message. {args.seeds} seeds (batches, key and flips redrawn); mean [95% t-interval]. "
        "`+key`: one orthogonal mixing of the kept channels; `+poskey`: one per block position; `+scramble`: a permutation "
        "of every coefficient; `+dense`: rounds of permutations and group rotations of every coefficient; `+evalflip`: "
        "sign flips (p 0.5) on the evaluation messages (key recovery then has no unflipped message to read). `link-sorted`: "
        "each row's sorted magnitudes, which no permutation changes. `link-abs+truekey` (what-if): the statistics route "
        "with the owner's key itself, a bound on any key recovery (rows without a key: `link-abs`).",
        "",
        "| setting | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, cell in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * cell[a]:.1f}% [{100 * cell['ci'][a][0]:.1f}, {100 * cell['ci'][a][1]:.1f}]" if cell["ci"].get(a) else f"{100 * cell[a]:.1f}%" for a in columns) + " |")
    atomic_write_text(out / "linkage.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Read several finished ``rl-mask sweep`` folders of one face set as seeds of one experiment.

Per leak_lambda: the policy's leak and identification and its difference from its own sweep's
best grid point; per leak axis the two fronts' hypervolumes; mean and 95% t-interval over the
sweeps (``rl_mask.bench.sweep_seeds``); once with each trial's worst message (the training
batches or the probe door) and once with the training batches alone. Prints tables, writes JSON.

    python benchmarks/sweep_seeds.py runs/sweep-s1 runs/sweep-s2 runs/sweep-s3 --out benchmarks/results/sweep_seeds.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rl_mask.bench.sweep_seeds import across_seeds, markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path, help="finished sweep folders (each with results.json), one per seed")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    args = parser.parse_args()
    readings = {"every_message": across_seeds(args.sweeps), "training_batches": across_seeds(args.sweeps, training_batches_only=True)}
    for summary in readings.values():
        print(markdown(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(readings, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

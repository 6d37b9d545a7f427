"""Per knob value, pooled over finished sweeps of one face set: the grid's mean identification
and worst-message leak (95% t-intervals), and the policies' share of batches with that value
(``rl_mask.bench.knob_effects``). Prints a table, writes JSON.

    python benchmarks/knob_effects.py benchmarks/results/sweep-yale-quick-s{1,2,3,4} --out benchmarks/results/knob_effects_yale.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rl_mask.bench.knob_effects import knob_effects, markdown
from rl_mask.bench.sweep_seeds import load_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path, help="finished sweep folders (each with results.json) of one face set")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    args = parser.parse_args()
    roots = {load_sweep(folder)["data_root"] for folder in args.sweeps}
    if len(roots) > 1:
        raise SystemExit(f"the sweeps measure different face sets ({', '.join(sorted(roots))}): pool one set at a time")
    effects = {"sweeps_read": [str(f) for f in args.sweeps], "data_root": roots.pop(), **knob_effects([load_sweep(f) for f in args.sweeps])}
    print(markdown(effects))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(effects, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

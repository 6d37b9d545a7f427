"""How the policy's leak interval over sweep seeds narrows with measurements per seed.

Reads finished sweeps whose policy trials were measured several times (``sweep.policy_seeds``),
each sweep one seed, and the benchmark results of each policy trial
(``SWEEP/trials/KEY/measure/results.json``). For m = 1..N: each seed's policy figures from its
first m measurements, mean, 95% t-interval over the seeds and width (the issue's target: 10
points); and per seed each measurement alone, with the spread between them
(``rl_mask.bench.repeats``). Prints tables, writes JSON and a plot.

    python benchmarks/policy_repeats.py runs/sweep-s13 runs/sweep-s14 runs/sweep-s15 --out benchmarks/results/policy_repeats_att.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rl_mask.bench.repeats import markdown, width_by_measurements  # noqa: E402
from rl_mask.bench.sweep_plan import POLICY  # noqa: E402
from rl_mask.bench.sweep_seeds import TARGET_WIDTH, load_sweep, refuse_repeated_seeds  # noqa: E402
from trainers.sweep_trial import TRIALS_DIR  # noqa: E402


def policy_measures(folder: Path, results: dict) -> dict[str, dict]:
    out = {}
    for trial in results["trials"]:
        if trial["kind"] != POLICY:
            continue
        path = folder / TRIALS_DIR / trial["key"] / "measure" / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the policy trial's benchmark results are missing (a sweep folder as rl-mask sweep wrote it is needed, not its copied summary)")
        out[trial["key"]] = json.loads(path.read_text())
    return out


def plot(summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for lam, row in summary.items():
        m = [r["measurements"] for r in row["by_measurements_per_seed"]]
        ax.plot(m, [100 * r["leak"]["width"] for r in row["by_measurements_per_seed"]], "o-", label=f"leak_lambda {lam}, {len(row['per_seed'])} seeds")
        ax.axhline(100 * row["target_width"], color="grey", ls="--", lw=1)
    ax.set_xlabel("measurements per seed (averaged)")
    ax.set_ylabel("95% interval width over seeds (points)")
    ax.set_title("The policy's worst-message leak")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path, help="finished sweep folders, one per seed, with their trials/ folders")
    parser.add_argument("--out", type=Path, help="where to write the JSON (and the plot beside it, .png)")
    args = parser.parse_args()
    recorded = [load_sweep(f) for f in args.sweeps]
    roots = {r["data_root"] for r in recorded}
    if len(roots) > 1:
        raise SystemExit(f"the sweeps are on different face sets: {sorted(roots)}")
    refuse_repeated_seeds(args.sweeps, recorded)
    summary = width_by_measurements([(r, policy_measures(f, r)) for f, r in zip(args.sweeps, recorded)], TARGET_WIDTH)
    print(markdown(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"sweeps": [str(f) for f in args.sweeps], "data_root": roots.pop(), "per_leak_lambda": summary}, indent=1) + "\n")
        plot(summary, args.out.with_suffix(".png"))
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

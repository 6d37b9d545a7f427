"""FR steps beside other work, with libgomp's default wait policy and with passive waits.

Why ``rl.fr_wait_policy`` exists (``rl_mask.cpu_threads``): one process runs FR steps
(``FRService``, 64-row protected AT&T batches,
2 torch threads) for ``--seconds``; it runs alone, and beside a second process that makes
batches on the owner's path (``TrainingStream``, 1 thread) as an env runner does. Each
condition runs with each policy, ``--repeats`` times, alternating; the policy is set in the
child's environment before torch loads (libgomp reads it once).

    python benchmarks/omp_wait.py [--seconds 15] [--repeats 2] [--out benchmarks/results/omp_wait.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, sys, time, torch
role, seconds = sys.argv[1], float(sys.argv[2])
from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import TrainingStream, prepare_data
cfg = Config().validate()
data = prepare_data(cfg)
defence = build_defence(cfg, "random-k")
stream = TrainingStream(cfg, defence, data, seed=0)
torch.set_num_threads(2 if role == "fr" else 1)
if role == "fr":
    from rl_mask.server.service import FRService
    service = FRService(training_setup(cfg, defence, data, total_steps=100_000), torch.device("cpu"))
    batches = [stream.next().masked.protected() for _ in range(8)]
    for b in batches[:3]:
        service.train_messages([b])
    work = lambda n: service.train_messages([batches[n % 8]])
else:
    work = lambda n: stream.next()
n, t = 0, time.perf_counter()
while time.perf_counter() - t < seconds:
    work(n)
    n += 1
print(json.dumps({"role": role, "images_per_s": n * 64 / (time.perf_counter() - t)}))
"""


def child(role: str, seconds: float, policy: str) -> subprocess.Popen:
    """``policy``: "default" (libgomp's), a wait policy ("PASSIVE"), or "GOMP_SPINCOUNT=N"."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy.startswith("GOMP_SPINCOUNT="):
        env["GOMP_SPINCOUNT"] = policy.split("=", 1)[1]
    elif policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    return subprocess.Popen([sys.executable, "-c", CHILD, role, str(seconds)], env=env, stdout=subprocess.PIPE, text=True)


def measure(policy: str, beside: bool, seconds: float) -> dict:
    other = child("owner", seconds + 20, policy) if beside else None  # starts first, outlives the FR loop
    if other is not None:
        time.sleep(8)  # past its imports and data loading
    fr = child("fr", seconds, policy)
    out = json.loads(fr.communicate()[0].strip().splitlines()[-1])
    if other is not None:
        other.terminate()
        other.wait()
    return {"policy": policy, "beside_owner_process": beside, "fr_images_per_s": round(out["images_per_s"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--policies", default="default,PASSIVE", help="comma-separated: default, PASSIVE, ACTIVE, GOMP_SPINCOUNT=N")
    parser.add_argument("--out", default="benchmarks/results/omp_wait.json")
    args = parser.parse_args()
    policies = args.policies.split(",")
    rows = []
    for _ in range(args.repeats):
        for beside in (False, True):
            for policy in policies:
                rows.append(measure(policy, beside, args.seconds))
                print(json.dumps(rows[-1]), flush=True)
    table = {}
    for beside in (False, True):
        for policy in policies:
            got = [r["fr_images_per_s"] for r in rows if r["policy"] == policy and r["beside_owner_process"] == beside]
            table[f"{'beside' if beside else 'alone'}/{policy}"] = statistics.median(got)
    print("\nFR images/s (median):")
    for key, value in table.items():
        print(f"  {key:20s} {value:8.1f}")
    out = {
        "benchmark": "omp_wait",
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "seconds": args.seconds,
        "rows": rows,
        "median_images_per_s": table,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Verification and identification of trained runs through the CLI, as a user would run them.

For each run folder: LFW-format pairs over its held-out private test faces (identities seen in
training, images not) and over its public identities (never in training), ``rl-mask verify``
on both; gallery (first 3 faces per public identity) and probes (the rest), ``rl-mask
identify``. Written as JSON.

    python benchmarks/use_protocols.py RUN_DIR [RUN_DIR ...] [--out benchmarks/results/use_protocols.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rl_mask.checkpoint import atomic_write_text
from rl_mask.owner.data import load_split
from rl_mask.run_folder import read_run
from rl_mask.use.protocols import enrolment_split, write_pairs

GALLERY_PER_IDENTITY = 3


def cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "trainers.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)


def measure(run_dir: Path, work: Path) -> dict:
    run = read_run(run_dir)
    split = load_split(run.cfg.data)
    root = run.cfg.data.resolved_root()
    out: dict = {"run": run_dir.name, "defence": run.defence.name, "data": root, "fr_steps": run.summary.get("fr_steps")}
    for name, faces in (("held_out_test", split.private_test), ("public", split.public)):
        pairs = work / f"pairs_{name}.txt"
        write_pairs(faces, pairs)
        cli("verify", "--run", str(run_dir), "--pairs", str(pairs), "--images", root, "--out", str(work / f"verify_{name}"))
        v = json.loads((work / f"verify_{name}" / "verify.json").read_text())
        out[f"verify_{name}"] = {k: v[k] for k in ("accuracy", "accuracy_std", "tar_at_far_0.01", "tar_at_far_0.001", "far_resolution", "pairs")}
    gallery, probes = enrolment_split(split.public, GALLERY_PER_IDENTITY)
    for faces, name in ((gallery, "gallery"), (probes, "probes")):
        (work / f"{name}.txt").write_text("\n".join(str(Path(f).resolve()) for f in faces.paths) + "\n")
    cli("identify", "--run", str(run_dir), "--gallery", str(work / "gallery.txt"), "--probes", str(work / "probes.txt"), "--out", str(work / "identify"))
    i = json.loads((work / "identify" / "identify.json").read_text())
    out["identify_public"] = {k: i[k] for k in ("top1", "top5", "chance_top1", "gallery_identities", "gallery_images", "probes")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/use_protocols.json"))
    args = parser.parse_args()
    results = []
    for run_dir in args.runs:
        with tempfile.TemporaryDirectory() as work:
            results.append(measure(run_dir.resolve(), Path(work)))
            print(json.dumps(results[-1]), flush=True)
    atomic_write_text(args.out, json.dumps({"runs": results}, indent=2))


if __name__ == "__main__":
    main()

"""FR throughput with data-parallel FR workers and batches in flight; env-runner memory with shards.

Three measurements, one JSON (``benchmarks/results/fr_scaling.json``):

1. **Throughput.** FR images/s of ``rl-mask train`` (steady state: FR images per PPO iteration /
   iteration time, median) for every combination of ``--fr-workers`` and ``--runners``, with
   ``rl.max_inflight`` batches in flight per runner and no attacker in the loop (the FR path),
   plus one row with it; each iteration against chunks of the plain FR loop (the same augment
   + mask + FR step in one process, no Ray) timed between iterations (``pipeline.py``).
   Target: >= 0.85 of the plain loop in cluster mode on CPU, >= 0.9 on a GPU. Beside them
   the pipeline's ceiling: the FR actor alone, fed back to back by the driver, against the
   same plain loop (``pipeline.actor_alone``).
2. **Env-runner memory with shards.** A synthetic face folder of ``--synthetic`` images, made
   from the bundled faces by augmentation (new identities: each source face, shifted, rotated
   and re-lit, becomes a person's images), is packed into the face cache once; then one fresh
   process per shard count R loads shard 0 of R as an env runner does and reports its peak
   RSS. Target: 1/R of the unsharded figure plus a fixed overhead (Python, torch, the
   listing: the same process with a one-face shard).
3. **Masking on CPU vs the FR device** (``--device cuda`` on a GPU machine).

    python benchmarks/fr_scaling.py [--device cpu|cuda] [--fr-workers 1,2] [--runners 1,2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import PlainLoop, actor_alone, pipeline, write_result  # noqa: E402

from rl_mask.config import Config  # noqa: E402
from rl_mask.mask.augment import augment, contrast_brightness  # noqa: E402
from rl_mask.owner.data import load_faces, to_uint8  # noqa: E402
from rl_mask.owner.defences import build_defence  # noqa: E402

#: Peak RSS of this process image: /proc's VmHWM (ru_maxrss would carry the parent's peak
#: across fork and exec, flooring every child at the driver's size).
PEAK_RSS = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"

SHARD_PROBE = """
import json, sys, time
t = time.perf_counter()
from rl_mask.config import load_config
from rl_mask.owner.stream import prepare_shard
cfg = load_config(None, sys.argv[3:])
data = prepare_shard(cfg, 0, int(sys.argv[1]))
touched = int(data.train_images.max())  # every face of the shard read (no wider copy)
print(json.dumps({"shards": int(sys.argv[1]), "shard_images": len(data.train_labels), "peak_rss_mb": PEAK, "seconds": time.perf_counter() - t}))
""".replace("PEAK", PEAK_RSS)


def synthetic_folder(root: Path, images: int, per_identity: int = 50) -> Path:
    """``images`` faces in identity folders, from the bundled faces by augmentation."""
    if root.is_dir() and sum(1 for _ in root.rglob("*.png")) >= images:
        return root
    faces = load_faces(Config().data.resolved_root(), 112, 96).float_images()
    g = torch.Generator().manual_seed(0)
    n_ids = images // per_identity
    for i in range(n_ids):
        base = faces[i % len(faces)].expand(per_identity, -1, -1, -1)
        aug = contrast_brightness(augment(base, g, max_shift=0.1, max_scale=0.1, max_rotate_deg=12), g, 0.7, 0.6, 0.2)
        folder = root / f"p{i:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j, img in enumerate(to_uint8(aug)):
            Image.fromarray(img[0].numpy()).save(folder / f"{j}.png")
    return root


def shard_memory(folder: Path, shard_counts: list[int], cache: Path) -> dict:
    """Peak RSS of a fresh process that loads shard 0 of R, for each R; the fixed overhead is the
    same process with a one-face shard (Python, torch, the config and the folder's listing)."""
    settings = [f"data.root={json.dumps(str(folder))}", "data.num_private=300", "data.train_per_identity=40", "data.val_per_identity=2", f"data.cache_dir={json.dumps(str(cache))}"]

    def probe(shards: int) -> dict:
        proc = subprocess.run([sys.executable, "-c", SHARD_PROBE, str(shards), "-", *settings], check=True, capture_output=True, text=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    started = time.perf_counter()
    whole = probe(1)  # the first load decodes the folder and writes the cache
    pack_seconds = time.perf_counter() - started
    fixed = probe(whole["shard_images"])["peak_rss_mb"]
    rows = []
    for r in shard_counts:
        row = probe(r)
        row["data_rss_mb"] = row["peak_rss_mb"] - fixed
        rows.append(row)
    unsharded = next((row["data_rss_mb"] for row in rows if row["shards"] == 1), None)
    for row in rows:
        if unsharded:
            row["fraction_of_unsharded_data"] = row["data_rss_mb"] / unsharded
        row["target_fraction"] = 1 / row["shards"]
        print(json.dumps(row), flush=True)
    return {"images": whole["shard_images"], "first_load_and_pack_seconds": pack_seconds, "fixed_overhead_rss_mb": fixed, "shards": rows}


def masking_devices(device: str, repeats: int = 30) -> dict:
    cfg = Config().validate()
    defence = build_defence(cfg, "fixed-k")
    faces = load_faces(cfg.data.resolved_root(), 112, 96).float_images()[:256]
    labels = torch.arange(256) % 20
    out = {}
    for dev in ["cpu"] + ([device] if device != "cpu" else []):
        x = faces.to(dev)
        defence.mask.kept = defence.mask.kept.to(dev)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            defence.encode_train(x, labels.to(dev), None)
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        out[dev] = {"batch": 256, "k": defence.ks[0], "median_ms": 1000 * statistics.median(times[3:])}
    return out


HEAD_PROBE = """
import json, sys, time, torch
from rl_mask.server.models import ArcFaceHead
classes, dim, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
head = ArcFaceHead(dim, classes)
opt = torch.optim.AdamW(head.parameters())
emb = torch.randn(batch, dim, requires_grad=True)
labels = torch.randint(0, classes, (batch, 2))
weights = torch.full((batch, 2), 0.5)
t = time.perf_counter()
for _ in range(3):
    opt.zero_grad()
    head.mixed_loss(emb, labels, weights).backward()
    opt.step()
print(json.dumps({"classes": classes, "embedding_dim": dim, "batch": batch, "head_params_mb": classes * dim * 4 / 2**20,
                  "with_adamw_state_mb": 3 * classes * dim * 4 / 2**20, "step_seconds": (time.perf_counter() - t) / 3,
                  "peak_rss_mb": PEAK}))
""".replace("PEAK", PEAK_RSS)


def head_scaling(batch: int = 64) -> list[dict]:
    """The margin head's memory at MS1M's 85k identities (the classifier grows with identities)."""
    rows = []
    for classes, dim in [(20, 128), (10_000, 128), (85_000, 128), (85_000, 512)]:
        proc = subprocess.run([sys.executable, "-c", HEAD_PROBE, str(classes), str(dim), str(batch)], check=True, capture_output=True, text=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/fr_scaling.json")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the FR network runs")
    parser.add_argument("--fr-workers", default="1,2")
    parser.add_argument("--runners", default="1,2")
    parser.add_argument("--max-inflight", type=int, default=None, help="rl.max_inflight (default: the config's)")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--attacker-row", action=argparse.BooleanOptionalAction, default=True, help="also 1 worker x 1 runner with the attacker in the loop (rl.reward=leak)")
    parser.add_argument("--attacker-only", action="store_true", help="only the attacker row")
    parser.add_argument("--synthetic", type=int, default=20000, help="images in the synthetic folder (0: skip the memory measurement)")
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--rows-per-step", type=int, default=0, help="fr.rows_per_step: aggregated FR steps (0: one batch per step), the plain loop's too")
    parser.add_argument("--attacker-mode", default="exact", help="rl.attacker_mode of the attacker row: exact or sampled")
    parser.add_argument("--sample-rate", type=float, default=0.25, help="rl.attacker_sample_rate with --attacker-mode sampled")
    parser.add_argument("--fr-wait-policy", default="PASSIVE", help="rl.fr_wait_policy: OMP_WAIT_POLICY of the FR actor ('' = libgomp's default); the plain loop in this process keeps libgomp's default, its fastest alone")
    parser.add_argument("--actor-alone", action=argparse.BooleanOptionalAction, default=True, help="also the FR actor alone, fed back to back by the driver: the pipeline's ceiling")
    parser.add_argument("--quick", action="store_true", help="a small FR network and short iterations (a check that it runs, not a figure)")
    args = parser.parse_args()

    def config() -> Config:
        cfg = Config()
        cfg.fr.device = args.device
        cfg.fr.rows_per_step = args.rows_per_step
        cfg.rl.attacker_mode = args.attacker_mode
        cfg.rl.attacker_sample_rate = args.sample_rate
        cfg.rl.fr_wait_policy = args.fr_wait_policy
        if args.quick:
            cfg.model.widths, cfg.model.depths, cfg.model.embedding_dim = [8, 16], [1, 1], 32
            cfg.rl.train_batch_size, cfg.rl.minibatch_size, cfg.rl.num_epochs = 16, 8, 1
            cfg.rl.judge_steps, cfg.rl.attacker_warmup_steps, cfg.rl.policy_eval_steps = 5, 2, 4
        cfg.rl.fr_num_gpus = 1.0 if args.device.startswith("cuda") else 0.0  # NCCL: one GPU per FR worker
        return cfg.validate()

    plain = PlainLoop(config())
    results = []
    for attacker in ([] if args.attacker_only else [False]) + ([True] if args.attacker_row or args.attacker_only else []):
        for workers in [int(w) for w in args.fr_workers.split(",")]:
            for runners in [int(r) for r in args.runners.split(",")]:
                if attacker and (workers, runners) != (1, 1):
                    continue  # one full-system row
                r = pipeline(config(), runners, args.iterations, plain, fr_workers=workers, max_inflight=args.max_inflight, attacker=attacker)
                results.append(r)
                print(json.dumps({k: r[k] for k in ("fr_workers", "num_env_runners", "max_inflight", "attacker_in_loop", "images_per_s", "fraction_per_iteration", "fraction_of_plain")}), flush=True)
    alone = None
    if args.actor_alone and not args.attacker_only:
        alone = actor_alone(config(), plain)
        print(json.dumps({"fr_actor_alone": alone}), flush=True)
    out = {
        "benchmark": "fr_scaling",
        "machine": platform.processor() or platform.machine(),
        "cpus": torch.get_num_threads(),
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "fr_batch_size": config().fr.batch_size,
        "fr_rows_per_step": args.rows_per_step,
        "fr_wait_policy": args.fr_wait_policy or "libgomp default",
        "pipeline": results,
        "fr_actor_alone": alone,
        "targets": {"fraction_of_plain_cpu_cluster": 0.85, "fraction_of_plain_cpu_with_attacker": 0.7, "fraction_of_plain_gpu": 0.9},
        "masking": masking_devices(args.device),
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if torch.cuda.is_available():
        out["gpu_peak_memory_mb_driver"] = torch.cuda.max_memory_allocated() / 2**20
    if not args.quick:
        out["margin_head"] = head_scaling()
    if args.synthetic:
        tmp = Path(tempfile.gettempdir()) / "rl-mask-synthetic-faces"
        folder = synthetic_folder(tmp / f"n{args.synthetic}", args.synthetic)
        out["shard_memory"] = shard_memory(folder, [int(s) for s in args.shards.split(",")], tmp / "cache")
    write_result(out, args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

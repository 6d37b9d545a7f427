"""The FR server without Ray, in one process: FR images/s vs rows per step, and the aggregated
FR server fed by the owner's batch path.

For a GPU machine that has torch but no Ray (issue 19): both measurements use the project's
own code, no Ray import.

1. **Rows per step.** ``FRService.train_messages`` on the union of ``rows / fr.batch_size``
   protected owner messages (settings drawn from the adaptive policy's whole space, so the
   messages differ in k and are padded), prepared beforehand: the FR step alone.
2. **Aggregated server, owner-fed.** ``--feeders`` threads each run the owner's batch path
   (``TrainingStream``: draw, augment, mask and mix with a setting of the space) and send the
   ``ProtectedBatch`` to one ``FRService`` with ``fr.rows_per_step`` = R (``step_queue``: the
   batches queued while it is busy share one step), as the env runners of a run do; FR
   images/s over ``--seconds``, and its fraction of (1) at the same rows per step.
3. **Mixed precision and memory format.** (1) at ``--precision-rows`` rows (4,096) for
   ``fr.precision`` fp32 and bf16, each without and with ``fr.channels_last`` (issue 19: bf16
   alone was slower than fp32 on an H200, bf16 with channels-last faster; channels-last is
   the default since it is 1.12-1.17x faster in fp32 on 2 CPU cores). (1) and (2) run the
   config's defaults (fp32, channels-last).

    python benchmarks/fr_server.py --device cuda --rows 64,256,1024,4096 [--out ...json]
    python benchmarks/fr_server.py --device cpu --rows 64,128 --seconds 5 --precision-rows 128 --quick   # a CPU check
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from rl_mask.config import Config
from rl_mask.mask.settings import SettingsSpace
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import TrainingStream, prepare_data
from rl_mask.server.service import FRService


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Owner:
    """The owner's batch path with a setting drawn from the policy's space for every batch."""

    def __init__(self, cfg: Config, data, seed: int):
        self.defence = build_defence(cfg, "adaptive", k_choices=cfg.rl.k_choices)
        self.stream = TrainingStream(cfg, self.defence, data, seed=seed)
        self.space = SettingsSpace.from_config(cfg.rl).all()
        self.generator = torch.Generator().manual_seed(seed)

    def message(self):
        settings = self.space[int(torch.randint(len(self.space), (1,), generator=self.generator))]
        idx, images = self.stream.draw()
        return self.stream.encode(idx, images, settings=settings).masked.protected()


def server(cfg: Config, data, defence, device: torch.device, rows_per_step: int, wait_s: float) -> FRService:
    """The FR service as the Ray actor hosts it: many callers' threads, steps on its own thread."""
    c = copy.deepcopy(cfg)
    c.fr.rows_per_step = rows_per_step
    return FRService(training_setup(c, defence, data, total_steps=100_000), device, step_wait_s=wait_s, step_thread=True)


def rows_per_step(cfg: Config, data, device: torch.device, rows: int, steps: int) -> dict:
    """FR images/s of steps of ``rows`` rows (owner messages prepared beforehand)."""
    owner = Owner(cfg, data, seed=rows)
    per_step = rows // cfg.fr.batch_size
    messages = [[owner.message() for _ in range(per_step)] for _ in range(3)]
    service = server(cfg, data, owner.defence, device, rows, 0.0)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        batch = messages[i % len(messages)]
        sync(device)
        started = time.perf_counter()
        service.train_messages(batch)
        sync(device)
        times.append(time.perf_counter() - started)
    step_s = statistics.median(times[2:])
    return {"rows_per_step": rows, "messages_per_step": per_step, "ms_per_step": 1000 * step_s, "images_per_s": rows / step_s}


#: fr.precision and fr.channels_last of the mixed-precision measurement, by name.
PRECISIONS = {"fp32": ("fp32", False), "fp32+channels_last": ("fp32", True), "bf16": ("bf16", False), "bf16+channels_last": ("bf16", True)}


def precisions(cfg: Config, data, device: torch.device, rows: int, steps: int) -> list[dict]:
    """(1) at ``rows`` rows per step under each of ``PRECISIONS``, in one process."""
    out = []
    for name, (precision, channels_last) in PRECISIONS.items():
        c = copy.deepcopy(cfg)
        c.fr.precision, c.fr.channels_last = precision, channels_last
        out.append({"precision": name, **rows_per_step(c.validate(), data, device, rows, steps)})
        print(json.dumps(out[-1]), flush=True)
    fp32 = out[0]["images_per_s"]
    for row in out:
        row["speedup_over_fp32"] = row["images_per_s"] / fp32
    return out


def owner_fed(cfg: Config, data, device: torch.device, rows: int, feeders: int, seconds: float, wait_s: float) -> dict:
    """The aggregated server fed by ``feeders`` owner threads for ``seconds``."""
    owners = [Owner(cfg, data, seed=1000 + i) for i in range(feeders)]
    service = server(cfg, data, owners[0].defence, device, rows, wait_s)
    stop = threading.Event()
    errors: list[BaseException] = []

    def feed(owner: Owner) -> None:
        try:
            while not stop.is_set():
                service.train_step(owner.message())
        except BaseException as exc:  # reported, not swallowed
            errors.append(exc)

    for _ in range(2):  # warm-up: the first steps fit the input statistics and allocate
        service.train_messages([owners[0].message() for _ in range(rows // cfg.fr.batch_size)])
    sync(device)
    before_images, before_steps = service.images_trained, service.fr_step
    threads = [threading.Thread(target=feed, args=(o,), daemon=True) for o in owners]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    sync(device)
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    images = service.images_trained - before_images
    steps = service.fr_step - before_steps
    return {"rows_per_step": rows, "feeders": feeders, "seconds": elapsed, "fr_steps": steps, "mean_rows_per_step": images / max(1, steps), "images_per_s": images / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", default="64,256,1024,4096", help="rows per FR step to measure")
    parser.add_argument("--steps", type=int, default=20, help="timed FR steps per row count")
    parser.add_argument("--seconds", type=float, default=20.0, help="of the owner-fed server per row count")
    parser.add_argument("--feeders", type=int, default=0, help="owner threads (0: 2 x the messages of a step, at most 32)")
    parser.add_argument("--wait-ms", type=float, default=20.0, help="fr.step_wait_ms of the owner-fed server")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--precision-rows", type=int, default=4096, help="rows per step of the mixed-precision measurement (0: skip it)")
    parser.add_argument("--quick", action="store_true", help="a small FR network (a check that the script runs, not a figure)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = Config()
    cfg.fr.device = args.device
    if args.quick:
        cfg.model.widths, cfg.model.depths, cfg.model.embedding_dim = [8, 16], [1, 1], 32
    cfg.validate()
    data = prepare_data(cfg)
    out = {
        "benchmark": "fr_server (one process, no Ray)",
        "machine": platform.processor() or platform.machine(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "fr_batch_size": cfg.fr.batch_size,
        "quick_model": args.quick,
        "rows_per_step": [],
        "owner_fed": [],
        "precision": [],
    }
    for rows in [int(r) for r in args.rows.split(",")] + [args.precision_rows]:
        if rows % cfg.fr.batch_size:
            raise SystemExit(f"--rows/--precision-rows {rows}: a multiple of fr.batch_size ({cfg.fr.batch_size}) (a batch is never split)")
    for rows in [int(r) for r in args.rows.split(",")]:
        plain = rows_per_step(cfg, data, device, rows, args.steps)
        out["rows_per_step"].append(plain)
        print(json.dumps(plain), flush=True)
        feeders = args.feeders or min(32, 2 * rows // cfg.fr.batch_size)
        fed = owner_fed(cfg, data, device, rows, feeders, args.seconds, args.wait_ms / 1000)
        fed["fraction_of_plain_at_same_rows"] = fed["images_per_s"] / plain["images_per_s"]
        out["owner_fed"].append(fed)
        print(json.dumps(fed), flush=True)
    if args.precision_rows:
        out["precision"] = precisions(cfg, data, device, args.precision_rows, args.steps)
    out["ray_imported"] = "ray" in sys.modules  # the point of this script: False
    if device.type == "cuda":
        out["gpu_peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

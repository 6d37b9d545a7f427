"""``rl-mask train-fr``: the FR network trained for N steps under one fixed defence, no Ray.

Both roles run in this one process, with the door between them: the data owner's
``TrainingStream`` makes each batch, only its ``ProtectedBatch`` reaches the server's
``FRTrainer``; the final evaluation sends the k = 1 encodings of the test split.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rl_mask.checkpoint import atomic_write_text, save_checkpoint
from rl_mask.config import Config, save_config
from rl_mask.owner.defences import Defence, build_defence
from rl_mask.owner.messages import final_test_set, training_setup
from rl_mask.owner.stream import PrivateData, TrainingStream, prepare_data
from rl_mask.protocol import ProtectedEvalSet
from rl_mask.run_folder import claim_out_dir
from rl_mask.server.trainer import FRTrainer, resolve_device, trainer_for


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def evaluate(trainer: FRTrainer, eval_set: ProtectedEvalSet) -> dict:
    """Identification and verification of an owner-sent evaluation set."""
    return trainer.evaluate(eval_set.inputs, eval_set.labels, eval_set.pairs, eval_set.same)


def train_fr(cfg: Config, out_dir: str | Path, defence: Defence | None = None, progress: bool = True, data: PrivateData | None = None) -> dict:
    """Train under ``defence`` (default: the config's strategy); write the run folder; return the summary."""
    started = time.perf_counter()
    data = data or prepare_data(cfg)  # bad faces fail before anything is written
    out = claim_out_dir(out_dir)  # a new or empty folder: nothing of another run is overwritten
    (out / "checkpoints").mkdir()
    save_config(cfg, out / "config.yaml")
    set_threads(cfg.fr.threads)
    defence = defence or build_defence(cfg)
    device = resolve_device(cfg.fr.device)
    trainer = trainer_for(training_setup(cfg, defence, data), device)
    stream = TrainingStream(cfg, defence, data)
    evaluation = final_test_set(defence, data)
    history = []
    metrics: dict = {}
    bar = tqdm(range(cfg.fr.steps), desc=f"train-fr [{defence.name}]", disable=not progress, dynamic_ncols=True)
    for step in bar:
        loss = trainer.train_step(stream.next().masked.protected())
        if (step + 1) % cfg.fr.eval_every == 0 or step + 1 == cfg.fr.steps:
            metrics = evaluate(trainer, evaluation)
            history.append({"step": step + 1, "loss": loss, **metrics})
            save_checkpoint({"trainer": trainer.state_dict(), **stream.state_dict()}, out / "checkpoints" / "fr_state.pt")
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{metrics['identification_acc']:.3f}")
    save_checkpoint(trainer.weights(), out / "fr.pt")
    seconds = time.perf_counter() - started
    summary = {
        "strategy": defence.name,
        "defence": defence.describe(),
        "identification_acc": metrics["identification_acc"],
        "identification_top5": metrics["identification_top5"],
        "verification_acc": metrics["verification_acc"],
        "fr_steps": trainer.step,
        "batch_size": cfg.fr.batch_size,
        "private_identities": data.num_classes,
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
        "verification_pairs": len(data.same),
        "device": str(device),
        "wall_seconds": round(seconds, 2),
        "history": history,
        "config": cfg.to_dict(),
    }
    if defence.private_training:
        summary["dp"] = trainer.privacy()
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary

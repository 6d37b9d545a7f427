"""``rl-mask train-fr``: the FR network trained for N steps under one fixed defence, no Ray.

Both roles run in this one process, with the door between them: the data owner's
``TrainingStream`` makes each batch, only its ``ProtectedBatch`` reaches the FR server, the
same ``FRService`` the pipeline's FR actor hosts (so its door check, aggregated steps of
``fr.rows_per_step`` rows, DP-SGD choice and step log train every job). The owner scores the
network the server hands back on its own k = 1 encodings of the test split
(``rl_mask.use.held_out``): no test face crosses. The benchmark trains its rows through here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rl_mask.checkpoint import atomic_write_text, save_checkpoint
from rl_mask.config import Config, save_config
from rl_mask.mask.defences import Defence
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import PrivateData, TrainingStream, prepare_data
from rl_mask.run_folder import claim_out_dir
from rl_mask.server.service import FRService
from rl_mask.use.held_out import final_test_set, score_trained


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def step_loss(answers: list[dict], rows: list[int]) -> float:
    """The loss of one step over all its rows, from the service's answer to each message."""
    if len(answers) == 1:
        return answers[0]["loss"]
    return sum(a["loss"] * n for a, n in zip(answers, rows)) / max(1, sum(rows))


def train_fr(cfg: Config, out_dir: str | Path, defence: Defence | None = None, progress: bool = True, data: PrivateData | None = None) -> dict:
    """Train under ``defence`` (default: the config's strategy); write the run folder; return the summary."""
    started = time.perf_counter()
    data = data or prepare_data(cfg)  # bad faces fail before anything is written
    out = claim_out_dir(out_dir)  # a new or empty folder: nothing of another run is overwritten
    (out / "checkpoints").mkdir()
    save_config(cfg, out / "config.yaml")
    set_threads(cfg.fr.threads)
    defence = defence or build_defence(cfg)
    service = FRService(training_setup(cfg, defence, data))
    stream = TrainingStream(cfg, defence, data)
    evaluation = final_test_set(defence, data)  # owner-kept: scored here, never sent
    per_step = service.messages_per_step(cfg.fr.batch_size)
    history = []
    metrics: dict = {}
    bar = tqdm(total=cfg.fr.steps, desc=f"train-fr [{defence.name}]", disable=not progress, dynamic_ncols=True)
    while service.fr_step < cfg.fr.steps:
        sent = [stream.next().masked.protected() for _ in range(per_step)]
        loss = step_loss(service.train_messages(sent), [len(b) for b in sent])
        service.drain_log()  # train-fr writes no TensorBoard: the log must not grow for the whole run
        bar.update(1)
        step = service.fr_step
        if step % cfg.fr.eval_every == 0 or step == cfg.fr.steps:
            metrics = score_trained(service.trained_model(), evaluation)
            history.append({"step": step, "loss": loss, **metrics})
            save_checkpoint({**service.get_state(), **stream.state_dict()}, out / "checkpoints" / "fr_state.pt")
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{metrics['identification_acc']:.3f}")
    bar.close()
    save_checkpoint(service.trained_model().file_content(), out / "fr.pt")
    seconds = time.perf_counter() - started
    summary = {
        "strategy": defence.name,
        "defence": defence.describe(),
        "identification_acc": metrics["identification_acc"],
        "identification_top5": metrics["identification_top5"],
        "verification_acc": metrics["verification_acc"],
        "fr_steps": service.fr_step,
        "input_map": service.setup.model.input_map,  # model.input_map as resolved for this defence
        "batch_size": cfg.fr.batch_size,
        "private_identities": data.num_classes,
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
        "verification_pairs": len(data.same),
        "device": str(service.device),
        "wall_seconds": round(seconds, 2),
        "history": history,
        "config": cfg.to_dict(),
    }
    if defence.private_training:
        summary["dp"] = service.privacy()
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary

"""Data-parallel FR training: N FR workers, one network, gradients all-reduced every step.

Plain ``torch.distributed``: each worker joins one process group (NCCL on GPUs, gloo on CPU)
and wraps the FR loss in ``DistributedDataParallel``, which broadcasts worker 0's weights and
buffers when it is built and averages the gradients in ``backward``. Each worker trains on
its shard of every protected batch (``envs.fr_client.shard_batch``), so N workers take the
step one worker would take on the whole batch. BatchNorm statistics are per shard (as DDP
does without ``SyncBatchNorm``, which PyTorch offers on GPUs only): on a GPU group
``sync_batchnorm`` converts them; on CPU the equivalent single worker is one that computes
its batch shard by shard (``FRTrainer.train_step(..., shards=N)``).
"""

from __future__ import annotations

import datetime
import socket

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from rl_mask.server.models import FaceRecognizer

#: A worker that waits longer than this in a collective gives up with an error (a peer died).
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=120)


class MixedLoss(nn.Module):
    """The FR training loss as a module's forward (what DDP wraps): one loss per row."""

    def __init__(self, model: FaceRecognizer):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.model.head.mixed_row_losses(self.model.embed(inputs), labels, weights)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def join_group(init_method: str, rank: int, world_size: int, device: torch.device) -> None:
    """Join (or re-join, after a peer restarted) the FR workers' process group."""
    if dist.is_initialized():
        dist.destroy_process_group()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT)


def wrap(loss: MixedLoss, device: torch.device) -> DistributedDataParallel:
    if device.type == "cuda":
        loss = nn.SyncBatchNorm.convert_sync_batchnorm(loss)
        return DistributedDataParallel(loss, device_ids=[device.index or 0])
    return DistributedDataParallel(loss)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every worker's ``x`` (same shape on each), concatenated in rank order."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)

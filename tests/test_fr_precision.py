"""Mixed precision of the FR step (``fr.precision``, ``fr.channels_last``) on real faces, on
CPU (whose autocast supports bfloat16): what makes a large step fast on a GPU must train the
same network. Speed is measured in benchmarks/fr_server.py, not here."""

import copy

import pytest
import torch

from rl_mask.config import Config
from rl_mask.owner.defences import build_defence
from rl_mask.owner.messages import training_setup
from rl_mask.owner.stream import TrainingStream, prepare_data
from rl_mask.server.service import FRService
from rl_mask.server.trainer import trainer_for

CPU = torch.device("cpu")
#: bf16 keeps 8 mantissa bits (a rounding of 2^-9, 0.2%, per op) in the backbone only; the head
#: and the loss stay float32. Measured on these batches: at most 0.05% from the fp32 loss.
BF16_REL_TOL = 1e-2


@pytest.fixture(scope="module")
def faces():
    cfg = Config()
    cfg.fr.batch_size = 32
    cfg.validate()
    data = prepare_data(cfg)
    defence = build_defence(cfg, "fixed-k")  # mixed rows: every column of the loss is used
    stream = TrainingStream(cfg, defence, data)
    return cfg, data, defence, [stream.next().masked.protected() for _ in range(4)]


def trainer(faces, dropout: float | None = None, **fr):
    cfg, data, defence, _ = faces
    cfg = copy.deepcopy(cfg)
    for key, value in fr.items():
        setattr(cfg.fr, key, value)
    if dropout is not None:
        cfg.model.dropout = dropout
    return trainer_for(training_setup(cfg.validate(), defence, data, 50), CPU)


@torch.no_grad()
def eval_rows(t, batch):
    """Each row's loss in eval mode (no dropout, BatchNorm's running statistics)."""
    t.model.eval()
    return t.row_losses(batch)


def test_a_bf16_step_trains(faces):
    """The service trains in bf16 (the backbone's activations are bf16, the loss float32 and
    finite, the weights float32) and the loss of the same messages falls."""
    cfg, data, defence, batches = faces
    cfg = copy.deepcopy(cfg)
    cfg.fr.precision = "bf16"
    server = FRService(training_setup(cfg.validate(), defence, data, 50), CPU)
    seen = []
    server.trainer.model.backbone.stem.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    losses = [server.train_messages([batches[i % 2]])[0]["loss"] for i in range(8)]
    assert seen and set(seen) == {torch.bfloat16}
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-2] + losses[-1] < 0.8 * (losses[0] + losses[1]), losses
    assert all(p.dtype == torch.float32 for p in server.trainer.model.parameters())


def test_bf16_loss_is_within_tolerance_of_fp32(faces):
    """The same weights, the same batch: the bf16 loss is the fp32 loss within ``BF16_REL_TOL``
    (and not bit-identical: autocast did run)."""
    batches = faces[3]
    fp32 = trainer(faces)
    for batch in batches[:3]:
        fp32.train_step(batch)
    bf16 = trainer(faces, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    for batch in batches:
        exact, mixed = eval_rows(fp32, batch), eval_rows(bf16, batch)
        assert mixed.dtype == torch.float32
        assert float(mixed.mean()) == pytest.approx(float(exact.mean()), rel=BF16_REL_TOL)
        assert not torch.equal(mixed, exact)


def test_channels_last_trains_like_contiguous(faces):
    """Channels-last memory changes the layout, not the maths: the same losses over training
    steps within float32 tolerance. (Without dropout, which draws its mask in memory order.)"""
    batches = faces[3]
    plain, last = trainer(faces, dropout=0.0, channels_last=False), trainer(faces, dropout=0.0, channels_last=True)
    assert last.model.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.model.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    for batch in batches:
        assert last.train_step(batch) == pytest.approx(plain.train_step(batch), rel=1e-4)
    # and its state loads into a contiguous network (fr.pt of a channels-last run)
    plain.model.load_state_dict(last.model.state_dict())
    assert torch.allclose(eval_rows(plain, batches[0]), eval_rows(last, batches[0]), rtol=1e-5)

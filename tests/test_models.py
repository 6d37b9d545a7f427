import torch
import torch.nn.functional as F

from rl_mask.config import ModelConfig
from rl_mask.server.models import ArcFaceHead
from rl_mask.server.trainer import build_model


def _meta(kind, shape, classes=20):
    return {"input_shape": list(shape), "input_kind": kind, "num_classes": classes, "model": {**vars(ModelConfig()), "input_map": "identity"}}


def test_freq_and_pixel_variants_share_the_backbone(att_float):
    x = att_float[:4]
    pixel = build_model(_meta("pixel", (64, 14, 12)))
    freq = build_model(_meta("freq", (58, 14, 12)))
    pixel.eval(), freq.eval()
    assert pixel(x).shape == (4, 20)
    assert freq(torch.randn(4, 58, 14, 12)).shape == (4, 20)
    def shapes(m):
        return [p.shape for n, p in m.named_parameters() if not n.startswith("backbone.stem.0")]

    assert shapes(pixel) == shapes(freq)


def test_mixed_loss_k1_is_margin_cross_entropy():
    torch.manual_seed(0)
    head = ArcFaceHead(16, 5, scale=10.0, margin=0.3)
    emb = torch.randn(8, 16)
    y = torch.randint(0, 5, (8,))
    ce = F.cross_entropy(head.margin_logits(head.cosine(emb), y), y)
    assert torch.allclose(head.mixed_loss(emb, y[:, None], torch.ones(8, 1)), ce)
    # margin makes the true class harder: logits with margin <= without
    assert (head.margin_logits(head.cosine(emb), y).gather(1, y[:, None]) <= head(emb).gather(1, y[:, None]) + 1e-6).all()


def test_mixed_loss_is_weighted_sum_over_components():
    torch.manual_seed(1)
    head = ArcFaceHead(16, 5)
    emb = torch.randn(6, 16)
    y = torch.randint(0, 5, (6, 3))
    w = torch.softmax(torch.randn(6, 3), 1)
    cos = head.cosine(emb)
    ref = sum(w[:, j] * F.cross_entropy(head.margin_logits(cos, y[:, j]), y[:, j], reduction="none") for j in range(3)).mean()
    assert torch.allclose(head.mixed_loss(emb, y, w), ref)


def test_padding_columns_change_no_loss_and_no_gradient():
    """Messages of different k share one step through ``concat_protected``: the padded columns
    (label -1, weight 0) of the smaller-k rows must leave the loss and every gradient as they are."""
    from rl_mask.protocol import ProtectedBatch, concat_protected

    torch.manual_seed(0)
    head = ArcFaceHead(16, 10)
    emb = torch.randn(6, 16)
    two = ProtectedBatch(torch.zeros(3, 1, 2, 2), torch.tensor([[1, 2], [3, 4], [5, 6]]), torch.tensor([[0.7, 0.3], [0.5, 0.5], [0.9, 0.1]]))
    three = ProtectedBatch(torch.zeros(3, 1, 2, 2), torch.tensor([[0, 1, 2], [7, 8, 9], [4, 4, 5]]), torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.6, 0.2, 0.2]]))
    union = concat_protected([two, three])
    assert union.labels[:3, 2].tolist() == [-1, -1, -1] and union.weights[:3, 2].tolist() == [0, 0, 0]

    def loss_and_grads(rows, labels, weights):
        head.zero_grad()
        e = emb[rows].clone().requires_grad_(True)
        loss = head.mixed_loss(e, labels, weights)
        loss.backward()
        return loss.detach(), e.grad, head.weight.grad.clone()

    padded = loss_and_grads(slice(0, 6), union.labels, union.weights)
    # unpadded: each message alone, combined as the union's mean over its 6 rows
    a = loss_and_grads(slice(0, 3), two.labels, two.weights)
    b = loss_and_grads(slice(3, 6), three.labels, three.weights)
    assert torch.allclose(padded[0], (a[0] + b[0]) / 2)
    assert torch.allclose(padded[1], torch.cat([a[1], b[1]]) / 2)
    assert torch.allclose(padded[2], (a[2] + b[2]) / 2, atol=1e-6)



def test_the_head_stays_float32_under_bf16_autocast():
    """Under autocast the backbone hands the head bf16 embeddings; the margin (and the loss) must
    be computed in float32, where cos(theta + m) is resolved, and give the fp32 loss."""
    torch.manual_seed(2)
    head = ArcFaceHead(16, 10)
    emb = torch.randn(8, 16).bfloat16()
    y = torch.randint(0, 10, (8, 2))
    w = torch.softmax(torch.randn(8, 2), 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cosine = head.cosine(emb)
        mixed = head.mixed_row_losses(emb, y, w)
    assert cosine.dtype == mixed.dtype == torch.float32
    assert torch.allclose(mixed, head.mixed_row_losses(emb.float(), y, w))

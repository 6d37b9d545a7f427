import torch
import torch.nn.functional as F

from rl_mask.config import ModelConfig
from rl_mask.server.models import ArcFaceHead
from rl_mask.server.trainer import build_model


def _meta(kind, shape, classes=20):
    return {"input_shape": list(shape), "input_kind": kind, "num_classes": classes, "model": vars(ModelConfig())}


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

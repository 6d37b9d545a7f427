import pytest
import torch

from rl_mask.mask.freq import block_dct, block_idct
from rl_mask.mask.masking import DEFAULT_REMOVED_CHANNELS, HybridMask, flip_signs, kept_channel_indices, sample_partners, sample_weights


@pytest.fixture(scope="module")
def batch(att_faces):
    idx = torch.arange(0, 400, 5)  # 80 faces of all 40 people
    return att_faces.float_images()[idx], att_faces.labels[idx]


def test_removed_channels_are_exactly_the_configured_ones(batch):
    x, _ = batch
    removed = (0, 2, 9, 63)
    mask = HybridMask(removed_channels=removed)
    out = mask.transform(x)
    coeffs = block_dct(x)
    kept = [c for c in range(64) if c not in removed]
    assert out.shape[1] == 60
    assert torch.equal(out, coeffs[:, kept])
    # what a person sees is exactly the image with those channels zeroed
    zeroed = coeffs.clone()
    zeroed[:, list(removed)] = 0
    assert torch.allclose(mask.to_pixels(out), block_idct(zeroed), atol=1e-6)


def test_default_removes_dc_and_lowest_channels_per_plane():
    assert DEFAULT_REMOVED_CHANNELS[0] == 0
    kept = kept_channel_indices(DEFAULT_REMOVED_CHANNELS, planes=3)
    assert kept.numel() == 3 * (64 - len(DEFAULT_REMOVED_CHANNELS))
    for p in range(3):
        for c in DEFAULT_REMOVED_CHANNELS:
            assert p * 64 + c not in kept.tolist()
    with pytest.raises(ValueError, match=r"\[70\] are outside 0..63"):
        kept_channel_indices([70], 1)


@pytest.mark.parametrize("kind", ["dirichlet", "instahide"])
@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_weights_sum_to_one_and_respect_cap(kind, k):
    g = torch.Generator().manual_seed(k)
    w = sample_weights(4000, k, kind, alpha=1.0, cap=0.65, generator=g)
    assert w.shape == (4000, k)
    assert torch.allclose(w.sum(1), torch.ones(4000), atol=1e-6)
    assert (w >= 0).all() and w.max().item() <= 0.65
    # the cap is binding for k=2 (Dirichlet(1,1) often draws > 0.65), so redraws happened
    if k == 2:
        assert w.max().item() > 0.6


def test_cap_must_exceed_one_over_k():
    with pytest.raises(ValueError, match=r"cap=0.2"):
        sample_weights(10, 5, cap=0.2)


def test_partners_distinct_and_self_first():
    g = torch.Generator().manual_seed(0)
    src = sample_partners(50, 6, g)
    assert torch.equal(src[:, 0], torch.arange(50))
    for row in src.tolist():
        assert len(set(row)) == 6
    with pytest.raises(ValueError, match="k=9"):
        sample_partners(8, 9, g)


def test_mixture_soft_labels_and_provenance(batch):
    x, y = batch
    mask = HybridMask()
    g = torch.Generator().manual_seed(11)
    out = mask(x, y, 4, g)
    masked = mask.transform(x)
    expected = sum(out.weights[:, j, None, None, None] * masked[out.sources[:, j]] for j in range(4))
    assert torch.allclose(out.inputs, expected, atol=1e-5)
    assert torch.equal(out.labels, y[out.sources])
    soft = out.soft_labels(40)
    assert torch.allclose(soft.sum(1), torch.ones(len(y)), atol=1e-6)
    for i in range(0, len(y), 7):
        ref = torch.zeros(40)
        for j in range(4):
            ref[y[out.sources[i, j]]] += out.weights[i, j]
        assert torch.allclose(soft[i], ref, atol=1e-6)
    dom = out.weights.argmax(1)
    assert torch.equal(out.dominant_source, out.sources[torch.arange(len(y)), dom])
    assert torch.equal(out.dominant_label, y[out.dominant_source])
    ids = torch.arange(1000, 1000 + len(y))
    assert torch.equal(out.with_sources(ids).sources, ids[out.sources])


def test_seeded_and_k1_is_masking_only(batch):
    x, y = batch
    mask = HybridMask(sign_flip=True)
    a = mask(x, y, 3, torch.Generator().manual_seed(5))
    b = mask(x, y, 3, torch.Generator().manual_seed(5))
    c = mask(x, y, 3, torch.Generator().manual_seed(6))
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    one = mask(x, y, 1, torch.Generator().manual_seed(5))
    assert torch.equal(one.inputs, mask.transform(x)) and (one.weights == 1).all()


def test_sign_flips_flip_each_coefficient_of_the_mixture(batch):
    x, y = batch
    flipped = HybridMask(sign_flip=True)(x, y, 2, torch.Generator().manual_seed(1))
    masked = HybridMask().transform(x)
    plain = sum(flipped.weights[:, j, None, None, None] * masked[flipped.sources[:, j]] for j in range(2))
    assert torch.allclose(flipped.inputs.abs(), plain.abs(), atol=1e-5)
    neg = (flipped.inputs * plain < 0).float().mean().item()
    assert 0.4 < neg < 0.6


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_each_coefficient_flips_with_its_probability_and_keeps_its_magnitude(batch, p):
    """``flip_signs`` draws from numpy (fast, on the owner's critical path) and flips sign bits:
    the flipped share matches p within binomial noise, independently per coefficient, the
    magnitudes are exact, one torch seed gives one answer, and a float64 or autograd input
    gets the same flips by a multiply."""
    x = HybridMask().transform(batch[0])
    out = flip_signs(x, p, torch.Generator().manual_seed(7))
    assert out.shape == x.shape and out.dtype == x.dtype and torch.equal(out.abs(), x.abs())
    flipped = (torch.signbit(out) != torch.signbit(x)).double()
    sd = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(flipped.mean().item() - p) < 5 * sd
    assert abs(torch.corrcoef(torch.stack([flipped.flatten()[:-1], flipped.flatten()[1:]]))[0, 1].item()) < 0.01  # neighbours independent
    assert torch.equal(out, flip_signs(x, p, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, flip_signs(x, p, torch.Generator().manual_seed(8)))
    assert torch.equal(flip_signs(x.double(), p, torch.Generator().manual_seed(7)), out.double())
    leaf = x[:2].clone().requires_grad_()
    flip_signs(leaf, p, torch.Generator().manual_seed(7)).sum().backward()
    assert torch.equal(leaf.grad.abs(), torch.ones_like(leaf))
    assert torch.equal(flip_signs(x, 0.0), x) and torch.equal(flip_signs(x, 1.0), -x)
    with pytest.raises(ValueError, match="1.5"):
        flip_signs(x, 1.5)


def test_the_owners_record_holds_the_message_once_and_keeps_all_k_only_where_it_differs(batch, tmp_path):
    from rl_mask.mask.settings import MaskSettings
    from rl_mask.owner.recorder import BoundaryRecorder, read_boundary, recorded_batch
    from rl_mask.owner.stream import concat_masked

    x, y = batch
    mask = HybridMask()
    soft = mask.apply(x, y, MaskSettings(3, 0.0, 0, 1.0, "soft"), torch.Generator().manual_seed(2))
    hard = mask.apply(x, y, MaskSettings(2, 0.0, 0, 1.0, "hard"), torch.Generator().manual_seed(3))
    assert soft.protected() is soft.sent and soft.inputs is soft.sent.inputs and soft.owner_labels is None and not soft.hard_labels
    sent = hard.protected()  # only the dominant identity crosses, with weight 1; the owner keeps all k
    assert sent.k == 1 and torch.equal(sent.weights, torch.ones(len(y), 1)) and torch.equal(sent.labels[:, 0], hard.dominant_label)
    assert hard.k == 2 and torch.equal(hard.labels, y[hard.sources])
    recorder = BoundaryRecorder(tmp_path, "env", 2)
    for m in (soft, hard):
        recorder.record(m.protected(), m)
    back = [recorded_batch(r) for r in read_boundary(tmp_path)]
    for m, b in zip((soft, hard), back):
        assert b.hard_labels == m.hard_labels and b.settings == m.settings
        assert all(torch.equal(getattr(b, f), getattr(m, f)) for f in ("inputs", "labels", "weights", "sources"))
        assert torch.equal(b.protected().labels, m.protected().labels)
    joined = concat_masked([soft, hard])
    assert joined.k == 3 and joined.protected().k == 3 and torch.equal(joined.protected().labels[len(y) :, 1:], torch.full((len(y), 2), -1))
    assert torch.equal(joined.labels[len(y) :, :2], hard.labels) and torch.equal(joined.labels[len(y) :, 2], torch.full((len(y),), -1))

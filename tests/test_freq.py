import numpy as np
import pytest
import scipy.fft
import torch

from rl_mask.mask.freq import ZIGZAG, block_dct, block_idct, dct_basis
from rl_mask.mask.masking import mix


def test_round_trip_on_real_faces(att_float):
    x = att_float[:64]
    coeffs = block_dct(x)
    assert coeffs.shape == (64, 64, 14, 12)
    err = (block_idct(coeffs) - x).abs().max().item()
    assert err < 1e-5


def test_rgb_round_trip_and_layout(att_float):
    x = torch.cat([att_float[:8], att_float[8:16].flip(-1), att_float[16:24] * 0.5], dim=1)  # 3 planes
    coeffs = block_dct(x)
    assert coeffs.shape == (8, 192, 14, 12)
    assert (block_idct(coeffs) - x).abs().max().item() < 1e-5
    # channel = plane * 64 + zig-zag index: plane 1 is the DCT of plane 1 alone
    assert torch.allclose(coeffs[:, 64:128], block_dct(x[:, 1:2]), atol=1e-5)


def test_matches_scipy_orthonormal_dct_in_zigzag_order(att_faces):
    img = att_faces.images[7, 0].double().numpy() / 255.0
    coeffs = block_dct(torch.from_numpy(img)[None, None].float())[0]
    for bi, bj in [(0, 0), (5, 3), (13, 11)]:
        ref = scipy.fft.dctn(img[bi * 8 : bi * 8 + 8, bj * 8 : bj * 8 + 8], norm="ortho")
        ours = coeffs[:, bi, bj].double().numpy()
        expected = np.array([ref[r, c] for r, c in ZIGZAG])
        np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_zigzag_order_and_orthonormal_basis():
    assert list(ZIGZAG[:10]) == [(0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0)]
    assert ZIGZAG[-1] == (7, 7) and len(set(ZIGZAG)) == 64
    k = dct_basis(dtype=torch.float64)
    assert torch.allclose(k @ k.T, torch.eye(64, dtype=torch.float64), atol=1e-12)


def test_energy_preserved(att_float):
    x = att_float[:16]
    assert torch.allclose(block_dct(x).pow(2).sum(), x.pow(2).sum(), rtol=1e-5)


def test_mixing_full_dct_equals_pixel_mixup(att_float):
    x = att_float[:32]
    labels = torch.arange(32)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    pixel = mix(x, labels, 4, generator=g1)
    freq = mix(block_dct(x), labels, 4, generator=g2)
    assert torch.equal(pixel.sources, freq.sources) and torch.equal(pixel.weights, freq.weights)
    assert (block_idct(freq.inputs) - pixel.inputs).abs().max().item() < 1e-5


def test_upsample_grid_and_errors(att_float):
    up = block_dct(att_float[:2], upsample=2)
    assert up.shape == (2, 64, 28, 24)
    back = block_idct(up, downsample=2)
    assert back.shape == att_float[:2].shape
    with pytest.raises(ValueError, match="multiple of 8"):
        block_dct(torch.zeros(1, 1, 100, 96))
    with pytest.raises(ValueError, match=r"\[B, P, H, W\]"):
        block_dct(torch.zeros(1, 112, 96))

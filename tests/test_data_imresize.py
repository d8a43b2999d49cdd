"""MATLAB-compatible bicubic imresize: hand-computed cases, a scalar re-derivation, and
properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from img2img.data import imresize
from img2img.data.matlab_imresize import resize_weights

# Cubic kernel values used below (a = -0.5):
#   cubic(0.25) = 1.5*0.015625 - 2.5*0.0625 + 1           = 0.8671875
#   cubic(0.75) = 1.5*0.421875 - 2.5*0.5625 + 1           = 0.2265625
#   cubic(1.25) = -0.5*1.953125 + 2.5*1.5625 - 5 + 2      = -0.0703125
#   cubic(1.75) = -0.5*5.359375 + 2.5*3.0625 - 7 + 2      = -0.0234375


def test_half_scale_weights_by_hand():
    # n = 4 -> 2, scale 1/2: kernel 0.5*cubic(0.5 x), width 8. Output 1: u = 1/0.5 +
    # 0.5*(1 - 2) = 1.5, taps -2..5 (1-based) at distances 3.5 .. -3.5 with weights
    # 0.5*cubic(1.75, 1.25, 0.75, 0.25, ...) = -0.01171875, -0.03515625, 0.11328125,
    # 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875. Symmetric mirroring
    # maps taps -2, -1, 0 to pixels 3, 2, 1 and tap 5 to pixel 4, so pixel 1 gets
    # 0.11328125 + 0.43359375, pixel 2 0.43359375 - 0.03515625, pixel 3 0.11328125 -
    # 0.01171875, pixel 4 -0.03515625 - 0.01171875.
    expected_row = [0.546875, 0.3984375, 0.1015625, -0.046875]
    weights = resize_weights(4, 2, 0.5)
    np.testing.assert_allclose(weights[0], expected_row, atol=1e-15)
    np.testing.assert_allclose(weights[1], expected_row[::-1], atol=1e-15)
    # MATLAB: imresize([1 2 3 4]', 0.5) = [1.4609375; 3.5390625]
    out = imresize(np.array([1.0, 2.0, 3.0, 4.0])[:, None], scale=(0.5, 1.0))
    np.testing.assert_allclose(out[:, 0], [1.4609375, 3.5390625], atol=1e-12)
    impulse = imresize(np.array([0.0, 1.0, 0.0, 0.0])[:, None], scale=(0.5, 1.0))
    np.testing.assert_allclose(impulse[:, 0], [0.3984375, 0.1015625], atol=1e-12)


def test_double_scale_weights_by_hand():
    # n = 4 -> 8, scale 2 (no stretching). Output 1: u = 0.5 + 0.25 = 0.75, taps -1..2 at
    # distances 1.75, 0.75, -0.25, -1.25; taps -1 and 0 mirror to pixels 2 and 1.
    # Output 2: u = 1.25, taps 0..3 at distances 1.25, 0.25, -0.75, -1.75.
    weights = resize_weights(4, 8, 2.0)
    np.testing.assert_allclose(weights[0], [0.2265625 + 0.8671875, -0.0234375 - 0.0703125, 0, 0])
    np.testing.assert_allclose(weights[1], [-0.0703125 + 0.8671875, 0.2265625, -0.0234375, 0])
    out = imresize(np.array([[0.0, 1.0, 0.0, 0.0]]), scale=(1.0, 2.0))
    np.testing.assert_allclose(out[0, :2], [-0.09375, 0.2265625], atol=1e-12)


def _matlab_scalar(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's algorithm written out one output pixel at a time (no matrices), as an
    independent re-derivation: contributions per output index, symmetric mirroring,
    columns of zero weight ignored, the smaller-scale dimension first."""

    def cubic(x):
        ax = abs(x)
        if ax <= 1:
            return 1.5 * ax**3 - 2.5 * ax**2 + 1
        if ax <= 2:
            return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
        return 0.0

    def resize_1d(column, out_len):
        n = len(column)
        width = 4.0 / scale if scale < 1 else 4.0
        result = []
        for x in range(1, out_len + 1):
            u = x / scale + 0.5 * (1 - 1 / scale)
            left = math.floor(u - width / 2)
            taps = [left + k for k in range(int(math.ceil(width)) + 2)]
            if scale < 1:
                ws = [scale * cubic(scale * (u - t)) for t in taps]
            else:
                ws = [cubic(u - t) for t in taps]
            total = sum(ws)
            value = 0.0
            for t, w in zip(taps, ws):
                j = (t - 1) % (2 * n)
                j = j if j < n else 2 * n - 1 - j
                value += w / total * column[j]
            result.append(value)
        return result

    h, w = img.shape
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    rows = np.array([resize_1d(img[:, c], oh) for c in range(w)]).T
    return np.array([resize_1d(rows[r], ow) for r in range(oh)])


@pytest.mark.parametrize("scale", [0.5, 0.25, 1 / 3, 2.0, 3.0, 0.7])
def test_matches_scalar_rederivation(scale):
    img = np.random.default_rng(7).random((11, 9))
    np.testing.assert_allclose(imresize(img, scale), _matlab_scalar(img, scale), atol=1e-12)


def test_zero_weight_taps_are_trimmed():
    weights = resize_weights(64, 16, 0.25)
    assert np.all(np.abs(weights).sum(axis=0) > 0)  # every input pixel contributes
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("scale", [0.5, 0.25, 1 / 3, 2, 3, 4])
def test_constant_stays_constant(scale):
    img = np.full((13, 10, 3), 0.37, np.float32)
    np.testing.assert_allclose(imresize(img, scale), 0.37, atol=1e-6)
    t = torch.full((2, 3, 13, 10), 0.37, dtype=torch.float64)
    torch.testing.assert_close(imresize(t, scale), torch.full_like(imresize(t, scale), 0.37))


def test_output_sizes():
    img = np.zeros((64, 48, 3))
    assert imresize(img, 0.5).shape == (32, 24, 3)
    assert imresize(img, 0.25).shape == (16, 12, 3)
    assert imresize(np.zeros((96, 33)), 1 / 3).shape == (32, 11)
    assert imresize(np.zeros((17, 9)), 0.5).shape == (9, 5)  # ceil
    assert imresize(np.zeros((5, 6)), 4).shape == (20, 24)
    assert imresize(img, output_size=(20, 30)).shape == (20, 30, 3)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, 0.5, output_size=(3, 3))


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2, 4])
def test_numpy_and_torch_agree(scale):
    rng = np.random.default_rng(0)
    img = rng.random((3, 2, 21, 17))
    tensor = torch.from_numpy(img)
    out_t = imresize(tensor, scale)
    for n in range(3):
        out_np = imresize(img[n].transpose(1, 2, 0), scale)
        np.testing.assert_allclose(out_t[n].numpy().transpose(1, 2, 0), out_np, atol=1e-12)
    single = imresize(tensor[0].float(), scale)  # CxHxW, float32
    assert single.dtype == torch.float32 and single.ndim == 3
    torch.testing.assert_close(single.double(), out_t[0], atol=1e-5, rtol=0)
    out32 = imresize(img[0].transpose(1, 2, 0).astype(np.float32), scale)
    assert out32.dtype == np.float32


def test_upscale_linear_ramp_interior_and_symmetric_border():
    ramp = np.arange(12, dtype=np.float64)  # pixel value = 0-based index
    out = imresize(ramp[None, :], scale=(1.0, 2.0))[0]
    # The cubic kernel reproduces linear functions: away from the borders output x
    # (1-based) sits at input coordinate u = x/2 + 0.25, i.e. value u - 1.
    x = np.arange(1, 25)
    interior = slice(3, 21)
    np.testing.assert_allclose(out[interior], (x / 2 + 0.25 - 1)[interior], atol=1e-12)
    # At the border the mirrored pixels bend it (hand-computed weights above).
    np.testing.assert_allclose(out[0], 1.09375 * 0 - 0.09375 * 1, atol=1e-12)
    np.testing.assert_allclose(out[1], 0.796875 * 0 + 0.2265625 * 1 - 0.0234375 * 2, atol=1e-12)
    # ... symmetrically at the other end.
    flipped = imresize(ramp[::-1][None, :].copy(), scale=(1.0, 2.0))[0]
    np.testing.assert_allclose(flipped[::-1], out, atol=1e-12)


def test_downscale_linear_ramp_interior():
    ramp = np.arange(40, dtype=np.float64)[:, None]
    out = imresize(ramp, scale=(0.25, 1.0))[:, 0]
    x = np.arange(1, 11)
    u = x / 0.25 + 0.5 * (1 - 4)
    np.testing.assert_allclose(out[2:-2], (u - 1)[2:-2], atol=1e-12)


def test_uint8_is_rounded_like_matlab():
    img = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    out = imresize(img, 0.5)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.clip(np.rint(imresize(img.astype(float), 0.5)), 0, 255))

"""RGB <-> normalised Lab for colorization (kornia), checked against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from img2img.data.color import lab_norm_to_rgb, rgb_to_lab_norm


def test_round_trip():
    rgb = torch.rand(2, 3, 8, 9, generator=torch.Generator().manual_seed(0)) * 2 - 1
    light, ab = rgb_to_lab_norm(rgb)
    assert light.shape == (2, 1, 8, 9) and ab.shape == (2, 2, 8, 9)
    torch.testing.assert_close(lab_norm_to_rgb(light, ab), rgb, atol=1e-4, rtol=0)


def test_matches_skimage_and_the_reference_normalisation():
    rng = np.random.default_rng(1)
    unit = rng.random((5, 7, 3))
    lab = rgb2lab(unit)  # L in [0, 100], a/b in about [-110, 110]
    light, ab = rgb_to_lab_norm(torch.from_numpy(unit).permute(2, 0, 1)[None].float() * 2 - 1)
    np.testing.assert_allclose(light[0, 0].numpy(), lab[..., 0] / 50 - 1, atol=2e-3)
    np.testing.assert_allclose(ab[0].permute(1, 2, 0).numpy(), lab[..., 1:] / 110, atol=2e-3)


def test_white_black_and_grey_extremes():
    white, black = torch.ones(1, 3, 1, 1), -torch.ones(1, 3, 1, 1)
    light, ab = rgb_to_lab_norm(torch.cat([white, black]))
    torch.testing.assert_close(light.flatten(), torch.tensor([1.0, -1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(ab, torch.zeros_like(ab), atol=1e-3, rtol=0)


def test_shape_errors():
    with pytest.raises(ValueError):
        rgb_to_lab_norm(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError):
        lab_norm_to_rgb(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 4, 4))

"""The fixed colour renderings of the sample data's multi-domain set
(``sample_data/multidomain``, built by :mod:`img2img.data.sample`): functions of an RGB
image in [0, 1] (H x W x 3 float) to another of the same shape and range."""

from __future__ import annotations

import numpy as np


def as_is(rgb: np.ndarray) -> np.ndarray:
    """The photo itself."""
    return rgb


def hue_rotate(rgb: np.ndarray) -> np.ndarray:
    """Hue rotated by 180 degrees (saturation and value kept)."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(rgb)
    hsv[..., 0] = (hsv[..., 0] + 0.5) % 1.0
    return np.clip(hsv2rgb(hsv), 0.0, 1.0)


def sepia(rgb: np.ndarray) -> np.ndarray:
    """The classic sepia tone: each output channel a fixed mix of R, G and B, clipped."""
    mix = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    return np.clip(rgb @ mix.T, 0.0, 1.0)


def posterise(rgb: np.ndarray) -> np.ndarray:
    """4 levels per channel (0, 85, 170, 255), colours kept."""
    return np.round(rgb * 3.0) / 3.0


#: The multi-domain set's domains, each a fixed rendering of its own photo crops.
DOMAINS = {"photo": as_is, "hue": hue_rotate, "sepia": sepia, "poster": posterise}

"""Colour spaces on the device: BT.601 luma, and RGB <-> normalised Lab (kornia).

:func:`luma` is ITU-R BT.601 luma (``0.299 R + 0.587 G + 0.114 B``, in the image's own
range): the grey image a one-channel network takes, used by the datasets, the tasks and
inference alike. The metrics' Y channel is the studio-range YCbCr Y of the same standard
(:data:`Y_STUDIO`: ``16 + 65.481 R + 128.553 G + 24.966 B`` for R, G, B in [0, 1]).

The normalisation is the reference colorization model's: ``L / 50 - 1`` (L in [0, 100]
-> [-1, 1]) and ``ab / 110`` (a, b roughly in [-110, 110] -> [-1, 1]). kornia's Lab is
CIE L*a*b* with a D65 white point from sRGB (gamma-decoded), like skimage's ``rgb2lab``.
"""

from __future__ import annotations

import torch
from kornia.color import lab_to_rgb, rgb_to_lab

#: BT.601 luma weights of R, G, B.
LUMA = (0.299, 0.587, 0.114)
#: BT.601 studio-range Y (16 to 235) weights of R, G, B in [0, 1], as the SR literature's
#: Y-channel PSNR/SSIM use them.
Y_STUDIO = (65.481, 128.553, 24.966)

L_SCALE = 50.0


def luma(rgb: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """BT.601 luma of RGB along ``dim`` (1 for NCHW, 0 for CHW), keeping that axis (size 1)."""
    r, g, b = rgb.unbind(dim)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(dim)
AB_SCALE = 110.0


def rgb_to_lab_norm(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """N3HW RGB in [-1, 1] -> (L as N1HW in [-1, 1], ab as N2HW scaled by 1/110)."""
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected an Nx3xHxW tensor, got shape {tuple(rgb.shape)}")
    unit = ((rgb.float() + 1.0) * 0.5).clamp(0.0, 1.0)
    lab = rgb_to_lab(unit)
    light = lab[:, :1] / L_SCALE - 1.0
    ab = lab[:, 1:] / AB_SCALE
    return light.to(rgb.dtype), ab.to(rgb.dtype)


def lab_norm_to_rgb(light: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(L N1HW in [-1, 1], ab N2HW scaled by 1/110) -> N3HW RGB in [-1, 1] (clipped to the
    sRGB gamut)."""
    if light.ndim != 4 or light.shape[1] != 1 or ab.ndim != 4 or ab.shape[1] != 2:
        raise ValueError(
            f"expected L as Nx1xHxW and ab as Nx2xHxW, got {tuple(light.shape)} and {tuple(ab.shape)}"
        )
    lab = torch.cat([(light.float() + 1.0) * L_SCALE, ab.float() * AB_SCALE], dim=1)
    rgb = lab_to_rgb(lab, clip=True)
    return (rgb * 2.0 - 1.0).to(light.dtype)
